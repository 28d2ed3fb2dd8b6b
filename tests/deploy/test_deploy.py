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
            "train-green": client.read_deployment_by_name("training/train-green"),
            "fit": client.read_deployment_by_name("training-fit/fit"),
            "infer": client.read_deployment_by_name("inference/infer"),
            "infer-green": client.read_deployment_by_name("inference/infer-green"),
            "pool": client.read_work_pool(POOL),
        }


def test_pool_has_the_chart_template(deployed):
    pool = deployed["pool"]
    assert pool.type == "kubernetes"
    assert {"gpu_limit", "node_selector", "tolerations", "env_from"} <= set(pool.base_job_template["variables"]["properties"])


def test_train_goes_to_the_cpu_queue_and_only_its_fit_to_the_gpu_queue_with_a_gpu(deployed):
    """README, "Only the fit on the GPU": train asks for no GPU; fit (no schedule, started by train) does."""
    train, fit = deployed["train"], deployed["fit"]
    assert (train.work_pool_name, train.work_queue_name) == (POOL, "cpu")
    assert not {"gpu_limit", "node_selector", "tolerations"} & set(train.job_variables)
    assert (train.job_variables["cpu_request"], train.job_variables["memory_request"]) == ("2", "8Gi")
    assert train.job_variables["mlflow_identity"] == "trainer" and "mlflow_identity" not in fit.job_variables
    assert (fit.work_pool_name, fit.work_queue_name, fit.schedules) == (POOL, "gpu", [])
    assert fit.job_variables["gpu_limit"] == "1"
    assert fit.job_variables["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert fit.job_variables["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert fit.enforce_parameter_schema and fit.parameters == {"device": "auto"} and fit.pull_steps == train.pull_steps
    assert set(fit.parameter_openapi_schema["properties"]) == {"train_month", "taxi", "device"}
    assert train.job_variables["image"] == "registry.example/trip-duration:test" == fit.job_variables["image"]
    assert [s.schedule.cron for s in train.schedules] == ["0 3 5 * *"]
    assert train.global_concurrency_limit.limit == 1
    assert train.concurrency_options.collision_strategy == "ENQUEUE"
    assert train.enforce_parameter_schema and train.parameters == {"device": "auto", "taxi": "yellow"}
    assert set(train.parameter_openapi_schema["properties"]) == {"train_month", "valid_month", "device", "taxi",
                                                                  "fit_on", "fit_job_variables", "event_id"}
    assert train.parameter_openapi_schema["properties"]["fit_on"]["enum"] == ["gpu-queue", "this-pod"]
    assert train.parameter_openapi_schema["properties"]["taxi"]["enum"] == ["yellow", "green"]


def test_infer_goes_to_the_cpu_queue_without_a_gpu(deployed):
    infer = deployed["infer"]
    assert (infer.work_pool_name, infer.work_queue_name) == (POOL, "cpu")
    assert "gpu_limit" not in infer.job_variables and "node_selector" not in infer.job_variables
    assert infer.job_variables["cpu_request"] == "1"
    assert infer.schedules[0].schedule.interval.total_seconds() == 86400
    assert infer.global_concurrency_limit.limit == 1
    assert infer.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert infer.parameters["taxi"] == "yellow"


def test_green_training_has_its_own_deployment_schedule_and_slot(deployed):
    """The type is a deployment parameter, not a schedule's (Prefect 3.8 resets those on pause/resume)."""
    green, yellow = deployed["train-green"], deployed["train"]
    assert green.parameters == {"device": "auto", "taxi": "green"} and green.work_queue_name == "cpu"
    assert green.job_variables == yellow.job_variables and green.pull_steps == yellow.pull_steps
    assert [s.schedule.cron for s in green.schedules] == ["0 3 6 * *"] and not green.schedules[0].parameters
    assert green.global_concurrency_limit.id != yellow.global_concurrency_limit.id


def test_green_inference_has_its_own_deployment_and_concurrency_slot(deployed):
    green, yellow = deployed["infer-green"], deployed["infer"]
    assert green.parameters == {"reingest": False, "taxi": "green"} and green.work_queue_name == "cpu"
    assert green.job_variables == yellow.job_variables and green.pull_steps == yellow.pull_steps
    assert green.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert green.global_concurrency_limit.id != yellow.global_concurrency_limit.id  # never cancels yellow's run
    assert green.schedules[0].schedule.interval.total_seconds() == 86400


def _pull_script(deployment) -> str:
    (step,) = deployment.pull_steps
    shell = step["prefect.deployments.steps.run_shell_script"]
    assert shell["expand_env_vars"] is True
    return shell["script"]


def _run_pull(script: str, cwd, env=None) -> subprocess.CompletedProcess:
    """The pull step as the flow-run pod runs it: $TRIP_DURATION_CODE_PULL expanded, then the command."""
    import shlex
    import string

    env = {**os.environ, **(env or {})}
    argv = shlex.split(string.Template(script).safe_substitute(env))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_code_is_one_content_addressed_archive_and_no_secret_is_stored(deployed, flow_stack):
    import hashlib
    import io
    import re
    import tarfile

    import boto3

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=flow_stack.bucket, Prefix="code/trip-duration/")["Contents"]]
    assert len(keys) == 1, keys  # one object per deploy (both deployments share it)
    body = s3.get_object(Bucket=flow_stack.bucket, Key=keys[0])["Body"].read()
    sha256 = hashlib.sha256(body).hexdigest()
    assert keys[0] == f"code/trip-duration/{sha256}.tar.gz"  # the key is the bytes' hash
    for deployment in (deployed["train"], deployed["infer"]):
        script = _pull_script(deployment)
        assert re.fullmatch(rf"\$TRIP_DURATION_CODE_PULL --bucket {flow_stack.bucket} --key {re.escape(keys[0])} "
                            rf"--sha256 {sha256}", script), script
        dumped = yaml.safe_dump(deployment.model_dump(mode="json"))
        assert "AWS_SECRET_ACCESS_KEY" not in dumped and "testing" not in dumped
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
        assert {m.uname for m in archive.getmembers()} == {""} and {m.mtime for m in archive.getmembers()} == {0}
    assert {"flows/training.py", "flows/kedro_tasks.py", "src/trip_duration/settings.py", "conf/base/catalog.yml",
            "pyproject.toml"} <= set(names)
    assert not [n for n in names if n.startswith((".venv/", ".tools/", ".state/", "tests/", "build/", ".git/", "helm/")) or "__pycache__" in n]


def test_the_pull_step_unpacks_the_named_archive_and_refuses_a_swapped_one(deployed, flow_stack, tmp_path):
    import boto3

    script = _pull_script(deployed["infer"])
    good = tmp_path / "good"
    good.mkdir()
    done = _run_pull(script, good)
    assert done.returncode == 0, done.stderr
    assert (good / "flows" / "inference.py").is_file() and "verified" in done.stdout
    assert not [p for p in good.iterdir() if p.name.startswith(".code-pull-")]  # the download is gone
    # whoever can write the bucket replaces the object under the same key: the run refuses it
    key = script.split("--key ", 1)[1].split()[0]
    s3 = boto3.client("s3")
    original = s3.get_object(Bucket=flow_stack.bucket, Key=key)["Body"].read()
    try:
        s3.put_object(Bucket=flow_stack.bucket, Key=key, Body=original[:-20] + b"\0" * 20)
        swapped = tmp_path / "swapped"
        swapped.mkdir()
        done = _run_pull(script, swapped)
        assert done.returncode == 2 and "SHA-256 is" in done.stderr and "nothing was unpacked" in done.stderr, done.stderr
        assert list(swapped.iterdir()) == []
    finally:
        s3.put_object(Bucket=flow_stack.bucket, Key=key, Body=original, Metadata={"sha256": key.rsplit("/", 1)[1][:64]})


def test_rollback_redeploys_an_earlier_archive_and_refuses_an_unknown_one(deployed, flow_stack, tmp_path, monkeypatch):
    """`TRIP_DURATION_CODE_SHA256=<hash> make deploy` points every deployment at that archive, packing nothing."""
    import shutil

    from prefect.client.orchestration import get_client

    from infra import code_bundle

    current = _pull_script(deployed["infer"])
    # an "earlier" archive: the project's files plus one, pushed as a deploy would
    old = tmp_path / "earlier"
    for rel in code_bundle.select_files(ROOT, (ROOT / ".prefectignore").read_text().splitlines()):
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, old / rel)
    (old / "flows" / "EARLIER").write_text("an earlier deploy\n")
    monkeypatch.chdir(old)
    packed = code_bundle.pack()
    code_bundle.push(flow_stack.bucket, packed["bundle_dir"], packed["sha256"], packed["key"])
    monkeypatch.chdir(ROOT)
    env = {**os.environ, "PREFECT_WORK_POOL": POOL, "TRIP_DURATION_IMAGE": "registry.example/trip-duration:test"}
    deploy = [str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"]
    try:
        done = subprocess.run(deploy, cwd=ROOT, env={**env, "TRIP_DURATION_CODE_SHA256": packed["sha256"]},
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        with get_client(sync_client=True) as client:
            for name in ("training/train", "inference/infer"):
                assert f"--sha256 {packed['sha256']}" in _pull_script(client.read_deployment_by_name(name))
            rolled = _pull_script(client.read_deployment_by_name("inference/infer"))
        unpacked = tmp_path / "run"
        unpacked.mkdir()
        assert _run_pull(rolled, unpacked).returncode == 0 and (unpacked / "flows" / "EARLIER").exists()
        missing = "0" * 64
        done = subprocess.run(deploy, cwd=ROOT, env={**env, "TRIP_DURATION_CODE_SHA256": missing},
                              capture_output=True, text=True)
        assert done.returncode != 0 and f"code/trip-duration/{missing}.tar.gz does not exist" in done.stdout + done.stderr
    finally:  # back to the current code, as a plain deploy does
        done = subprocess.run(deploy, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with get_client(sync_client=True) as client:
        assert _pull_script(client.read_deployment_by_name("inference/infer")) == current


def test_misspelled_job_variable_is_caught_before_deploy(tmp_path, monkeypatch):
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    config["deployments"][0]["work_pool"]["job_variables"]["gpu_limt"] = "1"
    problems = unknown_job_variables(config["deployments"], load_template())
    # train-green inherits train's job variables (a YAML merge key): the typo is reported for both
    assert [p.split("'")[1] for p in problems] == ["train", "train-green"]
    assert all("'gpu_limt'" in p and "did you mean 'gpu_limit'" in p for p in problems)
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
        ("training/train", {"taxi": "purple"}, "taxi"),
        ("inference/infer", {"taxi": "Yellow"}, "taxi"),
    ],
)
def test_bad_parameters_are_refused_when_the_run_is_created(deployed, deployment, parameters, named):
    """The server checks the flows' parameter schema: no run is created for a malformed month."""
    from prefect.client.orchestration import get_client

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    dep = deployed["train" if deployment.startswith("training") else "infer"]

    def by_hand(client) -> set:  # the scheduler adds auto-scheduled runs of these deployments at any time
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        return {r.id for r in runs if not r.auto_scheduled}

    with get_client(sync_client=True) as client:
        before = by_hand(client)
        with pytest.raises(Exception, match=f"Validation failed for field '{named}'"):
            client.create_flow_run_from_deployment(dep.id, parameters=parameters)
        assert by_hand(client) == before  # refused at submit, nothing started


def test_good_parameters_are_accepted_by_the_schema(deployed):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployed["infer"].id, parameters={"batch_start": "2023-02-01", "batch_end": "2023-02-08"})
        client.delete_flow_run(run.id)  # the k8s-test pool has no worker: only the check matters here
