"""The README's quickstart on a stock Debian 12, as a new user meets it.

The machine: a debootstrap'd bookworm with only `python3`, `make` and `ca-certificates` (the
README's one apt-get line), no pip, no venv module, no uv; a non-root user with a clean HOME and
PATH=/usr/bin:/bin. Inside it: `make demo` (which bootstraps everything from the package index),
then `source .state/env` with `prefect`/`aws s3 ls`, then `make down` and `make demo` again (the
stack's state survives), then `make test-unit`.

Test-only, as in tests/container/test_image.py: the host's CA bundle is copied into the rootfs
(this sandbox's registries sit behind a TLS-inspecting proxy); the README's path is unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.local.stack import free_port
from tests.container.images import CA_BUNDLE, debootstrap_image, docker_ready, run

ROOT = Path(__file__).resolve().parents[2]
STOCK_TAG = "trip-duration-test-stock:bookworm"
#: what the README tells a Debian/Ubuntu user to install, and nothing else
STOCK_PACKAGES = "python3,make,ca-certificates"

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def stock_image(tmp_path_factory):
    reason = docker_ready(STOCK_TAG)
    if reason:
        pytest.skip(f"newcomer test skipped: {reason}")
    return debootstrap_image(STOCK_TAG, STOCK_PACKAGES, tmp_path_factory.mktemp("stock"), chroot=(
        ("useradd", "--create-home", "--uid", "1000", "--shell", "/bin/bash", "newcomer"),))


def _checkout(dest: Path) -> Path:
    """What a clone of this commit holds: tracked files plus new ones git does not ignore."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT).stdout
    for rel in filter(None, files.split("\0")):
        source = ROOT / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest


def test_make_demo_on_a_stock_debian_with_only_python3(stock_image, tmp_path):
    project = _checkout(tmp_path / "trip-duration")
    run(["chown", "-R", "1000:1000", str(tmp_path)])
    ports = {"STACK_S3_PORT": free_port(), "STACK_MLFLOW_PORT": free_port(), "STACK_PREFECT_PORT": free_port()}
    script = " && ".join([
        "set -x",
        "! command -v pip3 && ! command -v uv && ! python3 -c 'import ensurepip'",  # stock: none of these
        "time make demo",  # the first: bootstrap from an empty cache, stack start, both runs
        "source .state/env",
        "prefect version",
        "aws s3 ls s3://trip-duration/raw/",
        "make down",
        "time make demo",  # the stack's state survived make down: the same champion, a second version
        "make test-unit",
    ])
    env = {"HOME": "/home/newcomer", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **ports}
    if CA_BUNDLE.exists():  # test-only, see the module docstring
        env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
    argv = ["docker", "run", "--rm", "--network", "host", "--user", "1000:1000", "-v", f"{project}:/src",
            "-w", "/src"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    done = subprocess.run([*argv, stock_image, "bash", "-c", script], capture_output=True, text=True,
                          timeout=2400)
    log = done.stdout + done.stderr
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "newcomer.log").write_text(log)
    assert done.returncode == 0, log[-8000:]
    # the bootstrap fetched and verified uv itself, and said what it was doing
    assert "uv 0.13.9 -> .tools/uv-0.13.9/uv (SHA-256 verified)" in log
    assert "modules checked" in log and "bytecode ready" in log
    assert "yellow_tripdata_2023-01.parquet" in log and "yellow_tripdata_2023-02.parquet" in log  # aws s3 ls
    summary = json.loads((project / "build" / "demo" / "summary.json").read_text())
    assert summary["train_flow_run_state"] == summary["infer_flow_run_state"] == "Completed"
    assert summary["data"].startswith("synthetic: ")  # its RMSEs are of generated trips, and it says so
    # second demo after make down: v1 (from before the restart) is still champion and was compared against
    assert (summary["registered_version"], summary["champion_version"], summary["promotion_decision"]) == (
        2, 1, "rejected")
    assert summary["prediction_rows"] > 0
    assert re.search(r"\d+ passed", log) and not re.search(r"\d+ failed", log)  # make test-unit
