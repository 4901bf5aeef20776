# ElasticJob developer entry points. `make help` lists them.
# The two commands of the README: `make demo` (set up everything and run the example on the
# local control plane) and `make test` (every test: unit, launcher, local cluster, images, e2e on
# the local control plane, then the e2e tests marked `kind` again on a kind cluster).

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# Python programs without a .py name, which `ruff check .` would not find
SCRIPTS := hack/kind/cni/kind-netpol
PACKAGES := api/elasticjob_api operator/elasticjob_operator launcher/elasticjob_launcher localcluster/elasticjob_localcluster bench/elasticjob_bench
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup lint test test-local unit generate demo cluster-up cluster-down k8s-binaries images e2e faults bench bench-quick clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv with the project and its dev tools (pip's cache is used)

lint: setup ## ruff, mypy --strict on the packages, the tests and kind's Python scripts, the import contract
	$(BIN)/ruff check . $(SCRIPTS)
	$(BIN)/ruff format --check . $(SCRIPTS)
	$(BIN)/mypy --strict $(PACKAGES) tests $(SCRIPTS)
	$(BIN)/lint-imports

test: setup ## every test: test-local, then e2e-kind, one after the other (the README's test command; CI runs it)
	$(MAKE) test-local
	$(MAKE) e2e-kind

test-local: setup ## every pytest test; starts the local control plane, builds what it needs (no kind)
	$(BIN)/pytest

unit: setup ## the fast tests only (no cluster, no docker)
	$(BIN)/pytest tests/unit

generate: setup ## regenerate the CRD, the API reference, the examples, manifests/install.yaml and the chart README
	$(BIN)/python -m elasticjob_api.crd
	$(BIN)/python -m elasticjob_api.apidoc
	$(BIN)/python hack/render_examples.py
	bash hack/render-install.sh
	$(BIN)/python hack/chart_readme.py

k8s-binaries: ## build (or reuse) kube-apiserver, etcd, kubectl, helm... cached by version
	bash hack/k8s/ensure.sh

cluster-up: setup ## start the local control plane with 3 fake nodes; prints the KUBECONFIG
	$(BIN)/python -m elasticjob_localcluster up

cluster-down: setup ## stop the local control plane and remove everything it made
	$(BIN)/python -m elasticjob_localcluster down

demo: setup ## build/start the local control plane, helm-install the operator, run the CPU example
	$(BIN)/python hack/demo.py

images: ## build the operator and training images with Docker (starts dockerd if needed)
	bash hack/docker/build-images.sh

e2e: setup ## the end-to-end suite only (local control plane unless ELASTICJOB_E2E_KUBECONFIG is set)
	$(BIN)/pytest tests/e2e

faults: setup ## the fault scenarios REPEAT times in a row (default 5), each on a fresh local cluster; stops at the first failure
	for i in $$(seq 1 $(or $(REPEAT),5)); do echo "== faults run $$i"; $(BIN)/pytest -m faults tests/e2e || exit 1; done

bench: setup ## every benchmark: bench/results/<date>.json, PNG plots, docs/benchmarks.md (not part of `make test`)
	$(BIN)/python -m elasticjob_bench

bench-quick: setup ## the benchmarks with fewer sizes, runs and variants
	$(BIN)/python -m elasticjob_bench --quick

clean: ## remove the venv and local cluster state (not the binary cache)
	-$(BIN)/python -m elasticjob_localcluster down
	rm -rf $(VENV) .cluster

# kind (docs/kind.md): a real multi-node cluster in Docker from a node image built here, no registry
.PHONY: kind-node-image kind-up kind-down

kind-node-image: ## build (or load from cache) the kind node image elasticjob-kind-node:v1.35.4
	bash hack/kind/build-node-image.sh

kind-up: ## kind cluster "elasticjob" (1 control plane + 3 workers) from that image; prints the KUBECONFIG
	bash hack/kind/up.sh

kind-down: ## delete the kind cluster made by kind-up
	bash hack/kind/down.sh

.PHONY: e2e-kind
e2e-kind: setup ## the e2e tests marked kind on a fresh kind cluster with the project's images, deleted after (PYTEST_ARGS=...)
	PYTEST=$(BIN)/pytest bash hack/kind/e2e.sh $(PYTEST_ARGS)
