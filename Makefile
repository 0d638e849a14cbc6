# The two front-door commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
# what `make test` (and CI) installs: sfsync with the test, demo, emulator and console extras, and Chromium
STAMP := $(VENV)/.installed-stamp
# what `make demo` installs: sfsync with the demo's, the emulator's and the console's extras, nothing else
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: demo test test-fast lint imports licences lock bench bench-ci clean

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "sfsync needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# `make demo` (and `sfsync demo --serve`) needs no test tools and no browser: it installs neither
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[demo,emulator,web]'
	touch $(DEMO_STAMP)

# the test extra too; a production install is `pip install .` alone. The console's browser tests need
# Chromium, which tools/ensure_chromium.sh installs (apt-get) when missing; the container tests
# (tests/deploy) install podman and make their base images through tools/container_images.sh
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[test,demo,emulator,web]'
	bash tools/ensure_chromium.sh
	touch $(STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/sfsync demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow and not containers"

# ruff (defect-finding rules) and mypy (strict for schemas, events and workers.sync), configured in
# pyproject.toml; fails on any finding. ruff covers the tests and tools too; mypy the shipped packages
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
# the import rules of pyproject.toml's [tool.importlinter] (make test checks them too: tests/unit/test_layers.py)
imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

# every runtime dependency (and the demo's and emulator's) under a licence compatible with Apache-2.0
licences: $(STAMP)
	$(VENV)/bin/python -m tools.check_licences --extras demo,emulator,web

# rewrites deploy/requirements/*.txt, the image's lock files, after a change to the dependencies
lock: $(STAMP)
	$(VENV)/bin/python -m tools.lock

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run

bench-ci: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run --ci

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
