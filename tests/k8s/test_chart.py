"""`make chart`: every ci/*-values.yaml renders, lints strictly and validates against Kubernetes 1.30."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

from tests.k8s.render import CHART, ci_values, pod_specs, render, validate

CASES = ci_values()


def test_the_required_ci_cases_exist():
    assert {"default", "external-db", "cloud", "no-mlflow", "custom-gpu"} <= set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_is_clean_in_strict_mode(case):
    report = helm.lint(str(CHART), CASES[case], strict=True, kube_version="v1.30.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_is_valid_kubernetes(case):
    docs = render(CASES[case])
    assert docs
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":  # a CRD's object: checked below, by its own rules
            continue
        validate(doc)


def test_metrics_exporter_service_monitor_and_dashboard():
    """README, "Metrics": the exporter's Service, the ServiceMonitor that selects it by its port name, and a
    dashboard whose every query names a series the exporter emits."""
    import re

    docs = render(CASES["custom-gpu"])
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "td-trip-duration-metrics")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "td-trip-duration-metrics")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRIP_DURATION_WORK_POOL"]["value"] == "trip-duration" and "secretKeyRef" in env[
        "PREFECT_API_AUTH_STRING"]["valueFrom"]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "td-trip-duration-metrics")
    exporter = (CHART / "files" / "exporter.py").read_text()
    assert config["data"]["exporter.py"] == exporter
    emitted = set(re.findall(r'GaugeMetricFamily\(\s*"(trip_duration_[a-z_]+)"', exporter))
    assert len(emitted) == 7, emitted
    (board,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "td-trip-duration-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(board["data"]["trip-duration.json"])
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"trip_duration_[a-z_]+", target["expr"])}
    assert queried == emitted, (queried ^ emitted)
    assert not [d for d in render(CASES["default"]) if d["kind"] == "ServiceMonitor"
                or d["metadata"]["name"].endswith("-dashboard")]  # both off by default; the exporter on


@pytest.mark.parametrize("case", sorted(CASES))
def test_hardened_pods_with_resources_and_no_inline_secrets(case):
    docs = render(CASES[case])
    for where, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where
            for env in container.get("env", []):
                if env["name"].endswith(("_SECRET_NAME", "_SECRET_KEY")):  # which Secret to reference, not a value
                    continue
                if any(word in env["name"] for word in ("PASSWORD", "SECRET", "API_KEY", "AUTH_STRING")):
                    assert "valueFrom" in env and "value" not in env, f"{where}: {env['name']} inline"
    values = CASES[case]
    for doc in docs:
        if doc["kind"] == "Secret":  # only generated credentials (kept by lookup), never a default, never one given
            name = doc["metadata"]["name"]
            assert name in {"td-trip-duration-postgresql", "td-trip-duration-api-auth", "td-trip-duration-mlflow-auth"}, name
            given = {"td-trip-duration-postgresql": values.get("postgresql", {}).get("auth", {}).get("existingSecret"),
                     "td-trip-duration-api-auth": values.get("server", {}).get("auth", {}).get("existingSecret"),
                     "td-trip-duration-mlflow-auth": values.get("mlflow", {}).get("auth", {}).get("existingSecret")}
            assert not given[name], f"{name} generated although an existing Secret was given"
    labels = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
              "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "helm.sh/chart"}
    for doc in docs:
        assert labels <= set(doc["metadata"]["labels"]), f"{doc['kind']}/{doc['metadata']['name']}"


def _workers(docs):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment" and "-worker-" in d["metadata"]["name"]}


def test_gpu_worker_serves_only_the_gpu_queue():
    workers = _workers(render(CASES["default"]))
    gpu = workers["td-trip-duration-worker-gpu"]["spec"]["template"]["spec"]["containers"][0]["command"]
    cpu = workers["td-trip-duration-worker-cpu"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert [a for a in gpu if a.startswith("--work-queue")] == ["--work-queue=gpu"]
    assert [a for a in cpu if a.startswith("--work-queue")] == ["--work-queue=cpu"]
    assert "--with-healthcheck" in gpu


def test_cloud_mode_renders_no_server_objects_and_takes_the_key_from_a_secret():
    docs = render(CASES["cloud"])
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not any(n.endswith(("-server", "-migrations", "-postgresql")) for _, n in kinds)
    for worker in _workers(docs).values():
        env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PREFECT_API_URL"]["value"].startswith("https://api.prefect.cloud/api/accounts/0ff44498")
        assert env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-cloud", "key": "api-key"}


def test_server_mode_has_probes_auth_and_migrations():
    docs = render(CASES["external-db"])
    server = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-server"))
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    env = {e["name"]: e for e in container["env"]}
    assert env["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["name"] == "prefect-auth"
    assert env["PREFECT_SERVER_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "prefect-db"
    assert env["PREFECT_UI_API_URL"]["value"] == "https://prefect.internal.example.com/api"
    # migrations run in an init container, after the database answers: a pre-install hook Job would
    # wait for a database Helm creates only after its pre-install hooks (a real install deadlocked)
    init = server["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["migrate"] and "prefect server database upgrade --yes" in init[0]["command"][2]
    assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"]["value"] == "false"
    hooks = {d["metadata"]["name"]: d["metadata"]["annotations"]["helm.sh/hook"] for d in docs if d["kind"] == "Job"}
    assert hooks == {"td-trip-duration-work-pool": "post-install,post-upgrade"}


def test_work_pool_template_comes_from_the_shared_file_with_chart_defaults():
    docs = render(CASES["custom-gpu"])
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-work-pool"))
    template = json.loads(config["data"]["base-job-template.json"])
    shared = json.loads((CHART / "files" / "base-job-template.json").read_text())
    # the shared file, except the pod's parts that come from values (tested below)
    pod, shared_pod = (t["job_configuration"]["job_manifest"]["spec"]["template"] for t in (template, shared))
    pod.pop("metadata")
    for key in ("securityContext", "volumes", "imagePullSecrets"):
        pod["spec"].pop(key, None), shared_pod["spec"].pop(key, None)
    for c in (pod["spec"]["containers"][0], shared_pod["spec"]["containers"][0]):
        c.pop("securityContext")
    # flowRun.podLogs (tests/k8s/test_jobs.py, on the Jobs the worker builds): a sidecar, a command, a mount
    pod["spec"].pop("initContainers")
    container = pod["spec"]["containers"][0]
    container.pop("command")
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "pod-log"]
    pod["spec"]["containers"][0]["env"] = "{{ env }}"  # the MLflow credentials entries: tested below
    assert template["job_configuration"] == shared["job_configuration"]
    props = template["variables"]["properties"]
    assert props["service_account_name"]["default"] == "td-trip-duration-flow-run"
    assert props["env_from"]["default"] == [{"configMapRef": {"name": "td-trip-duration-runtime"}}]
    assert props["finished_job_ttl"]["default"] == 3600
    setup = config["data"]["setup.sh"]
    assert "--overwrite" in setup and "set-concurrency-limit gpu 4" in setup and "--limit 4" in setup
    # the crash-detection automation (the same files the local stack uses), upserted by the same hook Job
    assert json.loads(config["data"]["automations.json"]) == json.loads((CHART / "files" / "automations.json").read_text())
    assert config["data"]["automations.py"] == (CHART / "files" / "automations.py").read_text()
    assert setup.rstrip().endswith("python /config/automations.py /config/automations.json /config/notifications.json")
    assert json.loads(config["data"]["notifications.json"]) == json.loads(
        (CHART / "files" / "notifications.json").read_text())
    gpu_vars = next(d for d in docs if d["metadata"]["name"].endswith("-gpu-job-variables"))
    assert "cloud.google.com/gke-accelerator: nvidia-l4" in gpu_vars["data"]["job-variables.yaml"]
    role = next(d for d in docs if d["kind"] == "Role")
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"jobs", "pods", "pods/log", "events"}


def _setup_env(values) -> dict:
    job = next(d for d in render(values) if d["kind"] == "Job" and d["metadata"]["name"].endswith("-work-pool"))
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_notifications_take_the_webhook_url_from_the_secret_only_when_enabled():
    """README, "Notifications": the hook Job gets the URL by reference (never a value of the chart) and the
    Pending bound; without notifications.enabled it gets neither, and automations.py deletes the automations."""
    env = _setup_env(CASES["custom-gpu"])
    assert env["TRIP_DURATION_NOTIFY_URL"] == {"name": "TRIP_DURATION_NOTIFY_URL", "valueFrom": {
        "secretKeyRef": {"name": "td-alerts", "key": "url"}}}
    assert env["TRIP_DURATION_PENDING_ALERT_S"]["value"] == "600"
    assert not {"TRIP_DURATION_NOTIFY_URL", "TRIP_DURATION_PENDING_ALERT_S"} & set(_setup_env(CASES["default"]))


def test_the_price_table_reaches_flow_run_pods_only_when_set():
    def runtime(values):
        docs = render(values)
        return next(d for d in docs if d["metadata"]["name"].endswith("-runtime"))["data"]

    priced = runtime({**CASES["default"], "cost": {"gpuHourUsd": 2.5, "cpuHourUsd": 0.04}})
    assert (priced["TRIP_DURATION_COST_GPU_HOUR_USD"], priced["TRIP_DURATION_COST_CPU_HOUR_USD"]) == ("2.5", "0.04")
    # `helm install --set cost.gpuHourUsd=2.5` passes the decimal as a string (Helm types only integers)
    typed = runtime({**CASES["default"], "cost": {"gpuHourUsd": "2.5", "cpuHourUsd": "0.04"}})
    assert (typed["TRIP_DURATION_COST_GPU_HOUR_USD"], typed["TRIP_DURATION_COST_CPU_HOUR_USD"]) == ("2.5", "0.04")
    free = runtime({**CASES["default"], "cost": {"gpuHourUsd": 0, "cpuHourUsd": None}})
    assert free["TRIP_DURATION_COST_GPU_HOUR_USD"] == "0" and "TRIP_DURATION_COST_CPU_HOUR_USD" not in free
    assert not {k for k in runtime(CASES["default"]) if k.startswith("TRIP_DURATION_COST_")}


def test_the_drift_values_reach_flow_run_pods_and_the_flow_reads_them():
    """README, "Drift retrains": the chart's drift.* become the runtime ConfigMap's TRIP_DURATION_DRIFT_*,
    which the inference flow parses (trip_duration.params.drift_params): defaults as the flow's own, and a
    `--set` string is read as the number it is."""
    from trip_duration.params import DriftParams, drift_params

    def runtime(values):
        return next(d for d in render(values) if d["metadata"]["name"].endswith("-runtime"))["data"]

    assert drift_params(runtime(CASES["default"])) == DriftParams()
    custom = runtime({**CASES["default"], "drift": {"enabled": False, "psiThreshold": "0.35", "rmseRatioThreshold": 1.5,
                                                     "minRows": 5000, "emitEvent": False}})
    assert drift_params(custom) == DriftParams(enabled=False, psi_threshold=0.35, rmse_ratio_threshold=1.5,
                                               min_rows=5000, emit_event=False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"s3": {"bucket": "trip-duration"}, "cost": {"gpuHourUsd": -1}}, "gpuHourUsd"),
        ({"s3": {"bucket": "trip-duration"}, "drift": {"rmseRatioThreshold": 0.9}}, "rmseRatioThreshold"),
        ({"s3": {"bucket": "trip-duration"}, "drift": {"psiThreshold": "high"}}, "psiThreshold"),
        ({"s3": {"bucket": "trip-duration"}, "cost": {"cpuHourUsd": "4 cents"}}, "cpuHourUsd"),
        ({"s3": {"bucket": "b1", "buckett": "x"}}, "buckett"),  # typo: strict schema
        ({"s3": {"bucket": "trip-duration"}, "apiMode": "clod"}, "apiMode"),
        ({}, "s3.bucket is required"),
        ({"s3": {"bucket": "trip-duration"}, "apiMode": "cloud"}, "worker.cloud.accountId is required when apiMode=cloud"),
        ({"s3": {"bucket": "trip-duration"}, "server": {"database": {"mode": "external"}}},
         "server.database.existingSecret is required"),
        ({"s3": {"bucket": "trip-duration"}, "notifications": {"enabled": True}},
         "notifications.existingSecret is required when notifications.enabled=true"),
        ({"s3": {"bucket": "trip-duration"}, "notifications": {"pendingAlertSeconds": 5}}, "pendingAlertSeconds"),
    ],
)
def test_bad_values_fail_the_render_naming_the_key(values, message):
    with pytest.raises(Exception, match=message.replace(".", r"\.")):
        render(values)


def _leaves(node, prefix=""):
    free = {"commonLabels", "annotations", "labels", "resources", "nodeSelector", "podSecurityContext", "containerSecurityContext"}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in free:
            yield from _leaves(value, path + ".")
        else:
            yield path


def test_every_value_is_documented_and_the_table_is_current():
    import yaml

    from infra import helm_docs

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = {key for key, _, _ in helm_docs.rows()}
    undocumented = [leaf for leaf in _leaves(values) if leaf not in documented]
    assert undocumented == [], f"values without a `# --` comment: {undocumented}"
    assert helm_docs.main(["--check"]) == 0, "run `make docs`"


def test_every_deployment_sends_heartbeats_often_enough_for_the_crash_automation():
    """A run is marked Crashed after `within` seconds without a heartbeat: the deployments must send one
    at least three times in that window, or healthy runs would be crashed."""
    import yaml

    spec = yaml.safe_load((CHART.parents[1] / "prefect.yaml").read_text())
    (crash,) = json.loads((CHART / "files" / "automations.json").read_text())
    assert crash["trigger"]["posture"] == "Proactive" and crash["actions"][0]["state"] == "CRASHED"
    for deployment in spec["deployments"]:
        frequency = int(deployment["work_pool"]["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
        assert 30 <= frequency and 3 * frequency <= crash["trigger"]["within"], deployment["name"]
