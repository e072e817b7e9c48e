# Zeta Router: the two commands are `make demo` and `make test`.
# Every target is idempotent: a second run reuses the venv and the Go tools cache.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup tools lint typecheck test test-unit test-integration chaos soak demo demo-down bench bench-routing bench-streams crd image test-image test-node clean

setup: $(STAMP) tools  ## venv with the project (editable) and test extras, plus the Go tools

# The editable install compiles the sidecar's hot modules in place (setup.py, mypyc): a
# change to the sidecar's sources builds them again, else the tests would run old code.
$(STAMP): pyproject.toml setup.py $(wildcard sidecar/zeta_sidecar/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

tools: $(STAMP)  ## build etcd, kube-apiserver, kube-controller-manager, kubectl, Prometheus, helm (cached)
	$(BIN)/zeta-testbed build

lint: $(STAMP)  ## ruff, formatting, import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: setup lint typecheck  ## everything CI runs; the sidecar's unit tests also in pure Python
	$(BIN)/zeta-sidecar --version
	$(BIN)/pytest
	ZETA_PURE_PYTHON=1 $(BIN)/pytest tests/unit/sidecar

test-unit: $(STAMP)
	$(BIN)/pytest -m unit
	ZETA_PURE_PYTHON=1 $(BIN)/pytest tests/unit/sidecar

test-integration: setup
	$(BIN)/pytest -m "integration or e2e"

chaos: setup  ## the fault suite in full (its short form runs in make test)
	ZETA_CHAOS=full $(BIN)/pytest tests/chaos

soak: setup  ## 10 minutes of mixed load with faults on a schedule (2 minutes in make test)
	ZETA_SOAK_SECONDS=600 $(BIN)/pytest tests/soak

demo: setup  ## a testbed with simulated 4b/7b/14b pods and a little traffic
	$(BIN)/python -m zeta_testbed.demo

demo-down:  ## stop the demo's testbed
	$(BIN)/zeta-testbed down --state-dir .testbed/demo

bench: setup bench-routing bench-streams  ## every benchmark; each writes its table to bench/results/
	$(BIN)/python bench/sim_throughput.py
	$(BIN)/python bench/reconcile_weights.py
	$(BIN)/python bench/proxy_overhead.py
	$(BIN)/python bench/complexity.py
	$(BIN)/python bench/affinity_index.py

bench-routing: setup  ## Zeta vs round robin, least-request, argmin, peers; traffic classes; cache-aware routing (about 45 min)
	$(BIN)/python bench/routing/run.py
	$(BIN)/python bench/routing/run.py --suite classes
	$(BIN)/python bench/routing/run.py --suite affinity

bench-streams: setup  ## 2,000 open SSE streams through the sidecar and vllm-router: RSS and CPU per stream (about 3 min)
	$(BIN)/python bench/open_streams.py

crd: $(STAMP)  ## regenerate the CRD from the zeta_api types (a test checks it is current)
	$(BIN)/python -m zeta_api.crd > manifests/crds/zetarouters.zeta.dev.yaml
	cp manifests/crds/zetarouters.zeta.dev.yaml charts/zeta-router/crds/

image:  ## the container image (podman, root), on a base made from Debian packages; OCI archive in build/image/
	images/build.sh

test-image: image $(STAMP)  ## run both entry points from the image: non-root, read-only root (podman)
	ZETA_IMAGE_TESTS=1 $(BIN)/pytest tests/image

# Needs root and the image archive `make image` leaves in build/image/ (CI runs it right
# after test-image, which builds it); installs containerd from Debian when missing.
test-node: setup  ## the chart on a real node (kubelet + containerd): restricted PSS, SDK traffic, rolling restart, mounted table
	ZETA_NODE_TESTS=1 $(BIN)/pytest tests/node

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	rm -f sidecar/zeta_sidecar/*.so
