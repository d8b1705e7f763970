# Everything Is a Mapping: build, test and run the book. Every target sets itself up from a fresh
# clone: a virtual environment in .venv/ (made once, reinstalled only when the requirements change).
#
#   make book      build the HTML book into _build/html (warnings are errors) and open it
#   make test      unit tests, widget tests under ipywidgets 7, every notebook in quick mode, the book
#                  build, the rendered-book test
#   make lab       JupyterLab on the chapters
#   make execute   re-run the notebooks in full mode and store their outputs (NB=book/x.ipynb for one)
#   make clean     remove build outputs (make distclean: also .venv and caches)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2

# Offline copies of the datasets sit beside the checkout on the project's machines; elsewhere
# TLBOOK_DATA stays unset and torchvision downloads from the official sources (checksums checked).
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/.),)
TLBOOK_DATA ?= $(SHARED_DATA)
export TLBOOK_DATA
endif

.PHONY: help setup vendor book html test unit-test widgets7 nbval book-test browser lab execute constraints clean distclean

help:
	@sed -n '1,10p' Makefile | sed 's/^# \{0,1\}//'

# --- set-up -------------------------------------------------------------------------------------
$(STAMP): requirements.txt requirements-dev.txt ci/constraints.txt pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c ci/constraints.txt
	@touch $@

setup: $(STAMP)

vendor:
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }; } || true
	scripts/vendor_assets.sh

# --- the book -----------------------------------------------------------------------------------
# --all: Sphinx rebuilds only changed pages otherwise, and would not repeat a warning of an
# unchanged page, so a second `make book` after a failed one would pass.
html: $(STAMP) vendor
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build . --all -W --keep-going; \
	echo "book built in $$(( $$(date +%s) - start )) s"

book: html
	@echo "Open the book: $(CURDIR)/_build/html/index.html"
	@if [ -z "$${CI:-}" ] && [ "$${OPEN:-1}" != 0 ] && { [ -n "$${DISPLAY:-}" ] || [ -n "$${WAYLAND_DISPLAY:-}" ] || [ "$$(uname)" = Darwin ]; }; then \
	    $(BIN)/python -m webbrowser -t "file://$(CURDIR)/_build/html/index.html" >/dev/null 2>&1 || true; fi

# --- tests --------------------------------------------------------------------------------------
# Trained models made by tests go to an ignored folder of the checkout, not to ~/.cache.
# -k: run every stage and report all failures; make still exits non-zero if one failed.
test: export TLBOOK_CACHE ?= $(CURDIR)/.cache
test: $(STAMP) browser
	@$(MAKE) --no-print-directory -k unit-test widgets7 nbval html book-test

# $(JOBS) pytest workers share the cores: one thread each. Two workers with a full thread pool
# each on a 2-core machine run several times slower than with one thread each (measured).
unit-test nbval: export OMP_NUM_THREADS ?= 1

# pytest exit code 5 means "no tests collected": not a failure while a suite is still empty.
unit-test: $(STAMP)
	@echo "== unit tests"; start=$$(date +%s); \
	$(BIN)/pytest tests --ignore-glob='tests/test_book*.py' -n $(JOBS) -q || [ $$? -eq 5 ]; \
	echo "== unit tests: $$(( $$(date +%s) - start )) s"

# The book's widgets must work under ipywidgets 7 too: Colab ships 7.7.x (requirements say >=7.6) while
# CI pins 8. ipywidgets 7 goes once into an ignored folder put first on PYTHONPATH; of what 7.x needs
# and 8.x does not, only ipython_genutils is Python that the tests import (widgetsnbextension 3 and
# jupyterlab_widgets 1 are front-end JavaScript). WIDGETS7_VERSION=7.6.0 checks the lower bound.
WIDGETS7_VERSION ?= 7.7.1
WIDGETS7 := .cache/ipywidgets7
$(WIDGETS7)/.installed-$(WIDGETS7_VERSION): | $(STAMP)
	rm -rf $(WIDGETS7)
	$(BIN)/python -m pip install --quiet --no-deps --target $(WIDGETS7) 'ipywidgets==$(WIDGETS7_VERSION)' 'ipython_genutils==0.2.0'
	@touch $@

widgets7: $(STAMP) $(WIDGETS7)/.installed-$(WIDGETS7_VERSION)
	@echo "== widget tests under ipywidgets $(WIDGETS7_VERSION) (no browser)"; start=$$(date +%s); \
	PYTHONPATH=$(CURDIR)/$(WIDGETS7)$${PYTHONPATH:+:$$PYTHONPATH} TLBOOK_EXPECT_IPYWIDGETS=7 \
	    $(BIN)/pytest tests/test_widgets*.py -k "not in_the_browser" -q -p no:xdist -p no:cacheprovider -W ignore::DeprecationWarning; \
	echo "== widgets7: $$(( $$(date +%s) - start )) s"

nbval: $(STAMP)
	@echo "== notebooks in quick mode (nbval)"; start=$$(date +%s); \
	TLBOOK_QUICK=1 $(BIN)/pytest --nbval-lax --nbval-cell-timeout=600 book/ -n $(JOBS) --dist loadfile -q \
	    || [ $$? -eq 5 ]; \
	echo "== notebooks: $$(( $$(date +%s) - start )) s"

book-test: $(STAMP)
	@echo "== rendered book (headless chromium)"; start=$$(date +%s); \
	$(BIN)/pytest tests/test_book*.py -v; \
	echo "== rendered book: $$(( $$(date +%s) - start )) s"

# Chromium for the rendered-book test, and a CJK font so that the glossary's Chinese terms show in
# its screenshots: installed with apt when we are root and they are missing.
browser:
	@pkgs=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || pkgs=" chromium"; \
	[ -n "$$(fc-list :lang=zh 2>/dev/null)" ] || pkgs="$$pkgs fonts-wqy-zenhei"; \
	if [ -n "$$pkgs" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "installing$$pkgs (apt)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; \
	    else echo "warning: missing$$pkgs and not root; without chromium the rendered-book test is skipped (fails under CI)"; fi; \
	fi

# --- working with the notebooks -----------------------------------------------------------------
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=book

execute: $(STAMP)
	scripts/execute_notebooks.sh $(NB)

constraints: $(STAMP)
	@{ sed -n '1,3p' ci/constraints.txt; \
	   $(BIN)/pip freeze --exclude-editable | grep -v -i -E '^tlbook([ =@]|$$)' | grep -v ' @ '; } > ci/constraints.txt.new
	@mv ci/constraints.txt.new ci/constraints.txt && echo "wrote ci/constraints.txt"

clean:
	rm -rf _build artifacts .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) _vendor .cache *.egg-info
