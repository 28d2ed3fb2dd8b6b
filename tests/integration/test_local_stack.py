"""The embedded stack keeps its state: the S3 server persists to disk under the state folder, so a
`make down` then `make demo` finds raw data, models and run history consistent (README, Quickstart);
`source .state/env` gives a shell the project's commands and the stack's variables."""

from __future__ import annotations

import io
import os
import signal
import subprocess

import boto3
import pytest
from botocore.config import Config

from infra.local.stack import ROOT, VENV_BIN, Stack, free_port, running, wait_http
from tests.conftest import stack_environment

pytestmark = pytest.mark.integration


def _s3(port: int):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}))


class _Server:
    """infra/local/s3server.py in its own process, on a free port, over a data folder."""

    def __init__(self, data):
        self.data, self.port, self.proc = data, free_port(), None

    def start(self):
        log = open(self.data.parent / f"s3-{self.port}.log", "ab")
        self.proc = subprocess.Popen([str(VENV_BIN / "python"), "-m", "infra.local.s3server", "--port",
                                      str(self.port), "--data", str(self.data)], cwd=ROOT, stdout=log, stderr=log)
        wait_http(f"http://127.0.0.1:{self.port}/moto-api/", "s3server", self.data.parent / f"s3-{self.port}.log")
        return _s3(self.port)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    srv = _Server(tmp_path / "s3")
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop(signal.SIGKILL)


def _keys(s3, bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_every_kind_of_write_survives_a_restart(server):
    from boto3.s3.transfer import TransferConfig

    s3 = server.start()
    s3.create_bucket(Bucket="bkt")
    s3.create_bucket(Bucket="doomed")
    s3.put_object(Bucket="doomed", Key="x", Body=b"x")
    s3.put_object(Bucket="bkt", Key="plain", Body=b"v1", ContentType="application/json", Metadata={"who": "test"})
    s3.put_object(Bucket="bkt", Key="plain", Body=b"v2", ContentType="application/json", Metadata={"who": "test"})
    big = os.urandom(6 * 2**20)  # multipart: 5 MiB parts
    s3.upload_fileobj(io.BytesIO(big), "bkt", "dir/multipart.bin",
                      Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
    s3.copy_object(Bucket="bkt", Key="copied", CopySource={"Bucket": "bkt", "Key": "plain"})
    for key in ("gone-1", "gone-2", "gone-3"):
        s3.put_object(Bucket="bkt", Key=key, Body=key.encode())
    s3.delete_object(Bucket="bkt", Key="gone-1")
    s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "gone-2"}, {"Key": "gone-3"}]})
    s3.delete_object(Bucket="doomed", Key="x")
    s3.delete_bucket(Bucket="doomed")
    server.stop()

    s3 = server.start()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["bkt"]
    assert _keys(s3, "bkt") == ["copied", "dir/multipart.bin", "plain"]
    plain = s3.get_object(Bucket="bkt", Key="plain")
    assert plain["Body"].read() == b"v2"
    assert plain["ContentType"] == "application/json" and plain["Metadata"] == {"who": "test"}
    assert s3.get_object(Bucket="bkt", Key="copied")["Body"].read() == b"v2"
    assert s3.get_object(Bucket="bkt", Key="dir/multipart.bin")["Body"].read() == big
    # one blob per current object: replaced and deleted objects left no file behind
    assert len(list((server.data / "blobs").iterdir())) == 3


def test_an_acknowledged_write_survives_sigkill_and_a_cut_write_leaves_nothing(server):
    s3 = server.start()
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="acked", Body=b"payload")
    (server.data / "blobs" / "deadbeef").write_bytes(b"half a write that never committed")
    server.stop(signal.SIGKILL)  # no chance to flush anything at exit

    s3 = server.start()
    assert s3.get_object(Bucket="bkt", Key="acked")["Body"].read() == b"payload"
    assert not (server.data / "blobs" / "deadbeef").exists()  # orphan removed at start


@pytest.fixture(scope="module")
def restarted_stack(tmp_path_factory):
    """A full stack (no workers) that wrote an object, a model version and a flow run, then went
    down and came back up, as `make down` and `make demo` do."""
    stack = Stack(root=tmp_path_factory.mktemp("persist"), s3_port=free_port(), mlflow_port=free_port(),
                  prefect_port=free_port(), bucket="keep")
    try:
        stack.up(workers=False)
        with stack_environment(stack):
            facts = _write_state(stack)
        stack.down()
        assert not [n for n in stack.names() if running(stack._paths(n)[0])]
        stack.up(workers=False)
        with stack_environment(stack):
            yield stack, facts
    finally:
        stack.down()


def _write_state(stack: Stack) -> dict:
    import mlflow
    from mlflow.tracking import MlflowClient
    from prefect import flow
    from prefect.client.orchestration import get_client

    s3 = boto3.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="raw/yellow_tripdata_2023-01.parquet", Body=b"raw month")
    mlflow.set_experiment("persist")
    with mlflow.start_run() as run:
        mlflow.log_text("model bytes", "model/model.txt")
    client = MlflowClient()
    client.create_registered_model("persisted-model")
    version = client.create_model_version("persisted-model", f"runs:/{run.info.run_id}/model", run.info.run_id)
    @flow(name="persisted-flow")
    def persisted_flow() -> None:  # never run: only its run record matters here
        pass

    with get_client(sync_client=True) as prefect:
        flow_run_id = str(prefect.create_flow_run(persisted_flow, name="persisted-run").id)
    return {"version": version.version, "flow_run_id": flow_run_id}


def test_down_then_up_keeps_objects_models_and_run_history(restarted_stack, tmp_path):
    import mlflow
    from prefect.client.orchestration import get_client

    stack, facts = restarted_stack
    body = boto3.client("s3").get_object(Bucket=stack.bucket, Key="raw/yellow_tripdata_2023-01.parquet")["Body"]
    assert body.read() == b"raw month"
    # the registry's version still resolves to its artifacts, which live in S3
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/persisted-model/{facts['version']}",
                                                dst_path=str(tmp_path))
    assert open(os.path.join(local, "model.txt")).read() == "model bytes"
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(facts["flow_run_id"]).name == "persisted-run"


def test_sourced_env_gives_prefect_mlflow_kedro_and_aws(restarted_stack):
    stack, _ = restarted_stack
    script = (f"source {stack.root / 'env'} && prefect version >/dev/null && mlflow --version && kedro --version "
              f"&& trip-duration --help >/dev/null && aws s3 ls --recursive s3://{stack.bucket}/")
    done = subprocess.run(["bash", "-c", script], env={"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin"},
                          cwd="/", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "raw/yellow_tripdata_2023-01.parquet" in done.stdout  # aws reached the stack's S3 over HTTP
    assert "mlflow" in done.stdout.lower() and "kedro" in done.stdout.lower()


def test_a_taken_port_is_named_with_the_variable_that_moves_it(tmp_path, monkeypatch):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        monkeypatch.setenv("STACK_MLFLOW_PORT", str(taken))
        stack = Stack.for_user(tmp_path)
        assert stack.mlflow_port == taken
        with pytest.raises(RuntimeError, match=f"port {taken} .* in use .* STACK_MLFLOW_PORT={taken + 100} make demo"):
            stack.start_mlflow()
    monkeypatch.setenv("STACK_S3_PORT", "nine-thousand")
    with pytest.raises(RuntimeError, match="STACK_S3_PORT='nine-thousand' is not a port number"):
        Stack.for_user(tmp_path)
