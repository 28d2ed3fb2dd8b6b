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
