"""End to end on a real Kubernetes cluster: the README's "Deploy to Kubernetes", command for command.

Runs against our own cluster (`make cluster-up`, picked up from .cluster/ when it answers), a kind
cluster, or any cluster KUBECONFIG points at whose nodes hold the images (see values-images.yaml).
In a fresh namespace: helm install --wait with the chart's defaults plus image overrides; make
deploy from this machine through port-forwards; train on the GPU-labelled node and infer on the
cpu node as Kubernetes Jobs; the README's kubectl logs recipes; helm upgrade; a pod deleted
mid-run; helm uninstall and its documented leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from infra.local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
OURS = ROOT / ".cluster"
RELEASE = "td"
FULL = f"{RELEASE}-trip-duration"
BUCKET = "trip-duration"
IMAGE = "trip-duration:test"
KEYS = {"AWS_ACCESS_KEY_ID": "e2e-test-key", "AWS_SECRET_ACCESS_KEY": "e2e-test-secret-not-a-secret"}
# the test node has 2 CPUs: the train deployment's 4-CPU / 16 GiB request would never schedule
# (prefect.yaml keeps the production sizes; a run overrides them, as the README shows)
SMALL = {"cpu_request": "500m", "memory_request": "2Gi"}

pytestmark = pytest.mark.cluster


class Cluster:
    def __init__(self, kubeconfig: str, kind: str, bin_dir: Path | None) -> None:
        self.kubeconfig, self.kind = kubeconfig, kind
        path = f"{bin_dir}{os.pathsep}" if bin_dir else ""
        self.env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": f"{path}{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        self.ns = f"td-e2e-{uuid.uuid4().hex[:6]}"

    def sh(self, *argv: str, timeout: float = 900, check: bool = True, **kwargs) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, env=kwargs.pop("env", self.env),
                              timeout=timeout, cwd=kwargs.pop("cwd", ROOT), **kwargs)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done.stdout

    def kubectl(self, *argv: str, **kwargs) -> str:
        return self.sh("kubectl", "-n", self.ns, *argv, **kwargs)

    def json(self, *argv: str) -> dict:
        return json.loads(self.kubectl(*argv, "-o", "json"))


def _answers(kubeconfig: str) -> bool:
    kubectl = shutil.which("kubectl", path=f"{OURS / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if not kubectl or not Path(kubeconfig).exists():
        return False
    return subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
                          capture_output=True, timeout=20).returncode == 0


def _find_cluster() -> Cluster:
    ours = str(OURS / "etc" / "admin.kubeconfig")
    if os.environ.get("KUBECONFIG") and _answers(os.environ["KUBECONFIG"]):
        config = os.environ["KUBECONFIG"]
        context = subprocess.run(["kubectl", "--kubeconfig", config, "config", "current-context"],
                                 capture_output=True, text=True).stdout.strip()
        kind = "ours" if Path(config).resolve() == Path(ours).resolve() else ("kind" if context.startswith("kind-") else "other")
        return Cluster(config, kind, OURS / "bin" if kind == "ours" else None)
    if _answers(ours):
        return Cluster(ours, "ours", OURS / "bin")
    if os.environ.get("TRIP_DURATION_REQUIRE_CLUSTER") == "1":  # .ci/run brought one up: it must answer
        pytest.fail(f"TRIP_DURATION_REQUIRE_CLUSTER=1 but no cluster answers (KUBECONFIG or {ours})")
    pytest.skip("Kubernetes end-to-end skipped: no cluster answers (run `make cluster-up`, or point KUBECONFIG "
                "at a cluster; .ci/run brings ours up, so CI always runs it)")


def _images(cluster: Cluster) -> None:
    from infra.cluster import images

    reason = images.docker_ready(images.BASE)
    if cluster.kind == "other":
        if os.environ.get("TRIP_DURATION_E2E_IMAGES") != "present":
            pytest.skip("Kubernetes end-to-end skipped: this cluster is neither ours nor kind, so the test cannot put "
                        "its images on the nodes; load trip-duration:test, trip-duration-test/postgres:15 and "
                        "trip-duration-test/s3:moto there, then set TRIP_DURATION_E2E_IMAGES=present")
        return
    if reason:
        pytest.fail(f"a cluster answers but the images cannot be built: {reason}")
    images.build_all()
    if cluster.kind == "ours":
        images.import_all()
        cluster.sh(str(ROOT / "infra" / "cluster" / "cluster.sh"), "volumes")  # released volumes offered again
    else:
        for tag in images.ALL:
            cluster.sh("kind", "load", "docker-image", tag, "--name", os.environ.get("KIND_CLUSTER_NAME", "trip-duration"))


@pytest.fixture(scope="module")
def cluster():
    found = _find_cluster()
    if shutil.which("helm", path=found.env["PATH"]) is None:
        pytest.skip("Kubernetes end-to-end skipped: no helm on PATH (make cluster-up builds one into .cluster/bin)")
    _images(found)
    found.sh("kubectl", "create", "namespace", found.ns)
    try:
        found.kubectl("apply", "-f", str(HERE / "s3.yaml"))
        found.kubectl("rollout", "status", "deploy/s3", "--timeout=300s")
        yield found
    finally:
        found.sh("helm", "uninstall", RELEASE, "-n", found.ns, "--wait", "--timeout", "5m", check=False)
        found.sh("kubectl", "delete", "namespace", found.ns, "--wait=true", "--timeout=300s", check=False)


class Forward:
    """kubectl port-forward to a Service, on a free local port."""

    def __init__(self, cluster: Cluster, service: str, port: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["kubectl", "-n", cluster.ns, "port-forward", f"svc/{service}", f"{self.port}:{port}"],
                                     env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        raise AssertionError(f"port-forward to {service} did not open: {self.proc.stdout.read() if self.proc.poll() is not None else ''}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def installed(cluster):
    """`helm install --wait` with the chart's defaults, the image overrides and the test's S3."""
    started = time.monotonic()
    cluster.sh("helm", "install", RELEASE, str(ROOT / "helm" / "trip-duration"), "-n", cluster.ns, "--wait",
               "--timeout", "10m", "-f", str(HERE / "values-images.yaml"), "--set", f"s3.bucket={BUCKET}",
               "--set", "s3.endpoint=http://s3:9000", "--set", "s3.existingSecret=s3-credentials")
    print(f"helm install --wait: {time.monotonic() - started:.0f}s")
    forwards = {name: Forward(cluster, svc, port) for name, svc, port in (
        ("prefect", f"{FULL}-server", 4200), ("s3", "s3", 9000), ("mlflow", f"{FULL}-mlflow", 5000))}
    env = {**cluster.env, **KEYS, "AWS_DEFAULT_REGION": "us-east-1",
           "PREFECT_API_URL": f"http://127.0.0.1:{forwards['prefect'].port}/api",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{forwards['s3'].port}",
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{forwards['mlflow'].port}",
           "PREFECT_WORK_POOL": "trip-duration", "TRIP_DURATION_BUCKET": BUCKET, "TRIP_DURATION_IMAGE": IMAGE}
    try:
        yield env
    finally:
        for forward in forwards.values():
            forward.close()


def api(env: dict, method: str, path: str, **kwargs):
    response = httpx.request(method, env["PREFECT_API_URL"] + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def run_deployment(env: dict, name: str, parameters: dict, job_variables: dict | None = None) -> str:
    deployment = api(env, "GET", f"/deployments/name/{name}")
    run = api(env, "POST", f"/deployments/{deployment['id']}/create_flow_run",
              json={"parameters": parameters, "job_variables": job_variables or {}})
    return run["id"]


def wait_final(env: dict, run_id: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(env, "GET", f"/flow_runs/{run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(3)
    raise AssertionError(f"flow run {run_id} not final after {timeout}s: {run['state']}")


def job_of(cluster: Cluster, run_id: str, finished: bool = True) -> dict:
    if finished:  # Prefect marks the run Completed before the container exits and the Job completes
        cluster.kubectl("wait", "--for=condition=Complete", "job", "-l", f"prefect.io/flow-run-id={run_id}",
                        "--timeout=180s")
    jobs = cluster.json("get", "jobs", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    assert len(jobs) == 1, f"expected one Job for flow run {run_id}, found {len(jobs)}"
    return jobs[0]


def pod_of(cluster: Cluster, run_id: str) -> dict:
    pods = cluster.json("get", "pods", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    assert pods, f"no pod for flow run {run_id}"
    return pods[0]


def test_install_brings_up_every_pod_and_the_work_pool(cluster, installed):
    pods = cluster.json("get", "pods")["items"]
    chart_pods = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/instance") == RELEASE]
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in chart_pods} >= {
        "server", "postgresql", "mlflow", "worker-gpu", "worker-cpu"}
    for pod in chart_pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready.get("Ready") == "True", pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "trip-duration-cpu" or cluster.kind != "ours"  # never on the GPU node
    status = json.loads(cluster.sh("helm", "status", RELEASE, "-n", cluster.ns, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    pool = api(installed, "GET", "/work_pools/trip-duration")
    shared = json.loads((ROOT / "helm" / "trip-duration" / "files" / "base-job-template.json").read_text())
    assert pool["type"] == "kubernetes"
    assert pool["base_job_template"]["job_configuration"] == shared["job_configuration"]
    assert pool["base_job_template"]["variables"]["properties"]["image"]["default"] == IMAGE
    queues = {q["name"]: q for q in api(installed, "POST", "/work_pools/trip-duration/queues/filter", json={})}
    assert queues["gpu"]["concurrency_limit"] == 1 and queues["cpu"]["concurrency_limit"] == 10


@pytest.fixture(scope="module")
def deployed(cluster, installed):
    """`make deploy` from this machine (the README's commands), schedules paused so only our runs run."""
    cluster.sh("aws", "s3", "mb", f"s3://{BUCKET}", env=installed)
    out = cluster.sh("make", "deploy", env=installed, timeout=600)
    assert "prefect deployment run 'training/train'" in out or "training/train" in out
    for name in ("training/train", "inference/infer"):
        deployment = api(installed, "GET", f"/deployments/name/{name}")
        for schedule in deployment["schedules"]:
            api(installed, "PATCH", f"/deployments/{deployment['id']}/schedules/{schedule['id']}", json={"active": False})
    import boto3  # noqa: PLC0415

    s3 = boto3.client("s3", endpoint_url=installed["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                      aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
    assert s3.head_object(Bucket=BUCKET, Key="code/trip-duration/bundle/code.tar.gz")["ContentLength"] > 0
    cluster.sh("trip-duration", "generate", "--month", "2023-01", "--months", "2", "--rows", "50000", env=installed)
    return s3


@pytest.fixture(scope="module")
def trained(cluster, installed, deployed):
    run_id = run_deployment(installed, "training/train", {"train_month": "2023-01"}, SMALL)
    run = wait_final(installed, run_id)
    logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={run_id}", "--tail=-1", check=False)
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{logs[-5000:]}"
    return run_id


def test_train_runs_as_a_job_on_the_gpu_node_and_sets_the_champion(cluster, installed, trained):
    job = job_of(cluster, trained)
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert job["status"].get("succeeded") == 1
    pod = pod_of(cluster, trained)
    node = cluster.sh("kubectl", "get", "node", pod["spec"]["nodeName"], "-o", "json")
    assert json.loads(node)["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(installed["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("trip-duration", "champion")
    assert client.get_run(champion.run_id).data.tags.get("prefect_flow_run_id") == trained
    logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={trained}", "--tail=-1")
    # no GPU behind the node's nvidia.com/gpu: device=auto falls back to CPU and says so
    assert "training XGBoost on cpu (training.device=auto)" in logs


def test_infer_runs_on_the_cpu_node_without_a_gpu_and_writes_every_row(cluster, installed, deployed, trained):
    run_id = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"})
    run = wait_final(installed, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    job = job_of(cluster, run_id)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {})
    assert not job["spec"]["template"]["spec"].get("tolerations")
    pod = pod_of(cluster, run_id)
    if cluster.kind == "ours":
        assert pod["spec"]["nodeName"] == "trip-duration-cpu"
    listed = deployed.list_objects_v2(Bucket=BUCKET, Prefix="predictions/")["Contents"]
    assert any(o["Key"].endswith(".parquet") for o in listed)
    import io

    import pyarrow.parquet as pq

    key = next(o["Key"] for o in listed if o["Key"].endswith(".parquet") and "month=02" in o["Key"])
    scored = pq.read_table(io.BytesIO(deployed.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    validated = next(o["Key"] for o in deployed.list_objects_v2(Bucket=BUCKET, Prefix="validated/")["Contents"]
                     if "month=02" in o["Key"])
    expected = pq.read_table(io.BytesIO(deployed.get_object(Bucket=BUCKET, Key=validated)["Body"].read())).num_rows
    assert scored.num_rows == expected


def test_the_readmes_kubectl_logs_recipes_show_the_kedro_nodes(cluster, installed, trained):
    by_run = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={trained}", "--tail=-1")
    by_deployment = cluster.kubectl("logs", "-l", "prefect.io/deployment-name=train", "--tail=-1")
    for logs in (by_run, by_deployment):
        assert "Running node: train_model" in logs or "train_model" in logs
        assert "Completed node" in logs or "Finished in state Completed" in logs
    worker = cluster.kubectl("logs", f"deploy/{FULL}-worker-gpu")
    assert trained in worker


def test_upgrade_updates_the_pool_template_keeps_the_data_and_runs_still_complete(cluster, installed, trained):
    before = api(installed, "GET", f"/flow_runs/{trained}")
    cluster.sh("helm", "upgrade", RELEASE, str(ROOT / "helm" / "trip-duration"), "-n", cluster.ns, "--reuse-values",
               "--set", "workPool.jobDefaults.finishedJobTtl=1800", "--wait", "--timeout", "10m")
    pool = api(installed, "GET", "/work_pools/trip-duration")
    assert pool["base_job_template"]["variables"]["properties"]["finished_job_ttl"]["default"] == 1800
    assert api(installed, "GET", f"/flow_runs/{trained}")["state"]["type"] == before["state"]["type"] == "COMPLETED"
    run_id = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"})
    assert wait_final(installed, run_id)["state"]["type"] == "COMPLETED"
    assert job_of(cluster, run_id)["spec"]["ttlSecondsAfterFinished"] == 1800


def _history(env: dict, run_id: str) -> list[tuple[str, str]]:
    states = api(env, "GET", f"/flow_run_states/?flow_run_id={run_id}")
    return [(st["type"], st["name"]) for st in sorted(states, key=lambda st: st["timestamp"])]


def test_a_pod_deleted_mid_run_is_rescheduled_and_completes_in_a_new_job(cluster, installed, trained):
    """A drain or eviction deletes the pod (SIGTERM): prefect-kubernetes sets
    PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR=reschedule in every Job, so the run goes back to
    AwaitingRetry, the worker submits a new Job, and it completes: never Running forever."""
    run_id = run_deployment(installed, "training/train", {"train_month": "2023-01"}, SMALL)
    deadline = time.monotonic() + 300
    while api(installed, "GET", f"/flow_runs/{run_id}")["state"]["type"] != "RUNNING":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.5)
    cluster.kubectl("delete", "pod", "-l", f"prefect.io/flow-run-id={run_id}", "--wait=false")
    final = wait_final(installed, run_id, timeout=600)
    history = _history(installed, run_id)
    assert final["state"]["type"] == "COMPLETED", history
    assert ("SCHEDULED", "AwaitingRetry") in history and [t for t, _ in history].count("RUNNING") == 2, history
    jobs = cluster.json("get", "jobs", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    assert len(jobs) == 2, [j["metadata"]["name"] for j in jobs]


def test_a_pod_killed_hard_ends_crashed_and_a_rerun_completes(cluster, installed, trained):
    """A hard kill gives Prefect no SIGTERM to react to (here: the kernel's OOM killer, as a pod over
    its memory limit meets it): the worker sees the Job fail and marks the run Crashed."""
    run_id = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"},
                            {"memory_request": "64Mi", "memory_limit": "64Mi"})
    final = wait_final(installed, run_id, timeout=600)
    assert final["state"]["type"] == "CRASHED", _history(installed, run_id)
    pod = pod_of(cluster, run_id)
    reason = pod["status"]["containerStatuses"][0]["state"].get("terminated", {}).get("reason")
    assert reason == "OOMKilled", pod["status"]
    rerun = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"})
    assert wait_final(installed, rerun)["state"]["type"] == "COMPLETED"


def test_uninstall_leaves_only_the_documented_leftovers(cluster, installed, trained):
    cluster.sh("helm", "uninstall", RELEASE, "-n", cluster.ns, "--wait", "--timeout", "5m")
    # the controllers' pods go after their owners (garbage collection, then the grace period)
    cluster.kubectl("wait", "--for=delete", "pod", "-l", f"app.kubernetes.io/instance={RELEASE}", "--timeout=180s")
    left = {(o["kind"], o["metadata"]["name"]) for o in cluster.json("get", "all,secret,configmap,pvc,sa,role,rolebinding")["items"]}
    ours = {(kind, name) for kind, name in left if FULL in name or name.startswith(RELEASE + "-")}
    # README, Deploy to Kubernetes > Uninstall: the database's volume and its password are kept on
    # purpose; flow-run Jobs (created by the workers, not by Helm) go when finishedJobTtl expires
    assert ours == {("PersistentVolumeClaim", f"data-{FULL}-postgresql-0"), ("Secret", f"{FULL}-postgresql")}, ours
    leftover_jobs = [n for k, n in left if k == "Job"]
    assert all(cluster.json("get", "job", n)["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "prefect"
               for n in leftover_jobs)
    cluster.kubectl("delete", "pvc", f"data-{FULL}-postgresql-0")
    cluster.kubectl("delete", "secret", f"{FULL}-postgresql")
