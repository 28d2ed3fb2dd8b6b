"""The pull step's checks (infra/code_pull.py) on hostile archives: each refused before anything is written."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from infra.code_pull import Refused, unpack


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file(name: str, data: bytes = b"x = 1\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def test_a_clean_archive_is_unpacked(tmp_path):
    archive = tmp_path / "code.tar.gz"
    sha = _archive(archive, [_file("flows/a.py"), _file("src/pkg/b.py")])
    dest = tmp_path / "dest"
    dest.mkdir()
    assert unpack(archive, dest, sha) == 2
    assert (dest / "flows" / "a.py").read_text() == "x = 1\n"


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        ([_file("/etc/cron.d/evil")], "absolute path"),
        ([_file("../outside.py")], "'..'"),
        ([_file("flows/../../outside.py")], "'..'"),
        ([_special("flows/link", tarfile.SYMTYPE, "/etc/passwd")], "link"),
        ([_special("flows/link", tarfile.SYMTYPE, "ok.py")], "link"),  # regular files only, even inside
        ([_file("flows/a.py"), _special("flows/hard", tarfile.LNKTYPE, "flows/a.py")], "link"),
        ([_special("flows/fifo", tarfile.FIFOTYPE)], "special file"),
        ([_special("flows/dev", tarfile.CHRTYPE)], "special file"),
    ],
)
def test_escaping_members_are_refused_and_nothing_is_written(tmp_path, members, refusal):
    archive = tmp_path / "code.tar.gz"
    sha = _archive(archive, members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Refused, match=refusal):
        unpack(archive, dest, sha)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "outside.py").exists()


def test_size_and_count_bounds(tmp_path):
    archive = tmp_path / "code.tar.gz"
    sha = _archive(archive, [_file("a.bin", b"\0" * 4096), _file("b.bin", b"\0" * 4096)])  # compresses to ~100 bytes
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Refused, match="more than 6000 bytes unpacked"):
        unpack(archive, dest, sha, max_bytes=6000)
    with pytest.raises(Refused, match="more than 1 members"):
        unpack(archive, dest, sha, max_files=1)
    assert list(dest.iterdir()) == []


def test_a_wrong_hash_or_a_corrupt_archive_is_refused(tmp_path):
    archive = tmp_path / "code.tar.gz"
    _archive(archive, [_file("a.py")])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Refused, match="SHA-256 is .* the deployment names 0000"):
        unpack(archive, dest, "0" * 64)
    archive.write_bytes(b"not gzip at all")
    with pytest.raises(Refused, match="not a readable .tar.gz"):
        unpack(archive, dest, hashlib.sha256(b"not gzip at all").hexdigest())
    assert list(dest.iterdir()) == []


def test_the_bundle_is_reproducible_so_the_same_code_gets_the_same_key(tmp_path, monkeypatch):
    from infra import code_bundle

    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "a.py").write_text("x = 1\n")
    (tmp_path / ".prefectignore").write_text("/*\n!/flows/\n")
    monkeypatch.chdir(tmp_path)
    first = code_bundle.pack()
    (tmp_path / "flows" / "a.py").touch()  # a new mtime, same bytes
    second = code_bundle.pack()
    assert first["sha256"] == second["sha256"] and first["key"] == f"code/trip-duration/{first['sha256']}.tar.gz"
    (tmp_path / "flows" / "a.py").write_text("x = 2\n")
    assert code_bundle.pack()["sha256"] != first["sha256"]


def test_rollback_hash_is_checked_before_anything(tmp_path, monkeypatch):
    from infra import code_bundle

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRIP_DURATION_CODE_SHA256", "abc")
    with pytest.raises(ValueError, match="TRIP_DURATION_CODE_SHA256='abc' is not a SHA-256"):
        code_bundle.pack()
    monkeypatch.setenv("TRIP_DURATION_CODE_SHA256", "a" * 64)
    out = code_bundle.pack()
    assert out["rollback"] == "true" and out["key"] == f"code/trip-duration/{'a' * 64}.tar.gz"
    assert not (tmp_path / "build").exists()  # nothing packed
