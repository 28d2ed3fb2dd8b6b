"""infra/bootstrap.py: the pinned uv is the image's uv, and the wheel choice covers the platforms we pin."""

from __future__ import annotations

import re

import pytest

from infra import bootstrap
from infra.local.stack import ROOT


def test_the_bootstrap_pins_the_same_uv_as_the_image():
    arg = re.search(r"ARG UV_VERSION=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
    assert arg == bootstrap.UV_VERSION
    assert all(filename.startswith(f"uv-{bootstrap.UV_VERSION}-") for filename, _ in bootstrap.UV_WHEELS.values())
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for _, digest in bootstrap.UV_WHEELS.values())


@pytest.mark.parametrize(("system", "machine", "libc", "expected"), [
    ("Linux", "x86_64", "glibc", "manylinux_2_17_x86_64"),
    ("Linux", "AMD64", "glibc", "manylinux_2_17_x86_64"),
    ("Linux", "x86_64", "", "musllinux_1_1_x86_64"),
    ("Linux", "aarch64", "glibc", "aarch64"),
    ("Darwin", "arm64", "", "macosx_11_0_arm64"),
])
def test_the_wheel_matches_the_machine(monkeypatch, system, machine, libc, expected):
    monkeypatch.setattr(bootstrap.platform, "system", lambda: system)
    monkeypatch.setattr(bootstrap.platform, "machine", lambda: machine)
    monkeypatch.setattr(bootstrap.platform, "libc_ver", lambda: (libc, ""))
    filename, _ = bootstrap.UV_WHEELS[bootstrap._platform_key()]
    assert expected in filename


def test_an_unpinned_platform_is_refused_with_the_way_out(monkeypatch, capsys):
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setattr(bootstrap, "_version_of", lambda uv: None)
    monkeypatch.setattr(bootstrap.platform, "system", lambda: "FreeBSD")
    with pytest.raises(SystemExit) as exit_:
        bootstrap.ensure_uv()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no pinned uv wheel for FreeBSD" in err and "UV=/path/to/uv make install" in err
