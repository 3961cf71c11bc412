# `make demo` and `make test` work on a fresh clone: `setup` installs everything they need.
# setup is idempotent and fast the second time: each environment carries a stamp keyed on its inputs.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
CHECKOV_VERSION ?= 3.3.30
export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# This machine's pip config lists local index folders that may not exist; pip warns once per package.
PIP_QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }

.PHONY: help setup venv tools rclone test lint fmt demo bench clean

help:
	@echo "make demo    run the end-to-end demo on local emulators (installs everything first)"
	@echo "make test    ruff + the whole pytest suite (what .ci/run runs)"
	@echo "make bench   run the benchmarks (python -m bench)"
	@echo "make setup   create .venv (project + dev tools) and .venv-tools (checkov), install rclone"
	@echo "make fmt     ruff format + ruff check --fix"
	@echo "make clean   remove the environments and caches"

setup: venv tools rclone

# The project environment; re-installed only when pyproject.toml changes.
venv:
	@want="$$(sha256sum pyproject.toml | cut -d' ' -f1)"; \
	if [ -x $(VENV)/bin/python ] && [ "$$(cat $(VENV)/.setup-stamp 2>/dev/null)" = "$$want" ]; then exit 0; fi; \
	echo "setup: installing the project into $(VENV)"; \
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); \
	$(VENV)/bin/python -m pip install -q -e '.[dev]' $(PIP_QUIET); \
	echo "$$want" > $(VENV)/.setup-stamp

# checkov pins many packages, so it lives in its own environment.
tools:
	@want="checkov==$(CHECKOV_VERSION)"; \
	if [ -x $(TOOLS)/bin/checkov ] && [ "$$(cat $(TOOLS)/.setup-stamp 2>/dev/null)" = "$$want" ]; then exit 0; fi; \
	echo "setup: installing $$want into $(TOOLS)"; \
	[ -x $(TOOLS)/bin/python ] || $(PYTHON) -m venv $(TOOLS); \
	$(TOOLS)/bin/python -m pip install -q "$$want" $(PIP_QUIET); \
	echo "$$want" > $(TOOLS)/.setup-stamp

# rclone is the baseline the benchmarks compare against.
rclone:
	@if command -v rclone >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	else echo "setup: warning: rclone is not installed and this user cannot apt-get; the benchmark baseline needs it" >&2; exit 0; fi; \
	echo "setup: installing rclone (apt-get)"; \
	$$SUDO apt-get install -y -qq rclone >/dev/null 2>&1 || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq rclone >/dev/null; }

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest -q

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: setup
	$(VENV)/bin/migrate demo

bench: setup
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache *.egg-info
