# renderlab: each stage runs alone; `make test` and `make demo` chain them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CONFIG ?= Pulumi.example.yaml
APT_LISTS := $(sort $(wildcard requirements/apt*.txt))
LOCK := requirements/lock.txt
STAMP := $(VENV)/.lock-$(shell sha256sum $(LOCK) requirements/bootstrap.txt | sha256sum | cut -c1-16)
PYTEST_ARGS ?=

export PYTHONPATH := $(CURDIR)

.PHONY: help setup apt venv lock check-config lint unit test demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: apt venv ## install system packages and the pinned Python stack

apt: ## install the Debian packages the project needs (only missing ones)
	scripts/apt-install.sh $(APT_LISTS)

venv: $(STAMP) ## create .venv from the hash-pinned lock file

$(STAMP): $(LOCK) requirements/bootstrap.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (bpy is built for it); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/bootstrap.txt
	$(UV) pip install -q --python $(PY) --require-hashes -r $(LOCK)
	rm -f $(VENV)/.lock-*
	touch $@

lock: ## re-resolve requirements/lock.txt from pyproject.toml (hash-pinned)
	$(UV) pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -q -o $(LOCK)

check-config: venv ## validate a stack file: make check-config CONFIG=Pulumi.<stack>.yaml
	$(PY) -m renderlab.check_config $(CONFIG)

lint: venv ## every linter (ruff, yamllint, hadolint, ansible-lint, kubernetes-validate)
	scripts/lint.sh

unit: venv ## the fast tests (no Blender renders, no Airflow runs, no local lab)
	$(VENV)/bin/pytest -m "not slow and not lab" $(PYTEST_ARGS)

test: setup lint ## set up, lint, and run the whole test suite
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup ## run the render pipeline on this machine (local backend, bundled demo song)
	$(PY) -m renderlab.demo

clean: ## remove the venv and caches (never touches your stack files)
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- pipeline ---
.PHONY: images pipeline-test pipeline-bench

images: venv ## build the fetch and Blender images (content tags) and push them to the lab registry
	$(PY) -m renderlab.images build --push --config $(CONFIG)

pipeline-test: venv ## the pipeline's tests (DAG, backends, local end to end)
	$(VENV)/bin/pytest tests/pipeline $(PYTEST_ARGS)

pipeline-bench: venv ## local DAG end to end vs bare Blender on the same frames (prints the ratio)
	$(PY) benchmarks/pipeline_bench.py

# --- content (blender_scripts) ---
.PHONY: blender-pyc blender-songs blender-test blender-bench
BPY_SCRIPTS := $(VENV)/lib/python3.11/site-packages/bpy/5.0/scripts

blender-pyc: venv ## precompile bpy's own scripts (Blender never writes their .pyc; ~0.5 s saved per start)
	$(PY) -m compileall -q -j 0 $(BPY_SCRIPTS) >/dev/null

blender-songs: venv ## re-compose the demo songs into depot/songs/<project>/song.mid
	$(PY) -m blender_scripts.demo_songs --depot depot

blender-test: blender-pyc ## content tests with real bpy (build, measure the saved .blend, tiny renders)
	$(VENV)/bin/pytest tests/blender $(PYTEST_ARGS)

blender-bench: blender-pyc ## content measures: timing error, separation, build time, memory, s/frame
	$(PY) benchmarks/blender_bench.py $(BENCH_ARGS)

# --- fetch ---
.PHONY: fetch-test fetch-bench
fetch-test: venv ## asset fetch tests: file:// for real, the P4-shaped fake, a real p4d when on PATH
	$(VENV)/bin/pytest tests/fetch $(PYTEST_ARGS)

fetch-bench: venv ## benchmark: unchanged re-fetch vs first fetch of a 500-file / 200 MB project
	$(PY) benchmarks/fetch_bench.py
