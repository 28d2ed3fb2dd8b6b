"""`prefect --no-prompt deploy --all` of prefect.yaml against a real Prefect server and a
Kubernetes-type pool made from the chart's base job template."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from infra.deployments import DeployCheckError, TEMPLATE, check, unknown_job_variables, load_template
from infra.local.stack import ROOT, VENV_BIN

pytestmark = pytest.mark.integration
POOL = "k8s-test"


@pytest.fixture(scope="module")
def deployed(flow_stack):
    flow_stack.create_pool(pool_type="kubernetes", pool=POOL, template=TEMPLATE)
    env = {**os.environ, "PREFECT_WORK_POOL": POOL, "TRIP_DURATION_IMAGE": "registry.example/trip-duration:test"}
    done = subprocess.run([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {
            "train": client.read_deployment_by_name("training/train"),
            "infer": client.read_deployment_by_name("inference/infer"),
            "pool": client.read_work_pool(POOL),
        }


def test_pool_has_the_chart_template(deployed):
    pool = deployed["pool"]
    assert pool.type == "kubernetes"
    assert {"gpu_limit", "node_selector", "tolerations", "env_from"} <= set(pool.base_job_template["variables"]["properties"])


def test_train_goes_to_the_gpu_queue_with_a_gpu(deployed):
    train = deployed["train"]
    assert (train.work_pool_name, train.work_queue_name) == (POOL, "gpu")
    assert train.job_variables["gpu_limit"] == "1"
    assert train.job_variables["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert train.job_variables["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert train.job_variables["image"] == "registry.example/trip-duration:test"
    assert train.schedules[0].schedule.cron == "0 3 5 * *"
    assert train.global_concurrency_limit.limit == 1
    assert train.enforce_parameter_schema and train.parameters == {"device": "auto"}
    assert set(train.parameter_openapi_schema["properties"]) == {"train_month", "valid_month", "device"}


def test_infer_goes_to_the_cpu_queue_without_a_gpu(deployed):
    infer = deployed["infer"]
    assert (infer.work_pool_name, infer.work_queue_name) == (POOL, "cpu")
    assert "gpu_limit" not in infer.job_variables and "node_selector" not in infer.job_variables
    assert infer.job_variables["cpu_request"] == "1"
    assert infer.schedules[0].schedule.interval.total_seconds() == 86400
    assert infer.global_concurrency_limit.limit == 1
    assert infer.concurrency_options.collision_strategy == "CANCEL_NEW"


def test_code_is_pulled_from_s3_and_no_secret_is_stored(deployed, flow_stack):
    for deployment in (deployed["train"], deployed["infer"]):
        pull_step, unpack_step = deployment.pull_steps
        pull = pull_step["prefect_aws.deployments.steps.pull_from_s3"]
        assert pull["bucket"] == flow_stack.bucket and pull["folder"] == "code/trip-duration/bundle"
        assert unpack_step["prefect.deployments.steps.run_shell_script"]["script"] == "tar -xzf code.tar.gz"
        dumped = yaml.safe_dump(deployment.model_dump(mode="json"))
        assert "AWS_SECRET_ACCESS_KEY" not in dumped and "testing" not in dumped
    import io
    import tarfile

    import boto3

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=flow_stack.bucket, Prefix="code/trip-duration/")["Contents"]]
    assert keys == ["code/trip-duration/bundle/code.tar.gz"]  # one object per deploy
    body = s3.get_object(Bucket=flow_stack.bucket, Key=keys[0])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
        assert {m.uname for m in archive.getmembers()} == {""}
    assert {"flows/training.py", "flows/kedro_tasks.py", "src/trip_duration/settings.py", "conf/base/catalog.yml",
            "pyproject.toml"} <= set(names)
    assert not [n for n in names if n.startswith((".venv/", ".tools/", ".state/", "tests/", "build/", ".git/", "helm/")) or "__pycache__" in n]


def test_misspelled_job_variable_is_caught_before_deploy(tmp_path, monkeypatch):
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    config["deployments"][0]["work_pool"]["job_variables"]["gpu_limt"] = "1"
    problems = unknown_job_variables(config["deployments"], load_template())
    assert len(problems) == 1 and "'gpu_limt'" in problems[0] and "did you mean 'gpu_limit'" in problems[0]
    bad = tmp_path / "prefect.yaml"
    bad.write_text(yaml.safe_dump(config))
    for name in ("TRIP_DURATION_BUCKET", "PREFECT_WORK_POOL", "TRIP_DURATION_IMAGE"):
        monkeypatch.setenv(name, "x")
    with pytest.raises(DeployCheckError, match="gpu_limt"):
        check(bad)
    check()  # the shipped file passes


def test_missing_deploy_variable_names_its_default(monkeypatch):
    monkeypatch.delenv("TRIP_DURATION_IMAGE", raising=False)
    monkeypatch.setenv("TRIP_DURATION_BUCKET", "b")
    monkeypatch.setenv("PREFECT_WORK_POOL", "p")
    with pytest.raises(DeployCheckError, match="TRIP_DURATION_IMAGE is not set: export TRIP_DURATION_IMAGE=ghcr.io"):
        check()


@pytest.mark.parametrize(
    ("deployment", "parameters", "named"),
    [
        ("training/train", {"train_month": "banana"}, "train_month"),
        ("training/train", {"train_month": "2023-13"}, "train_month"),
        ("training/train", {"device": "tpu"}, "device"),
        ("inference/infer", {"batch_start": "2023-02-30x", "batch_end": "2023-03-01"}, "batch_start"),
        ("inference/infer", {"batch_month": "2023-3"}, "batch_month"),
    ],
)
def test_bad_parameters_are_refused_when_the_run_is_created(deployed, deployment, parameters, named):
    """The server checks the flows' parameter schema: no run is created for a malformed month."""
    from prefect.client.orchestration import get_client

    dep = deployed["train" if deployment.startswith("training") else "infer"]
    with get_client(sync_client=True) as client:
        before = len(client.read_flow_runs())
        with pytest.raises(Exception, match=f"Validation failed for field '{named}'"):
            client.create_flow_run_from_deployment(dep.id, parameters=parameters)
        assert len(client.read_flow_runs()) == before  # refused at submit, nothing started


def test_good_parameters_are_accepted_by_the_schema(deployed):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployed["infer"].id, parameters={"batch_start": "2023-02-01", "batch_end": "2023-02-08"})
        client.delete_flow_run(run.id)  # the k8s-test pool has no worker: only the check matters here
