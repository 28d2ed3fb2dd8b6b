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
