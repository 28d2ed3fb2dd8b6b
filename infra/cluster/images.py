"""Every image the chart needs, built here where none can be pulled, and imported into the cluster.

    python -m infra.cluster.images [--import]     # `make cluster-images`

- ``trip-duration-test-base:bookworm``: Debian bookworm by debootstrap + python3, `docker import`ed
  (the host's CA bundle goes in: this machine's registries sit behind a TLS-inspecting proxy);
- ``trip-duration:test``: our Dockerfile on that base. It holds exactly the locked prefect and
  prefect-kubernetes, so it is also the Prefect server, worker and pool-setup image, and MLflow's;
- ``trip-duration-test/postgres:15``: Debian's PostgreSQL with the official image's entrypoint contract;
- ``trip-duration-test/s3:moto``: moto in server mode, the versions of uv.lock.

The chart's defaults stay the public images; tests/cluster/values-images.yaml points it at these.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE = "trip-duration-test-base:bookworm"
APP = "trip-duration:test"
POSTGRES = "trip-duration-test/postgres:15"
S3 = "trip-duration-test/s3:moto"
ALL = (APP, POSTGRES, S3)


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}")
    return done


def exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def docker_ready(tag: str) -> str | None:
    """Why images cannot be built here, or None."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (start dockerd; .ci/run does)"
    if shutil.which("debootstrap") is None and not exists(tag):
        return f"debootstrap is not installed (apt-get install debootstrap) and no {tag} image exists"
    return None


def debootstrap_image(tag: str, packages: str, rootfs: Path, changes: tuple[str, ...] = (),
                      chroot: tuple[tuple[str, ...], ...] = ()) -> str:
    """``tag``: a minbase bookworm with ``packages`` (comma-separated), built once and then reused."""
    if exists(tag):
        return tag
    run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(rootfs),
         "http://deb.debian.org/debian"], timeout=1800)
    for argv in chroot:
        run(["chroot", str(rootfs), *argv])
    if CA_BUNDLE.exists():
        shutil.copy(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    argv = ["docker", "import"]
    for change in changes:
        argv += ["--change", change]
    run([*argv, "-", tag], stdin=tar.stdout)
    tar.wait()
    return tag


def base_image() -> str:
    with tempfile.TemporaryDirectory(prefix="td-rootfs-") as rootfs:
        return debootstrap_image(BASE, "python3,python3-venv,python3-pip,ca-certificates", Path(rootfs),
                                 changes=("ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                                          "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                                          "ENV PIP_BREAK_SYSTEM_PACKAGES=1"))


def _build(tag: str, context: Path) -> None:
    run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE}", "-t", tag, str(context)],
        timeout=1800)


def build_all() -> dict[str, float]:
    """Build (or reuse Docker's layer cache for) every image; returns seconds per image."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    base_image()
    seconds[BASE] = time.monotonic() - started
    for tag, context in ((APP, ROOT), (POSTGRES, HERE / "images" / "postgres"), (S3, None)):
        started = time.monotonic()
        if context is None:  # moto pinned to uv.lock's versions
            with tempfile.TemporaryDirectory(prefix="td-s3-") as tmp:
                shutil.copy(HERE / "images" / "s3" / "Dockerfile", tmp)
                pins = run([str(ROOT / ".venv" / "bin" / "uv"), "export", "--frozen", "--no-hashes", "--all-groups",
                            "--no-emit-project", "--no-annotate", "--no-header"], cwd=ROOT).stdout
                Path(tmp, "constraints.txt").write_text(pins)
                _build(tag, Path(tmp))
        else:
            _build(tag, context)
        seconds[tag] = time.monotonic() - started
        print(f"  image {tag}: {seconds[tag]:.0f}s, {size_mib(tag):.0f} MiB", flush=True)
    return seconds


def size_mib(tag: str) -> float:
    return int(run(["docker", "image", "inspect", tag, "--format", "{{.Size}}"]).stdout.strip()) / 2**20


def import_all() -> None:
    # the app image runs everywhere (train on the GPU node); the database and S3 only on the cpu node,
    # the only one without the GPU taint
    run([str(HERE / "cluster.sh"), "import", APP], timeout=1800)
    run([str(HERE / "cluster.sh"), "import", "--node", "cpu", POSTGRES, S3], timeout=1800)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.cluster.images")
    parser.add_argument("--import", dest="import_", action="store_true", help="also import them into the cluster")
    args = parser.parse_args(argv)
    reason = docker_ready(BASE)
    if reason:
        print(f"cluster images: {reason}", file=sys.stderr)
        return 2
    build_all()
    if args.import_:
        import_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
