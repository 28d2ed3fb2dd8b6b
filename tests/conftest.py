"""Shared fixtures: a real local stack (moto S3 + MLflow, optionally Prefect) on free loopback ports."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
for _var, _value in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                     "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
    os.environ.setdefault(_var, _value)  # never phone home from tests
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.local.stack import Stack, free_port  # noqa: E402


def reset_clients(prefect: bool = False) -> None:
    """Forget cached settings and S3 clients after the environment changed (and Prefect's
    settings, which it reads once when first imported: a test may have imported it early)."""
    from trip_duration.config import get_settings
    from trip_duration.io import s3

    get_settings.cache_clear()
    s3.client.cache_clear()
    if prefect and "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


@contextlib.contextmanager
def stack_environment(stack: Stack) -> Iterator[Stack]:
    """Point this process's clients (boto3, MLflow, Prefect) at ``stack`` for a while."""
    saved = dict(os.environ)
    os.environ.update(stack.env())
    reset_clients(prefect=True)  # not on the way out: with no API URL Prefect would start a temporary server
    try:
        yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


@pytest.fixture(scope="session")
def _ml_servers(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    stack = Stack(root=root, s3_port=free_port(), mlflow_port=free_port(), prefect_port=free_port(), bucket="trips-test")
    try:
        stack.up(prefect=False)
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def ml_stack(_ml_servers) -> Iterator[Stack]:
    """moto S3 and an MLflow server (sqlite backend, S3 artifacts), with the env pointing at them."""
    with stack_environment(_ml_servers) as stack:
        yield stack


def put_month(stack: Stack, month: str, rows: int = 20_000, seed: int = 7, taxi: str = "yellow",
              layout_year: str = "2023") -> str:
    """Write a synthetic TLC month (``taxi``, in TLC's ``layout_year`` layout) to raw/ through the S3 server;
    returns its key."""
    from trip_duration import layout
    from trip_duration.io import s3
    from trip_duration.periods import Month
    from trip_duration.synth import generate_month

    buffer = io.BytesIO()
    pq.write_table(generate_month(month, rows=rows, seed=seed, taxi=taxi, layout=layout_year), buffer)
    key = layout.raw_key(taxi, Month.parse(month))
    s3.put_bytes(stack.bucket, key, buffer.getvalue())
    return key


def kedro_run(pipeline: str, **params) -> dict:
    """Run a project pipeline in a real KedroSession, like `kedro run --pipeline ... --params ...` (dotted keys
    nested as that does)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from flows.kedro_tasks import runtime_params

    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, runtime_params=runtime_params(params)) as session:
        return session.run(pipeline_names=[pipeline])


@pytest.fixture(scope="session")
def _flow_servers(tmp_path_factory) -> Iterator[Stack]:
    """The full local stack: S3, MLflow, Prefect server, a process pool and a worker per queue.

    Flow-run processes reach S3 through a fault-injecting proxy, and the MLflow server its artifact
    store through another (each idle until a test arms it).
    """
    from tests.faults import FlakyS3Proxy

    root = tmp_path_factory.mktemp("flowstack")
    proxy_port, mlflow_proxy_port = free_port(), free_port()
    stack = Stack(root=root, s3_port=free_port(), mlflow_port=free_port(), prefect_port=free_port(),
                  bucket="trips-flows", s3_endpoint=f"http://127.0.0.1:{proxy_port}",
                  mlflow_s3_endpoint=f"http://127.0.0.1:{mlflow_proxy_port}")
    proxy = FlakyS3Proxy(stack.s3_port, proxy_port)
    mlflow_proxy = FlakyS3Proxy(stack.s3_port, mlflow_proxy_port)
    try:
        stack.start_s3()
        proxy.start()
        mlflow_proxy.start()
        stack.up()
        stack.proxy = proxy  # type: ignore[attr-defined]
        stack.mlflow_proxy = mlflow_proxy  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.down()
        proxy.stop()
        mlflow_proxy.stop()


@pytest.fixture(scope="module")
def flow_stack(_flow_servers) -> Iterator[Stack]:
    """The full stack, with this process's clients pointed at it for the module."""
    with stack_environment(_flow_servers) as stack:
        yield stack


def fit_runs(parent_id) -> list:
    """The runs of the ``fit`` deployment a training run started (its subflows), oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC)
