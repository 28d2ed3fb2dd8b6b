"""The node tasks' retry policy (flows/kedro_tasks.task_options) on a real Prefect server."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def _attempts(flow_stack, behaviour) -> tuple[str, int]:
    from prefect import flow, task

    from flows.kedro_tasks import task_options

    calls = {"n": 0}

    def node() -> str:
        calls["n"] += 1
        return behaviour(calls["n"])

    options = {**task_options(io_node=True, compute=False), "retry_delay_seconds": 0, "retry_jitter_factor": None}
    node_task = task(node, name="node", persist_result=False, **options)

    @flow(name="retry-policy", persist_result=False)
    def run() -> str:
        return node_task()

    state = run(return_state=True)
    return state.type.value, calls["n"]


def test_a_transient_failure_is_retried_until_it_passes(flow_stack):
    def refused_twice(n: int) -> str:
        if n <= 2:
            raise ConnectionRefusedError("connection refused (the server restarts)")
        return "ok"

    assert _attempts(flow_stack, refused_twice) == ("COMPLETED", 3)


def test_bad_data_and_our_own_time_limit_are_not_retried(flow_stack, monkeypatch):
    def bad(n: int) -> str:
        raise ValueError("trip_distance: must be finite")

    assert _attempts(flow_stack, bad) == ("FAILED", 1)
    import flows.kedro_tasks as kedro_tasks

    monkeypatch.setattr(kedro_tasks, "IO_TIMEOUT_S", 1)  # Prefect raises TaskRunTimeoutError (a TimeoutError)

    def slow(n: int) -> str:
        time.sleep(4)
        return "late"

    assert _attempts(flow_stack, slow) == ("FAILED", 1)


def _record_usage_in_a_flow(run_id: str) -> tuple[str, str]:
    from prefect import flow

    from flows.kedro_tasks import record_usage

    lines: dict[str, str] = {}

    @flow(name="usage-record", persist_result=False)
    def run() -> None:
        lines["artifact"] = record_usage(run_id)

    # The lines are kept here, not read back with state.result(): with persistence off, the engine
    # sometimes hands back the API's copy of the final state, which has no data (MissingResult, seen in CI).
    state = run(return_state=True)
    return state.type.value, lines.get("artifact", "")


def test_a_runs_usage_lands_on_its_mlflow_run_and_mlflow_away_only_warns(flow_stack, monkeypatch):
    """record_usage (flows/kedro_tasks.py): the metrics reach the MLflow run; with MLflow refusing
    connections past the retries, the flow still completes, with a WARNING and the artifact's lines."""
    import flows.kedro_tasks as kedro_tasks
    from infra.local.stack import free_port
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.create_run(client.create_experiment(f"usage-{time.time_ns()}"))
    state, lines = _record_usage_in_a_flow(run.info.run_id)
    metrics = client.get_run(run.info.run_id).data.metrics
    assert state == "COMPLETED" and metrics["pod_seconds_cpu"] > 0 and "pod: **CPU**" in lines

    fast = kedro_tasks.task_options
    monkeypatch.setattr(kedro_tasks, "task_options", lambda **kw: {**fast(**kw), "retry_delay_seconds": 0,
                                                                    "retry_jitter_factor": None})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    import logging

    warned: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("prefect.flow_runs").addHandler(handler)  # Prefect's run loggers do not reach caplog
    try:
        state, lines = _record_usage_in_a_flow(run.info.run_id)
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(handler)
    assert state == "COMPLETED" and "pod: **CPU**" in lines
    assert any("was not recorded in MLflow run" in m for m in warned), warned
