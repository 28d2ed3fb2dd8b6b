"""`make jobs`: the exact Job the Kubernetes worker submits for each deployment, built with
prefect-kubernetes' own job configuration code from the chart's rendered work-pool template."""

from __future__ import annotations

import json

import pytest
import yaml

from infra.deployments import DeployCheckError, build_job, load_deployments, write_jobs
from tests.k8s.render import ROOT, ci_values, render, validate

OUT = ROOT / "build" / "k8s" / "jobs"


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict]:
    docs = render(ci_values()["default"])
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-work-pool"))
    template = json.loads(config["data"]["base-job-template.json"])
    paths = write_jobs(OUT, template)
    return {p.stem: yaml.safe_load(p.read_text()) for p in paths}


def _pod(job):
    return job["spec"]["template"]["spec"]


def test_a_job_per_deployment_and_each_is_valid_kubernetes(jobs):
    assert set(jobs) == {d["name"] for d in load_deployments()} == {"train", "train-green", "fit", "infer", "infer-green",
                                                                   "backfill", "watch-raw", "ingest"}
    for job in jobs.values():
        validate(job)
        assert job["spec"]["completions"] == 1 and "completions" not in _pod(job)
        assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_only_the_fit_asks_for_a_gpu_node(jobs):
    """README, "Only the fit on the GPU": of every deployment's Job, fit's alone asks for a GPU."""
    pod = _pod(jobs["fit"])
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert [n for n, job in jobs.items() if "nvidia.com/gpu" in _pod(job)["containers"][0]["resources"].get(
        "limits", {})] == ["fit"]


@pytest.mark.parametrize("name", ["train", "train-green"])
def test_train_runs_on_cpu_nodes_with_room_for_both_months(jobs, name):
    pod = _pod(jobs[name])
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "12Gi"}


def test_watch_raw_is_a_small_pod_and_ingest_an_infer_sized_one(jobs):
    """README, "New months train themselves": the hourly poll reads no data."""
    for name, requests, limits in (("watch-raw", {"cpu": "250m", "memory": "512Mi"}, {"memory": "1Gi"}),
                                   ("ingest", {"cpu": "1", "memory": "4Gi"}, {"memory": "8Gi"})):
        pod = _pod(jobs[name])
        assert "nodeSelector" not in pod and "tolerations" not in pod
        assert pod["containers"][0]["resources"]["requests"] == requests
        assert pod["containers"][0]["resources"]["limits"] == limits


@pytest.mark.parametrize("name", ["infer", "infer-green", "backfill"])
def test_infer_stays_on_cpu_nodes(jobs, name):
    pod = _pod(jobs[name])
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}


def test_labels_for_kubectl_logs_and_chart_wiring(jobs):
    for name, job in jobs.items():
        labels = job["metadata"]["labels"]
        assert labels["prefect.io/deployment-name"] == name
        assert {"prefect.io/flow-run-id", "prefect.io/flow-name", "prefect.io/flow-run-name"} <= set(labels)
        pod = _pod(job)
        assert pod["serviceAccountName"] == "td-trip-duration-flow-run"
        assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": "td-trip-duration-runtime"}}]
        assert pod["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        for var, entry in env.items():  # a secret reaches the pod by reference only
            if "SECRET" in var or "PASSWORD" in var or "AUTH_STRING" in var or "API_KEY" in var:
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry
        identity = {"train": "trainer", "train-green": "trainer", "fit": "reader", "infer": "reader",
                    "infer-green": "reader", "backfill": "reader", "watch-raw": "reader", "ingest": "reader"}[name]  # only train moves the champion
        assert env["MLFLOW_TRACKING_USERNAME"]["value"] == identity
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == f"{identity}-password"
        assert {v["name"]: v["emptyDir"].get("sizeLimit") for v in pod["volumes"]} == {
            "work": "1Gi", "tmp": "8Gi", "cache": "2Gi", "pod-log": "216Mi"}
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "flow-run"


def test_unknown_job_variable_fails_the_build():
    deployment = load_deployments()[0]
    deployment["work_pool"]["job_variables"]["node_selecter"] = {"a": "b"}
    with pytest.raises(DeployCheckError, match="'node_selecter'.*did you mean 'node_selector'"):
        build_job(deployment, json.loads((ROOT / "helm/trip-duration/files/base-job-template.json").read_text()))


@pytest.mark.parametrize(("name", "gpus"), [("train", None), ("train-green", None), ("fit", "1"), ("infer", None),
                                             ("backfill", None)])
def test_every_pod_says_what_it_requested_for_its_cost_record(jobs, name, gpus):
    """trip_duration/cost.py reads these: CPU and memory from the downward API, GPUs from gpu_limit."""
    env = {e["name"]: e for e in _pod(jobs[name])["containers"][0]["env"]}
    assert env["TRIP_DURATION_POD_CPU_MILLICORES"]["valueFrom"] == {
        "resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}
    assert env["TRIP_DURATION_POD_MEMORY_MIB"]["valueFrom"] == {
        "resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}
    assert env["TRIP_DURATION_POD_GPUS"].get("value") == gpus  # unset on CPU pods: no GPU
    assert "PREFECT__FLOW_RUN_ID" in env  # the worker's own entries are still merged in


POD_LOG = ["python", "-I", "/opt/trip-duration/pod_log.py"]


def test_every_pods_output_is_teed_and_shipped_by_a_sidecar_to_its_s3_key(jobs):
    """README, "Logs that outlive pods": the command runs through pod_log.py tee, and a native sidecar
    (restartPolicy Always) with the S3 settings and the pod's Prefect labels ships the copy."""
    for name, job in jobs.items():
        pod = _pod(job)
        container = pod["containers"][0]
        assert container["command"] == [*POD_LOG, "tee", "--file", "/var/log/trip-duration/pod.log",
                                        "--max-bytes", str(200 * 1024 * 1024), "--await-shipper", "10", "--"]
        assert container["args"] == ["prefect", "flow-run", "execute"]
        (sidecar,) = pod["initContainers"]
        assert sidecar["name"] == "pod-log" and sidecar["restartPolicy"] == "Always"
        assert sidecar["command"] == [*POD_LOG, "ship", "--file", "/var/log/trip-duration/pod.log", "--every", "30"]
        assert sidecar["image"] == container["image"] and sidecar["envFrom"] == container["envFrom"]
        assert {"name": "pod-log", "mountPath": "/var/log/trip-duration"} in container["volumeMounts"]
        assert sidecar["volumeMounts"] == [{"name": "pod-log", "mountPath": "/var/log/trip-duration"}]
        assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
        assert sidecar["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "160Mi"}}
        assert "nvidia.com/gpu" not in str(sidecar)  # the fit's GPU stays the flow run's
        # the key's parts: labels the worker put on the pod (downward API)
        labels = job["spec"]["template"]["metadata"]["labels"]
        refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in sidecar["env"]}
        assert refs == {"TRIP_DURATION_LOG_FLOW": "metadata.labels['prefect.io/flow-name']",
                        "TRIP_DURATION_LOG_DEPLOYMENT": "metadata.labels['prefect.io/deployment-name']",
                        "TRIP_DURATION_LOG_FLOW_RUN_ID": "metadata.labels['prefect.io/flow-run-id']"}
        assert {"prefect.io/flow-name", "prefect.io/deployment-name", "prefect.io/flow-run-id"} <= set(labels)
        assert labels["prefect.io/deployment-name"] == name
        # kubectl logs <pod> shows the flow run, not the sidecar
        assert job["spec"]["template"]["metadata"]["annotations"] == {
            "kubectl.kubernetes.io/default-container": "prefect-job"}


def test_pod_logs_off_leaves_the_pod_as_prefect_kubernetes_builds_it():
    values = {**ci_values()["default"], "flowRun": {"podLogs": {"enabled": False, "uploadEverySeconds": 30,
                                                                "maxMiB": 200, "resources": {}}}}
    docs = render(values)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-work-pool"))
    pod = json.loads(config["data"]["base-job-template.json"])["job_configuration"]["job_manifest"]["spec"]["template"]
    assert "initContainers" not in pod["spec"] and "command" not in pod["spec"]["containers"][0]
    assert "pod-log" not in {v["name"] for v in pod["spec"]["volumes"]}
