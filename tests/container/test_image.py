"""The flow-run image, built by the Docker engine, runs a real flow run like a Kubernetes Job does.

No image can be pulled here, so the base is a Debian bookworm made with debootstrap and
`docker import` (the Dockerfile's default BASE_IMAGE, python:3.11-slim, stays the real one).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import fit_runs, put_month
from tests.container.images import debootstrap_image, docker_ready, run

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "trip-duration-test-base:bookworm"
IMAGE_TAG = "trip-duration:test"
POOL = "container"

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    reason = docker_ready(BASE_TAG)
    if reason:
        pytest.skip(f"container test skipped: {reason}")
    debootstrap_image(BASE_TAG, "python3,python3-venv,python3-pip,ca-certificates", tmp_path_factory.mktemp("rootfs"),
                      changes=("ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                               "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt", "ENV PIP_BREAK_SYSTEM_PACKAGES=1"))
    run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", IMAGE_TAG, "."],
        cwd=ROOT, timeout=1800)
    size = int(run(["docker", "image", "inspect", IMAGE_TAG, "--format", "{{.Size}}"]).stdout.strip())
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "image-size.txt").write_text(f"{IMAGE_TAG} {size / 2**20:.0f} MiB (on the debootstrap base)\n")
    return IMAGE_TAG


def test_image_runs_as_non_root_without_the_code(image):
    out = run(["docker", "run", "--rm", image, "sh", "-c", "id -u; ls /app | wc -l; python -c 'import xgboost, prefect_kubernetes, kedro, mlflow; print(xgboost.build_info()[\"USE_CUDA\"])'"]).stdout.split()
    assert out == ["10001", "0", "True"]  # non-root, no code baked in, CUDA-capable XGBoost


def test_flow_runs_inside_the_container_pull_code_train_and_register(image, flow_stack):
    """The training run and its GPU fit (README, "Only the fit on the GPU") each in its own container, as
    the Kubernetes worker runs them in two pods: the training run starts its fit, the fit's container runs
    it, and the training run registers what it fitted."""
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

    def container(flow_run_id):
        argv = ["docker", "run", "--rm", "--network", "host", "-e", f"PREFECT__FLOW_RUN_ID={flow_run_id}"]
        for key, value in env.items():
            argv += ["-e", f"{key}={value}"]
        return subprocess.Popen([*argv, image, "prefect", "flow-run", "execute"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    training = container(run.id)
    deadline = time.monotonic() + 600
    while not (fits := fit_runs(run.id)):
        assert training.poll() is None and time.monotonic() < deadline, training.communicate()[0][-4000:]
        time.sleep(1)
    (fit,) = fits
    fitting = container(fit.id)
    fit_out, _ = fitting.communicate(timeout=900)
    out, _ = training.communicate(timeout=900)
    assert fitting.returncode == 0, fit_out[-4000:]
    assert training.returncode == 0, out[-4000:]
    assert "Running node: train_model" in fit_out and "Running node: train_model" not in out
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state.is_completed() and client.read_flow_run(fit.id).state.is_completed()
    runs = MlflowClient().search_runs(
        experiment_ids=[e.experiment_id for e in MlflowClient().search_experiments()],
        filter_string=f"tags.prefect_flow_run_id = '{run.id}'",
    )
    assert len(runs) == 1 and runs[0].data.metrics["model_rmse"] < runs[0].data.metrics["baseline_rmse"]
    assert MlflowClient().search_model_versions(f"run_id = '{runs[0].info.run_id}'")
    assert runs[0].data.tags["trip_duration.fit_run"] == str(fit.id)
