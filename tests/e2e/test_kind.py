"""End-to-end on a real cluster (kind): helm install, prefect deploy --all, train and infer,
logs with kubectl. For users' CI with Docker, kind, kubectl and helm (see
.github/workflows/e2e.yml). It skips where those are missing, and says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NS = "trip-duration-e2e"
pytestmark = pytest.mark.e2e


def _missing() -> list[str]:
    missing = [tool for tool in ("kind", "kubectl", "helm", "docker") if shutil.which(tool) is None]
    if not missing and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing.append("a running Docker engine")
    if os.environ.get("TRIP_DURATION_E2E") != "1":
        missing.append("TRIP_DURATION_E2E=1 (opt-in: it creates a kind cluster)")
    return missing


def sh(*argv, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def cluster():
    missing = _missing()
    if missing:
        pytest.skip("kind end-to-end test needs " + ", ".join(missing) + "; this machine has no cluster")
    sh("kind", "create", "cluster", "--config", str(ROOT / "infra/kind/cluster.yaml"), "--wait", "180s")
    try:
        sh("docker", "build", "-t", "trip-duration:e2e", ".", cwd=ROOT)
        sh("kind", "load", "docker-image", "trip-duration:e2e", "--name", "trip-duration")
        # MinIO stands in for S3 inside the cluster.
        sh("kubectl", "create", "namespace", NS)
        sh("kubectl", "-n", NS, "apply", "-f", str(ROOT / "infra/kind/minio.yaml"))
        sh("kubectl", "-n", NS, "rollout", "status", "deploy/minio", "--timeout=180s")
        sh("helm", "install", "td", str(ROOT / "helm/trip-duration"), "-n", NS, "--wait", "--timeout", "10m",
           "--set", "s3.bucket=trip-duration", "--set", "s3.endpoint=http://minio:9000",
           "--set", "s3.existingSecret=minio-credentials",
           "--set", "workPool.jobDefaults.image=trip-duration:e2e",
           "--set", "mlflow.image.repository=trip-duration", "--set", "mlflow.image.tag=e2e")
        yield
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", "trip-duration"], capture_output=True)


def test_train_and_infer_on_kind(cluster):
    forwards = [subprocess.Popen(["kubectl", "-n", NS, "port-forward", "svc/td-trip-duration-server", "4200"]),
                subprocess.Popen(["kubectl", "-n", NS, "port-forward", "svc/minio", "9000"])]
    try:
        time.sleep(5)
        env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:4200/api", "PREFECT_WORK_POOL": "trip-duration",
               "TRIP_DURATION_BUCKET": "trip-duration", "TRIP_DURATION_IMAGE": "trip-duration:e2e",
               "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "e2e-test-user",
               "AWS_SECRET_ACCESS_KEY": "e2e-test-password-not-a-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        sh("trip-duration", "generate", "--month", "2023-01", "--months", "2", cwd=ROOT, env=env)
        sh("python", "-m", "infra.deployments", "check", cwd=ROOT, env=env)
        sh("prefect", "--no-prompt", "deploy", "--all", cwd=ROOT, env=env)
        for deployment, params in (("training/train", ["-p", "train_month=2023-01", "-jv", "gpu_limit="]),
                                   ("inference/infer", ["-p", "batch_month=2023-02"])):
            out = sh("prefect", "deployment", "run", deployment, *params, "--watch", cwd=ROOT, env=env)
            assert "Completed" in out, out[-2000:]
        logs = sh("kubectl", "-n", NS, "logs", "-l", "prefect.io/deployment-name=infer", "--tail=-1")
        assert "scored" in logs
    finally:
        for forward in forwards:
            forward.terminate()
