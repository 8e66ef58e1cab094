# PilotMesh developer entry points. The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test venv tools up down lint clean manifests
.DEFAULT_GOAL := help

help:
	@echo "make demo   - bring up a local Kubernetes control plane (no Docker) and show PilotMesh on it"
	@echo "make test   - install everything the tests need, then run all tests"
	@echo "make tools  - build/install the control-plane binaries and the official Pilot binaries (once)"
	@echo "make up / make down - start/stop a local control plane for your own use"
	@echo "make manifests - regenerate manifests/ from the chart's defaults (helm template)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

tools: venv
	$(BIN)/pilotmesh-controlplane install

# pytest exits 5 when a filter (PYTEST_ARGS=-k ...) selects no test: say so, don't fail
test: venv tools
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected (exit 5)"; exit 0; fi; exit $$rc

demo: venv tools
	$(BIN)/python e2e/demo.py

up: venv tools
	$(BIN)/pilotmesh-controlplane up

down: venv
	$(BIN)/pilotmesh-controlplane down

# Helm from `make tools` (~/.cache/pilotmesh/helm/...), or HELM=/path/to/helm
manifests: venv
	HELM="$${HELM:-$$($(BIN)/python -c 'from pilotmesh_controlplane.tools import cache_dir, HELM_VERSION; print(cache_dir() / "helm" / HELM_VERSION / "helm")')}" charts/gen-manifests.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache
