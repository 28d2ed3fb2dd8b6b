"""Run a Kedro pipeline with each node as a Prefect task.

Generic glue, no ML logic: the Prefect UI then shows every pipeline step with its own
logs, state and duration. Nodes that read or write S3/MLflow get retries with
exponential backoff, but only for transient failures (connection refused/reset,
timeouts, 5xx); bad data or bad configuration fails at once.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The code a worker pulled from S3 is the code that runs, even where the package is installed.
if str(PROJECT_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "src"))

from kedro.framework.project import pipelines  # noqa: E402
from kedro.framework.session import KedroSession  # noqa: E402
from kedro.framework.startup import bootstrap_project  # noqa: E402
from kedro.io import MemoryDataset  # noqa: E402
from kedro.runner import Task as KedroTask  # noqa: E402
from prefect import get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.exceptions import MissingContextError  # noqa: E402
from prefect.logging.handlers import APILogHandler  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from trip_duration import logs  # noqa: E402
from trip_duration.io.transient import is_transient  # noqa: E402

#: The retry budget of an I/O node, end to end (README, "Retry budget"): 3 retries after 2, 4 and 8 s
#: (+-20 %), each attempt bounded by the clients' own settings (MLflow in prefect.yaml: one retry, 20 s
#: a request; S3 in trip_duration/io/s3.py: 2 attempts, 5 s to connect, 15 s without a byte): an
#: outage fails the run in under 3 minutes.
IO_RETRIES = 3
IO_TIMEOUT_S = 15 * 60
COMPUTE_TIMEOUT_S = 4 * 60 * 60
PROJECT_LOGGERS = ("kedro", "trip_duration")
# our errors (bad data, a missing month, a refused model) as one line, tracebacks at DEBUG only
logs.install()


def retry_on_transient(task_obj: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when the failure is transient I/O."""
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as raised:  # noqa: BLE001 - we only classify it
            error = raised
    transient = is_transient(error)
    if transient:  # Prefect asks only while retries are left; it says "Retry n/m will start" at INFO only
        _run_logger().warning("%s failed on a transient error (attempt %d of %d), retrying: %s: %s",
                              task_run.name, task_run.run_count, IO_RETRIES + 1, type(error).__name__,
                              " ".join(str(error).split())[:300])
    return transient


def _run_logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a run (tests)
        return logging.getLogger(__name__)


def task_options(io_node: bool, compute: bool) -> dict[str, Any]:
    """Retries and time limit of a node's task: I/O nodes retry transient failures only (one policy:
    trip_duration.io.transient), with backoff; a node that hits its time limit is never retried."""
    return {
        "retries": IO_RETRIES if io_node else 0,
        "retry_delay_seconds": exponential_backoff(backoff_factor=2) if io_node else 0,
        "retry_jitter_factor": 0.2 if io_node else None,
        "retry_condition_fn": retry_on_transient if io_node else None,
        "timeout_seconds": COMPUTE_TIMEOUT_S if compute or not io_node else IO_TIMEOUT_S,
    }


def _forward_project_logs() -> None:
    """Send Kedro's and the project's log records to the Prefect run (idempotent)."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(APILogHandler())


def _run_node(node, catalog, hook_manager, session_id) -> str:
    KedroTask(node=node, catalog=catalog, is_async=False, hook_manager=hook_manager, run_id=session_id).execute()
    return node.name


def _touches_io(node, catalog) -> bool:
    for name in node.inputs + node.outputs:
        if name.startswith("params:") or name == "parameters":
            continue
        if not isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset):
            return True
    return False


def runtime_params(params: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys nested, as ``kedro run --params training.device=cuda`` does: Kedro merges run-time
    parameters by their top-level key, so a dotted key given as is would be ignored."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        level = nested
        for part in parents:
            level = level.setdefault(part, {})
        level[leaf] = value
    return nested


def run_pipeline(pipeline_name: str, params: dict[str, Any], label: str | None = None,
                 before: dict[str, Callable[[], None]] | None = None):
    """Run ``pipeline_name`` with run-time ``params``, a Prefect task per node; returns the catalog.
    ``before={node name: fn}`` calls ``fn`` in the flow before that node's task starts (the training run
    waits there for its GPU fit's model)."""
    before = dict(before or {})
    bootstrap_project(PROJECT_ROOT)
    _forward_project_logs()
    prefix = label or pipeline_name
    # As `kedro run --pipeline` does: import (and validate the parameters of) this pipeline only.
    pipelines.set_requested([pipeline_name])
    with KedroSession.create(project_path=PROJECT_ROOT, runtime_params=runtime_params(params)) as session:
        catalog = session.load_context().catalog
        pipeline = pipelines[pipeline_name]
        hook_manager = session._hook_manager  # noqa: SLF001 - the hooks Kedro itself would call
        for dataset in pipeline.datasets():
            catalog.get(dataset, fallback_to_runtime_pattern=True)
        unknown = set(before) - {node.name for node in pipeline.nodes}
        if unknown:
            raise ValueError(f"before= names no node of {pipeline_name}: {sorted(unknown)}")
        for node in pipeline.nodes:  # topologically sorted
            if node.name in before:
                before[node.name]()
            node_task = task(
                _run_node,
                name=node.name,
                task_run_name=f"{prefix}.{node.name}",
                **task_options(io_node=_touches_io(node, catalog), compute="train" in node.name),
                cache_policy=NO_CACHE,
                persist_result=False,
                # No tags: Prefect takes a tag-concurrency lease (a server write) before each tagged
                # task run, and on the local stack's SQLite server that write is where runs stalled
                # (2 s often, 60 s at worst: "database is locked"). The run name carries the pipeline.
                # To cap S3 I/O across runs, tag the I/O nodes and `prefect concurrency-limit create`.
            )
            node_task(node, catalog, hook_manager, session.session_id)
        return catalog


def _log_usage_to_mlflow(run_id: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    stamp = int(time.time() * 1000)
    MlflowClient().log_batch(run_id, metrics=[Metric(key, value, stamp, 0) for key, value in metrics.items()],
                             tags=[RunTag(key, value) for key, value in tags.items()])


def record_usage(mlflow_run_id: str | None = None, others: list | None = None, unknown: dict[str, str] | None = None,
                 tags: dict[str, str] | None = None) -> str:
    """This run's usage and cost (trip_duration.cost): this pod's, plus ``others`` (the training run's GPU fit,
    a ``PodCost``) and ``unknown`` (pods whose usage could not be read: label -> why). One log line per pod and
    the run's cost; logged as metrics (and ``tags``) of ``mlflow_run_id`` when given (a task with the I/O retry
    policy; if MLflow stays away, a WARNING: a training that registered and gated its model is not failed for
    its cost record). Returns the artifact's lines."""
    from trip_duration.cost import record, run_cost_text, usage_markdown, usage_metrics

    pods = [record(), *(others or [])]
    if mlflow_run_id:
        state = task(_log_usage_to_mlflow, name="record_usage", **task_options(io_node=True, compute=False),
                     cache_policy=NO_CACHE, persist_result=False)(mlflow_run_id, usage_metrics(pods, unknown),
                                                                  tags or {}, return_state=True)
        if not state.is_completed():
            _run_logger().warning("the pods' usage was not recorded in MLflow run %s (%s): it is in this "
                                  "run's artifact and log", mlflow_run_id, state.message)
    logger = _run_logger()
    for pod in pods:
        logger.info("pod usage: %s (%s)", pod.usage_line(), pod.label)
    for label, why in (unknown or {}).items():
        logger.warning("pod usage: unknown for %s: %s", label, why)
    logger.info("run cost: %s", run_cost_text(pods, unknown))
    return usage_markdown(pods, unknown)
