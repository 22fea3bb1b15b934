# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
# `demo` installs lcsynth alone; `test` adds the dev extra (pytest, ruff, and torch, TRL and Ray for the trainer and
# executor tests) and, as root on Debian, the headless browser the viewer's tests drive.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.installed-demo
PYTHON ?= python3

.PHONY: demo test bench lint clean venv browser

venv:
	@test -x $(PY) || { $(PYTHON) -m venv $(VENV) && \
	  { $(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is neither a file nor a directory" || true; }; }

# lcsynth and its own dependencies only (a dev install made before counts too)
$(DEMO_STAMP): pyproject.toml | venv
	@[ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] || scripts/install.sh $(VENV) .
	@touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | venv
	@scripts/install.sh $(VENV) ".[dev]"
	@touch $(STAMP) $(DEMO_STAMP)

# Chromium and its driver for the viewer's browser tests, from Debian's packages, when missing and we are root
browser:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian packages) for the viewer's browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

demo: $(DEMO_STAMP)
	$(VENV)/bin/lcsynth generate recipes/demo.yaml
	@$(PY) scripts/show-demo.py outputs/demo

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) -m bench all

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache .ruff_cache
