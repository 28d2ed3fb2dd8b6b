"""The flow-run image, built by the Docker engine, runs a real flow run like a Kubernetes Job does.

No image can be pulled here, so the base is a Debian bookworm made with debootstrap and
`docker import` (the Dockerfile's default BASE_IMAGE, python:3.11-slim, stays the real one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import put_month

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "trip-duration-test-base:bookworm"
IMAGE_TAG = "trip-duration:test"
POOL = "container"

pytestmark = pytest.mark.container


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (start dockerd; .ci/run does)"
    if shutil.which("debootstrap") is None and subprocess.run(
        ["docker", "image", "inspect", BASE_TAG], capture_output=True).returncode != 0:
        return "debootstrap is not installed (apt-get install debootstrap) and no test base image exists"
    return None


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    reason = _docker_ready()
    if reason:
        pytest.skip(f"container test skipped: {reason}")
    if subprocess.run(["docker", "image", "inspect", BASE_TAG], capture_output=True).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        _run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
              "bookworm", str(rootfs), "http://deb.debian.org/debian"])
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.exists():  # the host's CA bundle, so HTTPS (PyPI) works from inside `docker build`
            shutil.copy(bundle, rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import",
              "--change", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
              "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
              "--change", "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
              "-", BASE_TAG], stdin=tar.stdout)
        tar.wait()
    _run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", IMAGE_TAG, "."],
         cwd=ROOT, timeout=1800)
    size = int(_run(["docker", "image", "inspect", IMAGE_TAG, "--format", "{{.Size}}"]).stdout.strip())
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "image-size.txt").write_text(f"{IMAGE_TAG} {size / 2**20:.0f} MiB (on the debootstrap base)\n")
    return IMAGE_TAG


def test_image_runs_as_non_root_without_the_code(image):
    out = _run(["docker", "run", "--rm", image, "sh", "-c", "id -u; ls /app | wc -l; python -c 'import xgboost, prefect_kubernetes, kedro, mlflow; print(xgboost.build_info()[\"USE_CUDA\"])'"]).stdout.split()
    assert out == ["10001", "0", "True"]  # non-root, no code baked in, CUDA-capable XGBoost


def test_a_flow_run_inside_the_container_pulls_code_trains_and_registers(image, flow_stack):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from infra.local.demo import deploy

    for month in ("2023-06", "2023-07"):
        put_month(flow_stack, month)
    flow_stack.create_pool(pool="container")  # no worker polls it: the container is the job
    deploy(flow_stack, pool=POOL)
    run = run_deployment("training/train", parameters={"train_month": "2023-06"}, timeout=0)
    env = {k: v for k, v in flow_stack.env().items() if k.startswith(("AWS_", "PREFECT_API", "MLFLOW_", "TRIP_DURATION_B"))}
    argv = ["docker", "run", "--rm", "--network", "host", "-e", f"PREFECT__FLOW_RUN_ID={run.id}"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    done = subprocess.run([*argv, image, "prefect", "flow-run", "execute"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.is_completed()
    runs = MlflowClient().search_runs(
        experiment_ids=[e.experiment_id for e in MlflowClient().search_experiments()],
        filter_string=f"tags.prefect_flow_run_id = '{run.id}'",
    )
    assert len(runs) == 1 and runs[0].data.metrics["model_rmse"] < runs[0].data.metrics["baseline_rmse"]
    assert MlflowClient().search_model_versions(f"run_id = '{runs[0].info.run_id}'")
