"""The README's "ML pipelines also run without Prefect" block, run as written (from a shell that
sourced the stack's env file), and the one-line errors it promises for a mistake."""

from __future__ import annotations

import os
import subprocess

import boto3
import pytest

from infra.cluster import kube
from infra.local.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.integration


def readme_block() -> list[str]:
    block = kube.readme_block("The ML pipelines also run without Prefect:")
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(root=tmp_path_factory.mktemp("readme"), s3_port=free_port(), mlflow_port=free_port(),
                  prefect_port=free_port(), bucket="readme")
    try:
        stack.up(prefect=False)
        yield stack
    finally:
        stack.down()


def _shell(stack: Stack, command: str) -> subprocess.CompletedProcess:
    """`command` in a fresh bash whose PATH has no venv, after `source .state/env` (the stack's)."""
    script = command.replace("source .state/env", f"source {stack.root / 'env'}")
    return subprocess.run(["bash", "-c", f"source {stack.root / 'env'} && {script}"], cwd=ROOT,
                          env={"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=600)


def test_the_readme_block_runs_as_written(stack):
    lines = readme_block()
    assert lines[0] == "source .state/env" and any("--pipelines inference" in line for line in lines)
    for line in lines:
        done = _shell(stack, line)
        assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        noise = done.stdout + done.stderr
        assert "Traceback" not in noise and "Deprecat" not in noise and "register_new_resolver" not in noise, line
    keys = {o["Key"] for o in boto3.client(
        "s3", endpoint_url=stack.s3_url, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1").list_objects_v2(Bucket=stack.bucket)["Contents"]}
    assert {"predictions/taxi=yellow/year=2023/month=04/model_version=1/predictions.parquet",
            "predictions/taxi=yellow/range=2023-04-01_2023-04-08/model_version=1/predictions.parquet",
            "raw/green_tripdata_2023-03.parquet", "validated/taxi=green/year=2023/month=03/trips.parquet"} <= keys


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("kedro run --pipelines nonexistent",
         "Error: no pipeline named 'nonexistent': use one of __default__, evaluation, fit, inference, ingest, training"),
        ("kedro run --pipelines inference --params batch_start=2023-04-01",
         "Error: batch_start=2023-04-01 is set but batch_end is not: set batch_end=YYYY-MM-DD too"),
        ("kedro run --pipelines ingest --params month=2023-4",
         "Error: month='2023-4' is not a month: use the form YYYY-MM"),
    ],
)
def test_a_mistake_is_one_line_without_a_traceback(stack, command, expected):
    done = _shell(stack, command)
    assert done.returncode == 2
    assert expected in done.stderr and "Traceback" not in done.stdout + done.stderr
    verbose = _shell(stack, command.replace("kedro run", "kedro run --verbose"))
    assert expected in verbose.stderr and ("Traceback" in verbose.stderr or "nonexistent" in command)
