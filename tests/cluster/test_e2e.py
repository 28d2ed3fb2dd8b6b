"""End to end on a real Kubernetes cluster: the README's "Deploy to Kubernetes", command for command.

Runs against our own cluster (`make cluster-up`, picked up from .cluster/ when it answers), a kind
cluster, or any cluster KUBECONFIG points at whose nodes hold the images (see values-images.yaml).
The README's block "A real cluster on this machine" is run as written by bash -euo pipefail
(infra/cluster/kube.py: only the namespace, a fresh one, and the local ports of the port-forwards
change): helm install --wait with the chart's defaults plus image overrides, make deploy from this
machine, two synthetic months, train on the GPU-labelled node and infer on the cpu node as
Kubernetes Jobs, kubectl logs. Then the README's other recipes (logs by flow run, the worker's
logs, upgrade, uninstall and its leftovers) and what a reviewer checks: where each Job ran, what
it asked for, what it wrote; a pod deleted mid-run; a pod killed hard.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from infra.cluster.kube import (FULL, README, RELEASE, Cluster, Forward, ReadmeRun, api, find, fit_runs, load_images,
                                localise, pause_schedules, pause_triggers, readme_block, run_deployment, wait_final)
from infra.deployments import SCHEDULED, TRIGGERED

ROOT = README.parent
BUCKET = "trip-duration"
IMAGE = "trip-duration:test"
# the test node has 2 CPUs: the train deployment's 2-CPU / 8 GiB request and its fit's 4-CPU / 16 GiB would never
# schedule (prefect.yaml keeps the production sizes; a run overrides them, the fit's by fit_job_variables, as the
# README shows)
SMALL = {"cpu_request": "500m", "memory_request": "2Gi"}

pytestmark = pytest.mark.cluster


def _find_cluster() -> Cluster:
    found = find("td-e2e")
    if found is not None:
        return found
    if os.environ.get("TRIP_DURATION_REQUIRE_CLUSTER") == "1":  # .ci/run brought one up: it must answer
        pytest.fail("TRIP_DURATION_REQUIRE_CLUSTER=1 but no cluster answers (KUBECONFIG or .cluster/etc/admin.kubeconfig)")
    pytest.skip("Kubernetes end-to-end skipped: no cluster answers (run `make cluster-up`, or point KUBECONFIG "
                "at a cluster; .ci/run brings ours up, so CI always runs it)")


def _images(cluster: Cluster) -> None:
    from infra.cluster import images

    if cluster.kind == "other":
        if os.environ.get("TRIP_DURATION_E2E_IMAGES") != "present":
            pytest.skip("Kubernetes end-to-end skipped: this cluster is neither ours nor kind, so the test cannot put "
                        "its images on the nodes; load trip-duration:test, trip-duration-test/postgres:15 and "
                        "trip-duration-test/s3:moto there, then set TRIP_DURATION_E2E_IMAGES=present")
        return
    reason = images.docker_ready(images.BASE)
    if reason:
        pytest.fail(f"a cluster answers but the images cannot be built: {reason}")
    if cluster.kind == "ours":  # the README's block builds and imports them; released volumes offered again
        cluster.sh(str(ROOT / "infra" / "cluster" / "cluster.sh"), "volumes")
    else:
        load_images(cluster)


@pytest.fixture(scope="module")
def cluster():
    found = _find_cluster()
    if shutil.which("helm", path=found.env["PATH"]) is None:
        pytest.skip("Kubernetes end-to-end skipped: no helm on PATH (make cluster-up builds one into .cluster/bin)")
    _images(found)
    try:
        yield found
    finally:
        found.sh("helm", "uninstall", RELEASE, "-n", found.ns, "--wait", "--timeout", "5m", check=False)
        found.sh("kubectl", "delete", "namespace", found.ns, "--wait=true", "--timeout=300s", check=False)


@pytest.fixture(scope="module")
def readme(cluster, tmp_path_factory):
    """The README's block, run as written (namespace and local ports aside)."""
    run = ReadmeRun(cluster, tmp_path_factory.mktemp("readme") / "readme-block.log")
    try:
        run.run()
        print(f"README block: {run.seconds:.0f}s")
        yield run
    finally:
        run.close()


@pytest.fixture(scope="module")
def installed(cluster, readme):
    """The README's exports (API, S3 through its port-forwards), plus MLflow for the checks."""
    env = readme.env()
    pause_schedules(env, *SCHEDULED)  # only our runs run from here on
    # and no run queued by an event: a promotion's rescoring, a drift's retraining (prefect.yaml's triggers;
    # tested on the local stack)
    assert pause_triggers(env, *TRIGGERED) == [
        "trip-duration: rescore with a new champion", "trip-duration: retrain yellow on drift",
        "trip-duration: train yellow on a new month", "trip-duration: retrain green on drift",
        "trip-duration: train green on a new month", "trip-duration: ingest a new raw month"]
    mlflow = Forward(cluster, f"{FULL}-mlflow", 5000)
    try:  # MLflow's admin, from the Secret the chart generated
        yield {**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow.port}", "MLFLOW_TRACKING_USERNAME": "admin",
               "MLFLOW_TRACKING_PASSWORD": secret(cluster, f"{FULL}-mlflow-auth", "admin-password")}
    finally:
        mlflow.close()


def secret(cluster: Cluster, name: str, key: str) -> str:
    import base64

    return base64.b64decode(cluster.json("get", "secret", name)["data"][key]).decode()


@pytest.fixture
def mlflow_env(installed, monkeypatch):
    """MLflow's client settings (admin) for this test's MlflowClient."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, installed[name])
    return installed


@pytest.fixture(scope="module")
def deployed(installed):
    """What `make deploy` and `trip-duration generate` left in the cluster's S3."""
    import boto3  # noqa: PLC0415

    s3 = boto3.client("s3", endpoint_url=installed["AWS_ENDPOINT_URL_S3"], region_name=installed["AWS_DEFAULT_REGION"],
                      aws_access_key_id=installed["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=installed["AWS_SECRET_ACCESS_KEY"])
    # one content-addressed archive, the exact key (and hash) every deployment's pull step names
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="code/trip-duration/")["Contents"]]
    assert len(keys) == 1 and re.fullmatch(r"code/trip-duration/[0-9a-f]{64}\.tar\.gz", keys[0]), keys
    sha256 = keys[0].rsplit("/", 1)[1].split(".")[0]
    for name in ("training/train", "inference/infer"):
        script = api(installed, "GET", f"/deployments/name/{name}")["pull_steps"][0][
            "prefect.deployments.steps.run_shell_script"]["script"]
        assert f"--key {keys[0]} --sha256 {sha256}" in script, script
    return s3


def _readme_run(readme: ReadmeRun, installed: dict, deployment: str) -> str:
    """The flow run the README's block created for ``deployment``."""
    ids = [i for i in readme.flow_run_ids()
           if api(installed, "GET", f"/deployments/{api(installed, 'GET', f'/flow_runs/{i}')['deployment_id']}")["name"]
           == deployment]
    assert len(ids) == 1, f"the README's block should create one {deployment} run: {readme.flow_run_ids()}"
    return ids[0]


@pytest.fixture(scope="module")
def trained(cluster, readme, installed, deployed):
    run_id = _readme_run(readme, installed, "train")
    run = wait_final(installed, run_id)
    logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={run_id}", "--tail=-1", check=False)
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{logs[-5000:]}"
    return run_id


@pytest.fixture(scope="module")
def fitted(cluster, installed, trained):
    """The one run of `fit` the README's training run started (README, "Only the fit on the GPU")."""
    (fit,) = fit_runs(installed, trained)
    assert fit["state"]["type"] == "COMPLETED", fit["state"]
    return fit["id"]


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


def _readme_commands(pattern: str) -> list[str]:
    """Commands quoted in the README's prose (`...`) that match ``pattern``."""
    found = [c for c in re.findall(r"`([^`\n]+)`", README.read_text()) if re.match(pattern, c)]
    assert found, f"the README quotes no command matching {pattern!r}"
    return found


def rendered_template(cluster: Cluster) -> dict:
    """The work pool's base job template as the chart renders it for the README's install."""
    import yaml

    from tests.k8s.render import render

    values = yaml.safe_load((ROOT / "tests" / "cluster" / "values-images.yaml").read_text())
    values["s3"] = {"bucket": BUCKET, "endpoint": "http://s3:9000", "existingSecret": "s3-credentials"}
    docs = render(values, name=RELEASE, namespace=cluster.ns)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{FULL}-work-pool")
    return json.loads(config["data"]["base-job-template.json"])


def test_install_brings_up_every_pod_and_the_work_pool(cluster, installed):
    pods = cluster.json("get", "pods")["items"]
    chart_pods = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/instance") == RELEASE
                  and p["metadata"]["labels"].get("app.kubernetes.io/component") != "flow-run"]  # runs' pods end
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in chart_pods} >= {
        "server", "postgresql", "mlflow", "worker-gpu", "worker-cpu", "metrics"}
    for pod in chart_pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready.get("Ready") == "True", pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "trip-duration-cpu" or cluster.kind != "ours"  # never on the GPU node
    status = json.loads(cluster.sh("helm", "status", RELEASE, "-n", cluster.ns, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    pool = api(installed, "GET", "/work_pools/trip-duration")
    assert pool["type"] == "kubernetes"
    assert pool["base_job_template"]["job_configuration"] == rendered_template(cluster)["job_configuration"]
    assert pool["base_job_template"]["variables"]["properties"]["image"]["default"] == IMAGE
    queues = {q["name"]: q for q in api(installed, "POST", "/work_pools/trip-duration/queues/filter", json={})}
    assert queues["gpu"]["concurrency_limit"] == 1 and queues["cpu"]["concurrency_limit"] == 10
    # the hook Job also installed the crash-detection automation (helm/trip-duration/files/automations.json)
    automations = {a["name"]: a for a in api(installed, "POST", "/automations/filter", json={})}
    crash = automations["trip-duration: crash unresponsive flow runs"]
    assert crash["enabled"] and crash["trigger"]["posture"] == "Proactive" and crash["trigger"]["within"] == 90
    assert crash["actions"] == [{**crash["actions"][0], "type": "change-flow-run-state", "state": "CRASHED"}]


@pytest.mark.parametrize(("flags", "secret_data", "message"), [
    (["--set", "server.auth.existingSecret=td-bad-auth"], None,
     'server.auth.existingSecret: Secret "td-bad-auth" does not exist in namespace {ns}; create it with keys auth-string'),
    (["--set", "server.auth.existingSecret=td-bad-auth"], {"auth-string": "no-colon-here"},
     'server.auth.existingSecret: key "auth-string" of Secret "td-bad-auth" must be user:password'),
    (["--set", "server.auth.existingSecret=td-bad-auth"], {"wrong-key": "admin:pw"},
     'server.auth.existingSecret: Secret "td-bad-auth" has no key "auth-string" (or it is empty); add it: '
     'kubectl -n {ns} create secret generic td-bad-auth --from-literal=auth-string=...'),
    (["--set", "mlflow.auth.existingSecret=td-bad-auth"],
     {"admin-password": "admin-password-1", "trainer-password": "t" * 24, "reader-password": "r" * 24},
     'mlflow.auth.existingSecret: Secret "td-bad-auth" has no key "flask-secret-key"'),
    (["--set", "mlflow.auth.existingSecret=td-bad-auth"],
     {"admin-password": "admin-password-1", "trainer-password": "t" * 24, "reader-password": "short-token",
      "flask-secret-key": "k"},
     'mlflow.auth.existingSecret: key "reader-password" of Secret "td-bad-auth" is shorter than 24 characters'),
], ids=["auth-missing", "auth-no-colon", "auth-wrong-key", "mlflow-missing-key", "mlflow-short-token"])
def test_a_missing_or_malformed_existing_secret_fails_helm_install_naming_the_key(cluster, installed, flags,
                                                                                  secret_data, message):
    """`helm install` against the real cluster (lookup answers): the render fails with the key to
    set, and nothing of the release is created."""
    cluster.kubectl("delete", "secret", "td-bad-auth", "--ignore-not-found")
    if secret_data is not None:
        cluster.kubectl("create", "secret", "generic", "td-bad-auth",
                        *[f"--from-literal={k}={v}" for k, v in secret_data.items()])
    try:
        done = subprocess.run(["helm", "install", "bad", str(ROOT / "helm" / "trip-duration"), "-n", cluster.ns,
                               "-f", str(ROOT / "tests" / "cluster" / "values-images.yaml"),
                               "--set", "s3.bucket=trip-duration", *flags],
                              capture_output=True, text=True, env=cluster.env, timeout=300)
    finally:
        cluster.kubectl("delete", "secret", "td-bad-auth", "--ignore-not-found")
    assert done.returncode != 0, done.stdout
    assert "values check failed" in done.stderr and message.format(ns=cluster.ns) in done.stderr, done.stderr
    assert not cluster.sh("helm", "list", "-n", cluster.ns, "-q", "--filter", "^bad$", "-a").strip()
    assert not cluster.json("get", "all,secret,configmap", "-l", "app.kubernetes.io/instance=bad")["items"]


def test_train_runs_on_the_cpu_node_its_fit_on_the_gpu_node_and_it_sets_the_champion(cluster, installed, trained,
                                                                                     fitted, mlflow_env):
    """README, "Only the fit on the GPU": train's Job asks for no GPU and runs on the cpu node; its one fit's Job
    asks for the GPU, with the README's fit_job_variables, and runs on the GPU node."""
    job = job_of(cluster, trained)
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {}) and not spec.get("tolerations")
    # the README's `-jv cpu_request=500m -jv memory_request=2Gi` reached the Job
    assert (container["resources"]["requests"]["cpu"], container["resources"]["requests"]["memory"]) == ("500m", "2Gi")
    assert job["status"].get("succeeded") == 1
    nodes = {}
    for name, run_id in (("train", trained), ("fit", fitted)):
        pod = pod_of(cluster, run_id)
        nodes[name] = json.loads(cluster.sh("kubectl", "get", "node", pod["spec"]["nodeName"], "-o", "json"))
    assert nodes["train"]["metadata"]["labels"].get("nvidia.com/gpu.present") != "true"
    assert nodes["fit"]["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"
    fit_job = job_of(cluster, fitted)
    fit_spec = fit_job["spec"]["template"]["spec"]
    fit_container = fit_spec["containers"][0]
    assert fit_job["metadata"]["labels"]["prefect.io/deployment-name"] == "fit"
    assert fit_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert fit_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in fit_spec["tolerations"]
    # the README's -p 'fit_job_variables={"cpu_request": "500m", "memory_request": "2Gi"}' reached the fit's Job
    assert (fit_container["resources"]["requests"]["cpu"], fit_container["resources"]["requests"]["memory"]) == (
        "500m", "2Gi")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(installed["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("trip-duration-yellow", "champion")
    assert champion.tags.get("trip_duration.registered_by") == "training-flow"  # what infer checks
    run = client.get_run(champion.run_id)
    assert run.data.tags.get("prefect_flow_run_id") == trained and run.data.tags["trip_duration.fit_run"] == fitted
    fit_logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={fitted}", "--tail=-1")
    # no GPU behind the node's nvidia.com/gpu: device=auto falls back to CPU and says so
    assert "training XGBoost on cpu (training.device=auto)" in fit_logs
    logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={trained}", "--tail=-1")
    assert "training XGBoost" not in logs and "Running node: evaluate" in logs
    # both pods' usage and cost (README: the install's example price table, 2.5 $/GPU-hour, 0.04 $/core-hour)
    metrics = run.data.metrics
    assert (metrics["requested_gpus"], metrics["requested_cpus_cpu_pod"], metrics["requested_memory_mib_cpu_pod"],
            metrics["requested_cpus_gpu_pod"], metrics["requested_memory_mib_gpu_pod"]) == (1, 0.5, 2048, 0.5, 2048)
    assert 0 < metrics["pod_seconds_cpu"] < 1800 and 0 < metrics["pod_seconds_gpu"] < 1800, metrics
    expected = (metrics["pod_seconds_cpu"] / 3600 * 0.5 * 0.04
                + metrics["pod_seconds_gpu"] / 3600 * (1 * 2.5 + 0.5 * 0.04))
    assert abs(metrics["cost_usd"] - expected) < 1e-4, (metrics, expected)
    assert "pod usage: cpu" in logs and "requested 0.5 CPU, 2048 MiB; cost $" in logs, logs[-3000:]
    fit_name = api(installed, "GET", f"/flow_runs/{fitted}")["name"]
    assert re.search(r"pod usage: gpu, [0-9.]+ s, requested 1 GPU, 0.5 CPU, 2048 MiB; cost \$[0-9.]+ "
                     rf"\(GPU fit run {fit_name} \({fitted}\)\)", logs), logs[-3000:]
    assert f"run cost: ${metrics['cost_usd']:.4f}" in logs


def test_the_readmes_promotion_queued_exactly_one_rescoring_run_that_completes(cluster, installed, trained):
    """README, "Event-driven runs", on the cluster: the README's train made the first champion (v1); prefect.yaml's
    trigger, made by its `make deploy`, queued one backfill run for that event, which ran as a Job and completed."""
    from flows.events import PROMOTED, decision_event_id

    event_id = str(decision_event_id(PROMOTED, "trip-duration-yellow", 1))
    deadline = time.monotonic() + 120
    while not (runs := api(installed, "POST", "/flow_runs/filter",
                           json={"deployments": {"name": {"any_": ["backfill"]}}})) and time.monotonic() < deadline:
        time.sleep(3)
    assert [r["parameters"] for r in runs] == [{"reingest": False, "taxi": "yellow", "batch_month": "2023-02",
                                                 "event_id": event_id}]
    run = wait_final(installed, runs[0]["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert job_of(cluster, run["id"])["metadata"]["labels"]["prefect.io/deployment-name"] == "backfill"


def test_infer_runs_on_the_cpu_node_without_a_gpu_and_writes_every_row(cluster, readme, installed, deployed, trained):
    run_id = _readme_run(readme, installed, "infer")
    run = wait_final(installed, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    job = job_of(cluster, run_id)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container.get("resources", {}).get("limits", {})
    assert not job["spec"]["template"]["spec"].get("tolerations")
    pod = pod_of(cluster, run_id)
    if cluster.kind == "ours":
        assert pod["spec"]["nodeName"] == "trip-duration-cpu"
    import pyarrow.parquet as pq

    def rows(prefix: str) -> int:
        listed = [o["Key"] for o in deployed.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
                  if o["Key"].endswith(".parquet") and "month=02" in o["Key"]]
        assert len(listed) == 1, f"expected one month=02 parquet under {prefix}: {listed}"
        return pq.read_table(io.BytesIO(deployed.get_object(Bucket=BUCKET, Key=listed[0])["Body"].read())).num_rows

    validated = rows("validated/")
    assert validated > 90_000  # the README's `trip-duration generate` writes 100 000 trips a month
    assert rows("predictions/") == validated
    logs = cluster.kubectl("logs", "-l", f"prefect.io/flow-run-id={run_id}", "--tail=-1")
    assert "pod usage: cpu" in logs and "requested 1 CPU, 4096 MiB; cost $" in logs, logs[-3000:]
    # the drift check ran (as the reader identity, which must read the champion's MLflow run): the next
    # synthetic month is no drift, and the line is in the pod's log
    keys = [o["Key"] for o in deployed.list_objects_v2(Bucket=BUCKET, Prefix="reports/inference/").get("Contents", [])
            if o["Key"].endswith("/drift.json") and "month=02" in o["Key"]]
    assert keys, "no drift.json of month=02 under reports/inference/"
    for key in keys:
        report = json.loads(deployed.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert report["line"].startswith("no drift: max PSI") and report["train_month"] == "2023-01", report
    assert "drift of yellow year=2023/month=02 against the champion's training month: no drift" in logs


def test_the_api_refuses_anonymous_calls_and_takes_the_generated_credentials(cluster, installed):
    import httpx

    url = installed["PREFECT_API_URL"]
    anonymous = httpx.post(f"{url}/flows/filter", json={}, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.post(f"{url}/flows/filter", json={}, timeout=30, auth=("admin", "not-the-password"))
    assert wrong.status_code == 401
    user, password = installed["PREFECT_API_AUTH_STRING"].split(":", 1)
    assert user == "admin" and len(password) >= 32
    assert httpx.post(f"{url}/flows/filter", json={}, timeout=30, auth=(user, password)).status_code == 200
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200  # the kubelet's probes need no credentials


def test_no_secret_value_in_any_job_the_workers_created(cluster, readme, installed, trained, fitted):
    infer = _readme_run(readme, installed, "infer")
    assert wait_final(installed, infer)["state"]["type"] == "COMPLETED"
    values = [installed["PREFECT_API_AUTH_STRING"].split(":", 1)[1], installed["AWS_SECRET_ACCESS_KEY"],
              *(secret(cluster, f"{FULL}-mlflow-auth", k) for k in ("admin-password", "trainer-password",
                                                                   "reader-password", "flask-secret-key"))]
    for run_id, identity in ((trained, "trainer"), (fitted, "reader"), (infer, "reader")):
        name = job_of(cluster, run_id)["metadata"]["name"]
        manifest = cluster.kubectl("get", "job", name, "-o", "yaml")
        leaked = [v[:4] + "..." for v in values if v in manifest]
        assert not leaked, f"Job {name} carries secret values: {leaked}"
        env = {e["name"]: e for e in job_of(cluster, run_id)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULL}-api-auth", "key": "auth-string"}
        assert env["MLFLOW_TRACKING_USERNAME"]["value"] == identity
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULL}-mlflow-auth", "key": f"{identity}-password"}


def test_mlflow_refuses_anonymous_calls_and_only_the_trainer_moves_the_champion(cluster, installed, trained):
    import httpx

    url = installed["MLFLOW_TRACKING_URI"]
    get = f"{url}/api/2.0/mlflow/registered-models/get"
    assert httpx.get(get, params={"name": "trip-duration-yellow"}, timeout=30).status_code == 401
    alias = f"{url}/api/2.0/mlflow/registered-models/alias"
    body = {"name": "trip-duration-yellow", "alias": "champion", "version": "1"}
    reader = ("reader", secret(cluster, f"{FULL}-mlflow-auth", "reader-password"))
    assert httpx.get(get, params={"name": "trip-duration-yellow"}, timeout=30, auth=reader).status_code == 200
    assert httpx.post(alias, json=body, timeout=30, auth=reader).status_code == 403
    assert httpx.post(f"{url}/api/2.0/mlflow/model-versions/set-tag", timeout=30, auth=reader, json={
        "name": "trip-duration-yellow", "version": "1", "key": "trip_duration.registered_by", "value": "training-flow"},
    ).status_code == 403
    trainer = ("trainer", secret(cluster, f"{FULL}-mlflow-auth", "trainer-password"))
    current = httpx.get(f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": "trip-duration-yellow", "alias": "champion"},
                        timeout=30, auth=trainer).json()["model_version"]["version"]
    assert httpx.post(alias, json={**body, "version": current}, timeout=30, auth=trainer).status_code == 200
    # the database password never in a process's argv (ps shows every process of the MLflow pod)
    pod = cluster.json("get", "pods", "-l", "app.kubernetes.io/component=mlflow")["items"][0]["metadata"]["name"]
    argv = cluster.kubectl("exec", pod, "--", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "mlflow server" in argv or "mlflow.server" in argv, argv[:2000]
    db_password = secret(cluster, f"{FULL}-postgresql", "password")
    assert db_password not in argv and "postgresql://" not in argv


def test_the_readmes_kubectl_logs_recipes_show_the_kedro_nodes(cluster, readme, installed, trained, fitted):
    # the block's last commands: logs by deployment, train's then its fits'
    tail = readme.output.rsplit("UUID:", 1)[1]
    assert "Running node: evaluate" in tail and "Running node: train_model" in tail, tail[-3000:]
    # "Logs with kubectl": each recipe as written, for this namespace and this run
    recipes = localise(readme_block("Logs with `kubectl`"), cluster.ns).replace("<flow-run-id>", trained)
    outputs = {}
    for line in recipes.splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            outputs[line.split("#", 1)[1].strip()] = cluster.sh("bash", "-c", command)
    assert set(outputs) == {"by deployment", "by flow run", "the GPU fits", "the gpu worker"}, outputs.keys()
    for name in ("by deployment", "by flow run"):
        assert "Running node: evaluate" in outputs[name] and "Completed" in outputs[name], outputs[name][-3000:]
    assert "Running node: train_model" in outputs["the GPU fits"], outputs["the GPU fits"][-3000:]
    assert fitted in outputs["the gpu worker"]


def test_upgrade_updates_the_pool_template_keeps_the_data_and_runs_still_complete(cluster, installed, trained):
    before = api(installed, "GET", f"/flow_runs/{trained}")
    (upgrade,) = _readme_commands(r"helm upgrade ")  # `helm upgrade td helm/trip-duration -n ml --reuse-values ...`
    cluster.sh("bash", "-c", localise(upgrade.replace(" ...", ""), cluster.ns)
               + " --set workPool.jobDefaults.finishedJobTtl=1800 --wait --timeout 10m")
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
    run_id = run_deployment(installed, "training/train", {"train_month": "2023-01", "fit_job_variables": SMALL}, SMALL)
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
    # the rescheduled run found the fit its first pod had started (its idempotency key), if it had started one
    fits = fit_runs(installed, run_id)
    assert len(fits) <= 1 and all(f["state"]["type"] == "COMPLETED" for f in fits), fits


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
    # README, "Logs that outlive pods": the pod-log sidecar, in its own cgroup, shipped what there was
    log = _s3_log(installed, run_id)
    assert log.startswith("===== pod "), log[:2000]
    rerun = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"})
    assert wait_final(installed, rerun)["state"]["type"] == "COMPLETED"


def _trip_duration(installed: dict, *args: str) -> subprocess.CompletedProcess:
    trip_duration = os.path.join(os.path.dirname(sys.executable), "trip-duration")
    return subprocess.run([trip_duration, *args], env={**os.environ, **installed}, capture_output=True, text=True,
                          timeout=120)


def _s3_log(installed: dict, run_id: str, expect: str = "", timeout: float = 120) -> str:
    """The run's log in S3 (README: `trip-duration logs <flow-run-id>`), once it holds ``expect``: the sidecar's
    last upload lands as the pod ends, a moment after the worker has reported the run's final state."""
    deadline = time.monotonic() + timeout
    while True:
        done = _trip_duration(installed, "logs", run_id)
        if done.returncode == 0 and expect in done.stdout:
            return done.stdout
        assert time.monotonic() < deadline, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
        time.sleep(3)


def test_a_runs_log_outlives_its_job_and_a_crash_before_prefect_started_is_kept(cluster, installed, trained):
    """README, "Logs that outlive pods": the README's training Job is deleted, and its pods with it; the section's
    three commands, as written, print its Kedro nodes from S3. A run whose command cannot start (nothing reaches
    Prefect's API: the worker marks it Crashed) has its log, with the reason."""
    cluster.kubectl("delete", "job", "-l", f"prefect.io/flow-run-id={trained}", "--wait=true")
    cluster.kubectl("wait", "--for=delete", "pod", "-l", f"prefect.io/flow-run-id={trained}", "--timeout=180s")
    assert not cluster.kubectl("get", "pods", "-l", f"prefect.io/flow-run-id={trained}", "-o", "name").strip()
    recipes = readme_block("### Logs that outlive pods").replace("<flow-run-id>", trained)
    outputs = {}
    for line in recipes.splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            done = subprocess.run(["bash", "-c", command], env={**os.environ, **installed}, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, (command, done.stderr[-2000:])
            outputs[line.split("#", 1)[1].strip()] = done.stdout
    assert set(outputs) == {"any run, by its id", "straight to its key", "the same object"}, outputs.keys()
    assert len(set(outputs.values())) == 1, "the three commands print different things"
    log = outputs["any run, by its id"]
    assert log.startswith("===== pod ") and "Running node: evaluate" in log and "Completed" in log, (
        log[-3000:])
    assert log.rstrip().endswith("exited with code 0"), log[-2000:]

    run_id = run_deployment(installed, "inference/infer", {"batch_month": "2023-02"},
                            {"command": "prefect-no-such-command flow-run execute"})
    final = wait_final(installed, run_id, timeout=600)
    assert final["state"]["type"] == "CRASHED", _history(installed, run_id)
    log = _s3_log(installed, run_id, expect="cannot start")
    assert "cannot start ['prefect-no-such-command', 'flow-run', 'execute']: No such file or directory (exit 127)" in log


def test_the_metrics_exporter_serves_the_pools_series_with_sane_values(cluster, installed, trained, fitted):
    """README, "Metrics", on the cluster: the chart's exporter, scraped through its Service, answers with every
    series: the README's train Completed, its fit one run of the gpu queue with its GPU-seconds, each queue's
    depth and waits (no run left waiting once the runs above ended)."""
    from prometheus_client.parser import text_string_to_metric_families

    forward = Forward(cluster, f"{FULL}-metrics", 9464)
    try:
        text = httpx.get(f"http://127.0.0.1:{forward.port}/metrics", timeout=60).text
    finally:
        forward.close()
    series = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
              for s in family.samples if s.name.startswith("trip_duration_")}
    assert series[("trip_duration_prefect_api_up", ())] == 1, text[-3000:]
    assert series[("trip_duration_flow_runs", (("deployment", "training/train"), ("state", "Completed")))] >= 1
    fit = next(dict(labels)["deployment"] for name, labels in series if name == "trip_duration_gpu_queue_runs")
    assert fit.endswith("/fit") and series[("trip_duration_gpu_queue_runs", (("deployment", fit),))] >= 1
    assert 0 < series[("trip_duration_gpu_queue_run_seconds", (("deployment", fit),))] < 3600
    for queue in ("cpu", "gpu"):
        assert series[("trip_duration_work_queue_waiting_runs", (("queue", queue),))] >= 0
        assert series[("trip_duration_work_queue_oldest_wait_seconds", (("queue", queue),))] >= 0
        waits = [series[("trip_duration_work_queue_wait_to_start_seconds", (("queue", queue), ("stat", s)))]
                 for s in ("mean", "max")]
        assert 0 <= waits[0] <= waits[1] < 3600, (queue, waits)


def test_uninstall_leaves_only_the_documented_leftovers(cluster, installed, trained):
    (uninstall,) = _readme_commands(r"helm uninstall ")  # README, Deploy to Kubernetes > Uninstall
    cluster.sh("bash", "-c", localise(uninstall, cluster.ns))
    # the controllers' pods go after their owners (garbage collection, then the grace period)
    # (flow-run pods carry the release's labels too, for the NetworkPolicies; they go with their Jobs, below)
    cluster.kubectl("wait", "--for=delete", "pod", "-l",
                    f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component!=flow-run", "--timeout=180s")

    def ours() -> set[tuple[str, str]]:
        left = cluster.json("get", "all,secret,configmap,pvc,sa,role,rolebinding")["items"]
        return {(o["kind"], o["metadata"]["name"]) for o in left
                if FULL in o["metadata"]["name"] or o["metadata"]["name"].startswith(RELEASE + "-")
                or o["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "prefect"}

    # the database's volume and its password are kept on purpose; flow-run Jobs (created by the
    # workers, not by Helm, with their pods) go when finishedJobTtl expires
    left = ours()
    assert {(k, n) for k, n in left if k not in ("Job", "Pod")} == {
        ("PersistentVolumeClaim", f"data-{FULL}-postgresql-0"), ("Secret", f"{FULL}-postgresql")}, left
    assert any(k == "Job" for k, _ in left)
    # the README's commands to drop everything
    for command in _readme_commands(r"kubectl -n ml delete "):
        cluster.sh("bash", "-c", localise(command, cluster.ns))
    deadline = time.monotonic() + 120
    while ours() and time.monotonic() < deadline:  # the Jobs' pods go after them
        time.sleep(2)
    assert not ours(), ours()
