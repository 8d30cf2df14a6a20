# The two commands of the README: `make demo` (set up, then the whole pipeline to the PDF)
# and `make test`. Both install what they need on a fresh Debian-like machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEX_PACKAGES := latexmk texlive-latex-recommended texlive-lang-french texlive-science \
	texlive-fonts-recommended lmodern poppler-utils
# The one real image data set a machine without network can have (Fashion-MNIST, the
# publisher's files in /usr/share/datasets/fashion-mnist): `--dataset fashionmnist` reads it.
SYSTEM_PACKAGES := $(TEX_PACKAGES) dataset-fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUNS := runs
LANG_REPORT ?= fr
# What the demo analyses: the 14 scorers of the TP and its first extensions, and the NC
# analyses, so that it stays within its time budget. DEMO_PLUGINS=all analyses with every
# loaded scorer and analysis (issue 19's 14 more add about 7 s of CPU; README, Demo timing).
DEMO_PLUGINS ?= msp,maxlogit,energy,gen,mahalanobis,l2,rmds,vim,neco,knn,react,nci,fdbd,she,nc,nc_layers
# The model-based scorers (they run the network) at the last checkpoint of each run; with
# DEMO_PLUGINS=all, every scorer and analysis runs at every checkpoint instead.
DEMO_MODEL_PLUGINS ?= odin,mcd,gram,rankfeat
DEMO_SELECTION := --plugins $(DEMO_PLUGINS)
demo_last = $(if $(filter all,$(DEMO_PLUGINS)),true,$(BIN)/ncood analyze $(1) --plugins $(DEMO_MODEL_PLUGINS))

.PHONY: setup system venv demo test test-quick lint clean

setup: system venv

system:
	@if dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then echo "system packages present"; else \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); fi

venv: $(BIN)/ncood

$(BIN)/ncood: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

demo: setup
	@start=$$(date +%s); \
	rm -rf $(RUNS)/demo-standard $(RUNS)/demo-extended && \
	$(BIN)/ncood train --preset demo-standard --out $(RUNS)/demo-standard && \
	$(BIN)/ncood train --preset demo-extended --out $(RUNS)/demo-extended && \
	$(BIN)/ncood analyze $(RUNS)/demo-standard --epoch all $(DEMO_SELECTION) && \
	$(BIN)/ncood analyze $(RUNS)/demo-extended --epoch all $(DEMO_SELECTION) && \
	$(call demo_last,$(RUNS)/demo-standard) && \
	$(call demo_last,$(RUNS)/demo-extended) && \
	$(BIN)/ncood report $(RUNS)/demo-standard $(RUNS)/demo-extended --lang $(LANG_REPORT) --out reports && \
	echo "demo finished in $$(( $$(date +%s) - start )) s"

# The suite runs on one worker per core (pytest-xdist), each with one torch/BLAS thread: two
# torch processes of two threads each on two cores spin against each other and run many times
# slower than one thread each.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

test: setup
	$(TEST_ENV) $(BIN)/python -m pytest -q -n auto

test-quick: venv  # the suite without its end-to-end tests (tests/conftest.py: SLOW_MODULES)
	$(TEST_ENV) $(BIN)/python -m pytest -q -n auto -m "not slow"

lint: venv
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

clean:
	rm -rf $(RUNS) reports/*.pdf reports/*.tex reports/*-figures reports/.*-build
