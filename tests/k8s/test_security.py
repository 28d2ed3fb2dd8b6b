"""What the chart renders for security (issue: nothing unauthenticated by default, no secret in a Job
manifest, NetworkPolicies). The cluster test (tests/cluster) proves the same on a running release."""

from __future__ import annotations

import json

import helm_python as helm
import pytest

from tests.k8s.render import CHART, render

BASE = {"s3": {"bucket": "trip-duration"}}


def _by(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _env(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def _template(docs) -> dict:
    return json.loads(_by(docs, "ConfigMap", "td-trip-duration-work-pool")["data"]["base-job-template.json"])


def test_api_auth_is_on_by_default_from_a_generated_secret():
    docs = render(BASE)
    secret = _by(docs, "Secret", "td-trip-duration-api-auth")
    assert set(secret["data"]) == {"auth-string"} and "stringData" not in secret
    ref = {"name": "td-trip-duration-api-auth", "key": "auth-string"}
    server = _by(docs, "Deployment", "td-trip-duration-server")["spec"]["template"]["spec"]["containers"][0]
    assert _env(server)["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == ref
    clients = [_by(docs, "Deployment", f"td-trip-duration-worker-{q}")["spec"]["template"]["spec"]["containers"][0]
               for q in ("gpu", "cpu")]
    clients.append(_by(docs, "Job", "td-trip-duration-work-pool")["spec"]["template"]["spec"]["containers"][0])
    for container in clients:
        assert _env(container)["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == ref
    for container in clients[:2]:  # the workers hand Jobs a reference, never the value
        env = _env(container)
        assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"]["value"] == ref["name"]
        assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"]["value"] == ref["key"]


def test_cloud_workers_hand_jobs_the_api_key_by_reference():
    docs = render({**BASE, "apiMode": "cloud", "worker": {"cloud": {
        "accountId": "a", "workspaceId": "w", "apiKeySecretName": "prefect-cloud"}}})
    env = _env(_by(docs, "Deployment", "td-trip-duration-worker-gpu")["spec"]["template"]["spec"]["containers"][0])
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME"]["value"] == "prefect-cloud"
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY"]["value"] == "api-key"
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-api-auth")]


def _notes(values: dict) -> str:
    chart = helm.Chart.load(str(CHART))
    values = {**values, "secrets": {"allowWithoutLookup": True}}
    out = chart.render(values, name="td", namespace="ml", is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def test_opting_out_is_explicit_and_warned():
    notes = _notes({**BASE, "server": {"auth": {"enabled": False}}, "mlflow": {"auth": {"enabled": False}},
                    "networkPolicy": {"enabled": False}})
    assert "WARNING: server.auth.enabled=false" in notes and "WARNING: mlflow.auth.enabled=false" in notes
    assert "WARNING: networkPolicy.enabled=false" in notes
    docs = render({**BASE, "server": {"auth": {"enabled": False}}, "mlflow": {"auth": {"enabled": False}}})
    assert not [d for d in docs if d["kind"] == "Secret" and "auth" in d["metadata"]["name"]]
    default_notes = _notes(BASE)
    assert "WARNING" not in default_notes and "PREFECT_API_AUTH_STRING" in default_notes


def test_flow_run_jobs_carry_mlflow_credentials_by_reference_per_identity():
    template = _template(render(BASE))
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "MLFLOW_TRACKING_USERNAME", "value": "{{ mlflow_identity }}"}
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "td-trip-duration-mlflow-auth", "key": "{{ mlflow_identity }}-password"}
    identity = template["variables"]["properties"]["mlflow_identity"]
    assert identity["enum"] == ["reader", "trainer"] and identity["default"] == "reader"  # never admin


def test_flow_run_pod_settings_come_from_values():
    values = {**BASE, "imagePullSecrets": [{"name": "regcred"}],
              "flowRun": {"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 4242, "seccompProfile": {"type": "RuntimeDefault"}},
                          "containerSecurityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                       "capabilities": {"drop": ["ALL"]}},
                          "sizeLimits": {"work": "300Mi", "tmp": "2Gi", "cache": "1Gi"}, "podLogs": {"maxMiB": 50}}}
    docs = render(values)
    pod = _template(docs)["job_configuration"]["job_manifest"]["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app.kubernetes.io/name": "trip-duration", "app.kubernetes.io/instance": "td",
                                         "app.kubernetes.io/component": "flow-run"}
    assert pod["spec"]["securityContext"]["runAsUser"] == 4242
    assert {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["spec"]["volumes"]} == {
        "work": "300Mi", "tmp": "2Gi", "cache": "1Gi", "pod-log": "66Mi"}
    # the log sidecar runs as hardened as the flow run, its copy bounded below its emptyDir
    (sidecar,) = pod["spec"]["initContainers"]
    assert sidecar["securityContext"] == pod["spec"]["containers"][0]["securityContext"]
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    tee = pod["spec"]["containers"][0]["command"]
    assert tee[tee.index("--max-bytes") + 1] == str(50 * 1024 * 1024)
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    for doc in docs:  # every pod of the chart too
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            assert doc["spec"]["template"]["spec"].get("imagePullSecrets") == [{"name": "regcred"}], doc["metadata"]["name"]


def test_mlflow_runs_behind_basic_auth_with_no_password_in_argv():
    docs = render(BASE)
    pod = _by(docs, "Deployment", "td-trip-duration-mlflow")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    argv = " ".join(container["command"])
    assert "--app-name=basic-auth" in argv and "mlflow-auth.py" in argv and argv.startswith("sh -c set -e")
    assert "backend-store-uri" not in argv and "$(" not in argv and "postgresql://" not in argv
    env = _env(container)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"  # no ~1.9 GB of idle job consumers
    assert env["TRIP_DURATION_AUTH_CACHE_TTL_SECONDS"]["value"] == "300"  # else ~0.14 s of scrypt per request
    cacheless = _by(render({**BASE, "mlflow": {"auth": {"cacheTtlSeconds": 0}}}), "Deployment", "td-trip-duration-mlflow")
    assert _env(cacheless["spec"]["template"]["spec"]["containers"][0])["TRIP_DURATION_AUTH_CACHE_TTL_SECONDS"]["value"] == "0"
    assert "valueFrom" in env["MLFLOW_AUTH_ADMIN_PASSWORD"] and "valueFrom" in env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert set(_by(docs, "Secret", "td-trip-duration-mlflow-auth")["data"]) == {
        "admin-password", "trainer-password", "reader-password", "flask-secret-key"}
    setup = _by(docs, "ConfigMap", "td-trip-duration-mlflow-auth")["data"]["mlflow-auth.py"]
    assert 'grant_user_permission("trainer", "registered_model"' in setup and '"default_permission": "READ"' in setup
    # its own identity: IRSA for flow runs does not leak to MLflow, and MLflow's is its own value
    sa = _by(render({**BASE, "flowRun": {"serviceAccount": {"annotations": {"role": "flow-runs"}}},
                     "mlflow": {"serviceAccount": {"annotations": {"role": "mlflow"}}}}), "ServiceAccount", "td-trip-duration-mlflow")
    assert sa["metadata"]["annotations"] == {"role": "mlflow"}


def test_generated_passwords_refuse_to_render_without_lookup_unless_existing_secrets_are_given():
    with pytest.raises(Exception, match="no cluster to look up the passwords generated before") as err:
        render(BASE, lookup_free=False)
    for key in ("postgresql.auth.existingSecret", "server.auth.existingSecret", "mlflow.auth.existingSecret",
                "secrets.allowWithoutLookup=true"):
        assert key in str(err.value)
    gitops = {**BASE, "postgresql": {"auth": {"existingSecret": "pg"}}, "server": {"auth": {"existingSecret": "api"}},
              "mlflow": {"auth": {"existingSecret": "mlf"}}}
    docs = render(gitops, lookup_free=False)  # the Argo CD / Flux way: renders, generates nothing
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = _env(_by(docs, "Deployment", "td-trip-duration-server")["spec"]["template"]["spec"]["containers"][0])
    assert env["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]["name"] == "api"


def test_network_policies_are_on_by_default_with_ingress_and_egress():
    docs = render(BASE)
    policies = {d["metadata"]["name"].removeprefix("td-trip-duration-"): d["spec"] for d in docs
                if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {"default-deny", "server", "postgresql", "mlflow", "workers", "flow-run", "metrics"}
    for name, spec in policies.items():
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
    # every pod of the release, flow-run pods included, falls under the default deny
    deny = policies["default-deny"]["podSelector"]["matchLabels"]
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in {"Deployment", "StatefulSet", "Job"}]
    pods.append(_template(docs)["job_configuration"]["job_manifest"]["spec"]["template"]["metadata"]["labels"])
    assert all(deny.items() <= labels.items() for labels in pods)
    assert "ingress" not in policies["default-deny"] and "egress" not in policies["default-deny"]

    def peers(rules):
        return [p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for r in rules for p in r.get("to", r.get("from", []))]

    # only the server and MLflow reach PostgreSQL; it reaches nothing
    assert peers(policies["postgresql"]["ingress"]) == ["server", "mlflow"] and policies["postgresql"]["egress"] == []
    # flow runs: the API, MLflow, DNS and the S3 allow-list (443 by default), nothing else; no ingress
    flow = policies["flow-run"]
    assert flow["ingress"] == []
    assert [p for p in peers(flow["egress"]) if p] == ["server", "mlflow"]
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in flow["egress"]
    assert "postgresql" not in json.dumps(flow)
    # the metrics exporter: scraped on its port, reaches the API (and DNS) only; the server lets it in
    metrics = policies["metrics"]
    assert metrics["ingress"] == [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 9464, "protocol": "TCP"}]}]
    assert [p for p in peers(metrics["egress"]) if p] == ["server"] and len(metrics["egress"]) == 2
    assert "metrics" in peers(policies["server"]["ingress"])
    # the Ingress controller's namespace is a value
    with_ingress = render({**BASE, "server": {"ingress": {"enabled": True}},
                           "networkPolicy": {"ingressNamespaceSelector": {"kubernetes.io/metadata.name": "ingress-nginx"}}})
    server = _by(with_ingress, "NetworkPolicy", "td-trip-duration-server")["spec"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in [
        p for r in server["ingress"] for p in r["from"]]
