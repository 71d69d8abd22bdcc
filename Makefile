# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
FASHION = /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test lint clean

setup: $(STAMP) $(FASHION)

# torch is installed first and pinned: a CPU build; an unpinned torch would pull several GB of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real demo data from Debian's package; without it the demo falls back to scikit-learn's bundled digits.
$(FASHION):
	@if command -v apt-get >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	else echo "apt-get not found: the demo will use scikit-learn's digits instead of Fashion-MNIST"; fi

demo: setup
	$(BIN)/mudjacking demo --out runs/demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
