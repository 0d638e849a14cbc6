# The two front-door commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast licences bench bench-ci clean

# the test extra, the demo's, the emulator's and the console's; a production install is `pip install .` alone;
# the console's browser tests need Chromium, which tools/ensure_chromium.sh installs when missing
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "sfsync needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,demo,emulator,web]'
	bash tools/ensure_chromium.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sfsync demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow"

# every runtime dependency (and the demo's and emulator's) under a licence compatible with Apache-2.0
licences: $(STAMP)
	$(VENV)/bin/python -m tools.check_licences --extras demo,emulator,web

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run

bench-ci: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run --ci

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
