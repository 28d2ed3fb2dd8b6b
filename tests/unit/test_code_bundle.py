"""The push step that packs the code into one archive (infra/code_bundle.py)."""

from __future__ import annotations

import subprocess
import tarfile

import pytest

from infra.code_bundle import ARCHIVE, pack


def _project(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / ".prefectignore").write_text("# comment\n.venv/\nbuild/\n**/__pycache__/\n*.pyc\ntests/\n")
    for rel, text in {
        "flows/training.py": "print('train')\n",
        "src/pkg/__init__.py": "",
        "src/pkg/__pycache__/x.cpython-311.pyc": "junk",
        "conf/base/catalog.yml": "a: 1\n",
        ".venv/lib/site.py": "venv",
        "tests/test_x.py": "test",
        "build/old/output.txt": "old",
        "pyproject.toml": "[project]\n",
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_packs_what_prefectignore_lets_through_and_nothing_else(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    out = pack()
    assert out["project_dir"] == str(project) and out["bundle_dir"] == str(project / "build" / "code-bundle")
    assert [p.name for p in (project / "build" / "code-bundle").iterdir()] == [ARCHIVE]
    with tarfile.open(project / "build" / "code-bundle" / ARCHIVE) as archive:
        members = archive.getmembers()
        assert sorted(m.name for m in members) == [
            ".prefectignore", "conf/base/catalog.yml", "flows/training.py", "pyproject.toml", "src/pkg/__init__.py"]
        assert all(m.isfile() and m.uid == 0 and m.uname == "" for m in members)
        assert archive.extractfile("flows/training.py").read() == b"print('train')\n"
    assert out["files"] == "5"


def test_the_pull_side_unpacks_it_with_tar(tmp_path, monkeypatch):
    project = _project(tmp_path / "project")
    monkeypatch.chdir(project)
    pack()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ARCHIVE).write_bytes((project / "build" / "code-bundle" / ARCHIVE).read_bytes())
    subprocess.run(["tar", "-xzf", ARCHIVE], cwd=run_dir, check=True)  # prefect.yaml's pull step
    assert (run_dir / "flows" / "training.py").read_text() == "print('train')\n"
    assert (run_dir / "src" / "pkg" / "__init__.py").exists() and not (run_dir / ".venv").exists()


def test_bad_bundle_dir_and_empty_selection_are_named(tmp_path, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    with pytest.raises(ValueError, match=r"bundle_dir '\.\./elsewhere' must be a folder inside the project"):
        pack(bundle_dir="../elsewhere")
    with pytest.raises(ValueError, match="bundle_dir '.' must be a folder inside the project"):
        pack(bundle_dir=".")
    (project / "everything").write_text("*\n")
    with pytest.raises(ValueError, match="nothing to pack .* every file matches everything"):
        pack(ignore_file="everything")



@pytest.mark.parametrize("extra", [[], ["!tests/keep_me.py"]])
def test_selection_is_exactly_prefects_own_without_walking_ignored_folders(tmp_path, extra):
    """select_files prunes ignored folders (a deploy no longer lists .venv) yet keeps what Prefect's
    filter_files keeps, including with a negation pattern (where it defers to filter_files)."""
    from prefect.utilities.filesystem import filter_files

    from infra.code_bundle import select_files

    project = _project(tmp_path)
    (project / "tests" / "keep_me.py").write_text("kept\n")
    patterns = [line.strip() for line in (project / ".prefectignore").read_text().splitlines()] + extra
    expected = sorted(r for r in filter_files(str(project), patterns, include_dirs=False, as_posix=True)
                      if (project / r).is_file())
    assert select_files(project, patterns) == expected
    assert ("tests/keep_me.py" in expected) == bool(extra)


def test_the_projects_allow_list_ships_only_what_a_run_needs_and_never_walks_the_rest(tmp_path, monkeypatch):
    """The real .prefectignore: code, conf/base, logging, pyproject and uv.lock go; .env, Kedro's
    conf/local credentials, a local cluster's state and anything new at the top stay home. The
    walk never enters a folder that nothing can re-include (a local cluster holds container
    filesystems), and the selection equals Prefect's own filter_files."""
    import os
    from pathlib import Path

    from prefect.utilities.filesystem import filter_files

    from infra import code_bundle

    root = Path(__file__).resolve().parents[2]
    (tmp_path / ".prefectignore").write_text((root / ".prefectignore").read_text())
    for rel in ("flows/training.py", "src/pkg/__init__.py", "src/pkg/__pycache__/m.cpython-311.pyc",
                "conf/base/catalog.yml", "conf/logging.yml", "conf/local/credentials.yml", "conf/local/.gitkeep",
                "conf/test/x.yml",
                "pyproject.toml", "uv.lock", ".env", "secrets.txt", ".cluster/nodes/cpu/rootfs/etc/passwd",
                ".venv/lib/site.py", "tests/test_x.py", "README.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    patterns = (tmp_path / ".prefectignore").read_text().splitlines()
    visited = []
    real_walk = os.walk

    def recording_walk(top, *args, **kwargs):
        for folder, dirs, files in real_walk(top, *args, **kwargs):
            visited.append(Path(folder).relative_to(tmp_path).as_posix())
            yield folder, dirs, files

    monkeypatch.setattr(code_bundle.os, "walk", recording_walk)
    selected = code_bundle.select_files(tmp_path, patterns)
    assert selected == ["conf/base/catalog.yml", "conf/local/.gitkeep", "conf/logging.yml", "flows/training.py", "pyproject.toml",
                        "src/pkg/__init__.py", "uv.lock"]
    assert selected == sorted(r for r in filter_files(str(tmp_path), patterns, include_dirs=False, as_posix=True)
                              if (tmp_path / r).is_file())
    assert not [v for v in visited if v.startswith((".cluster", ".venv", "tests"))]
