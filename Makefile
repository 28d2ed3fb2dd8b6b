# The two promises of the README: `make demo` and `make test`, on a fresh machine with Python 3.11+.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# The bootstrap needs only this interpreter (standard library): Debian's and Ubuntu's python3 will do.
PYTHON3 ?= python3
PY := .venv/bin/python
PYTEST := .venv/bin/pytest
STACK_DIR ?= $(CURDIR)/.state
export STACK_DIR
# No usage telemetry from tests, the demo or benchmarks (kedro-telemetry, MLflow, Prefect server).
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: help install test test-unit test-integration chart jobs deploy backfill image test-container demo down reset bench bench-drift bench-pod-log bench-cluster bench-images bench-gpu bench-gpu-pods test-cluster cluster-up cluster-down cluster-status docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# infra/bootstrap.py: the pinned uv (fetched and SHA-256-checked if missing), `uv sync --frozen`, then
# bytecode with a running count (as in the image: every flow run is a fresh Python process, and
# without .pyc files each one recompiles thousands of modules). UV=/path/to/uv uses your own uv.
.venv/.synced: pyproject.toml uv.lock infra/bootstrap.py
	@$(PYTHON3) infra/bootstrap.py

install: .venv/.synced ## install the locked environment (uv, fetched if missing) and compile bytecode

test: install ## run the whole suite (unit, integration on real servers, deploy, charts, jobs; container if Docker runs)
	$(PYTEST) -q

test-unit: install ## unit tests only
	$(PYTEST) -q tests/unit

test-integration: install ## tests on real local servers (moto S3, MLflow, Prefect)
	$(PYTEST) -q tests/integration tests/deploy

chart: install ## render the Helm chart for every ci/*-values.yaml, validate every manifest (Kubernetes 1.30)
	$(PYTEST) -q tests/k8s/test_chart.py

jobs: install ## build the exact Job of each deployment into build/k8s/jobs and validate it
	$(PYTEST) -q tests/k8s/test_jobs.py

deploy: install ## check prefect.yaml, then `prefect deploy --all` to the server in PREFECT_API_URL
	$(PY) -m infra.deployments check
	.venv/bin/prefect --no-prompt deploy --all

backfill: install ## score (or TRAIN=1: train on) months FROM..TO (YYYY-MM), one run each, none twice [TAXI=green WATCH=1 AGAIN=1]
	@if [ -z "$(FROM)" ] || [ -z "$(TO)" ]; then echo "usage: make backfill FROM=YYYY-MM TO=YYYY-MM [TAXI=yellow|green] [TRAIN=1] [WATCH=1] [AGAIN=1]"; exit 2; fi
	$(PY) -m infra.backfill --from $(FROM) --to $(TO) --taxi $(or $(TAXI),yellow) $(if $(TRAIN),--train) $(if $(WATCH),--watch) $(if $(AGAIN),--again)

image: ## build the flow-run image (docker build)
	docker build -t trip-duration:dev .

test-container: install ## build the image on a debootstrap base and run a real flow in it
	$(PYTEST) -q tests/container

demo: install ## run train then infer through Prefect workers on the embedded local stack
	$(PY) -m infra.local.demo

down: ## stop what `make demo` started (by PID)
	@if [ -x $(PY) ]; then $(PY) -m infra.local.stack down; else echo "nothing to stop"; fi

reset: down ## stop the stack and delete its state directory
	rm -rf $(STACK_DIR)

bench: install ## benchmarks vs the course baselines -> build/bench/*.json
	$(PY) -m bench.ml_bench
	$(PY) -m bench.orchestration_bench
	@$(PY) -m bench.cluster_bench; rc=$$?; if [ $$rc -eq 2 ]; then echo "bench: cluster part skipped: no cluster answers (make cluster-up)"; elif [ $$rc -ne 0 ]; then exit $$rc; fi

bench-drift: install ## the drift check's cost: summarize with and without the profile in-process, whole infer runs with and without the check -> build/bench/drift*.json
	$(PY) -m bench.drift_bench
	$(PY) -m bench.orchestration_bench --variants ours,ours_no_drift --runs 40 --out drift-orchestration.json

bench-pod-log: install ## a command direct vs through pod_log.py tee with its S3 sidecar (logs that outlive pods) -> build/bench/pod-log.json
	$(PY) -m bench.pod_log_bench

bench-cluster: install ## infer as a Job on the cluster vs the course flow deployed the same way -> build/bench/cluster.json
	$(PY) -m bench.cluster_bench $(ARGS)

bench-images: install ## the image as built vs a CPU-only variant (no CUDA XGBoost, no NCCL) -> build/bench/images.json
	$(PY) -m bench.image_bench

bench-gpu-pods: install ## GPU-pod seconds per training run on the cluster: only the fit on the GPU vs one GPU pod -> build/bench/gpu-pods.json
	$(PY) -m bench.gpu_pods_bench $(ARGS)

bench-gpu: install ## XGBoost CPU vs GPU (3M and 36M synthetic rows) and the pipeline on cuda -> build/bench/gpu.json
	$(PY) -m bench.gpu_bench

test-cluster: install ## end-to-end on a real cluster (ours after `make cluster-up`, kind, or KUBECONFIG): install, deploy, train, infer, logs, upgrade, crash, uninstall
	$(PYTEST) -q tests/cluster -rs

cluster-up: ## a real two-node Kubernetes here (cpu + GPU-labelled node), compiled from the Go module proxy; idempotent
	@infra/cluster/cluster.sh up

cluster-down: ## stop that cluster by PID (state kept; `infra/cluster/cluster.sh purge` deletes it)
	@infra/cluster/cluster.sh down

cluster-status: ## what runs, and the KUBECONFIG to use
	@infra/cluster/cluster.sh status

docs: install ## regenerate the chart's values table in its README
	$(PY) -m infra.helm_docs
