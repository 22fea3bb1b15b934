# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is neither a file nor a directory" || true
	@echo "installing lcsynth and its dependencies into $(VENV) (full log: $(VENV)/install.log)"
	@$(PY) -m pip install -v -e ".[dev]" 2>&1 | tee $(VENV)/install.log | awk -v tty=$$([ -t 1 ] && echo 1 || echo 0) -f scripts/pip-progress.awk \
	  || { tail -n 40 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lcsynth generate recipes/demo.yaml
	@$(PY) scripts/show-demo.py outputs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) -m bench all

clean:
	rm -rf $(VENV) outputs/*/ .pytest_cache .ruff_cache
