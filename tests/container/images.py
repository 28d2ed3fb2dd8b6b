"""Test images built here, where none can be pulled: a Debian bookworm made with debootstrap and
`docker import`ed. The host's CA bundle goes into the rootfs (test-only: this sandbox's registries
sit behind a TLS-inspecting proxy); the Dockerfile and the README's path stay standard."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    return done


def exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def docker_ready(tag: str) -> str | None:
    """Why an image test cannot run here, or None."""
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
