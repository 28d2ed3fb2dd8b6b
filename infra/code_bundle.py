"""The code a flow run pulls, as one archive: a `prefect deploy` push step.

prefect-aws's `push_to_s3` uploads a folder file by file and `pull_from_s3` downloads every
object under it, a HEAD and a GET each: ~45 objects for this project, 0.6-0.9 s of every run
on the local stack and more against AWS. Packed first, a run fetches one object, and it is
never a mix of two deploys' files (an S3 PUT is atomic; per-file uploads are not) nor a file
deleted since. prefect.yaml:

    push:  pack -> set_working_directory(bundle_dir) -> push_to_s3 -> set_working_directory(back)
    pull:  pull_from_s3 -> run_shell_script "tar -xzf code.tar.gz"

What goes in is exactly what `push_to_s3` would upload: the same `.prefectignore`, read by the
same Prefect function.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pathspec
from prefect.utilities.filesystem import filter_files

ARCHIVE = "code.tar.gz"


def _anonymous(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""  # no deployer's user name in the bucket
    return member


def select_files(project: Path, patterns: list[str]) -> list[str]:
    """The files Prefect's ``filter_files`` keeps (same GitIgnoreSpec), without walking ignored folders.

    ``filter_files`` lists every file under the project first (.venv, a local cluster's container
    filesystems: minutes, or a hang on a FIFO). An ignored folder is pruned unless a ``!`` pattern
    could re-include something inside it: then it is walked and each file judged by the spec, so
    the selection is exactly Prefect's.
    """
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    negations = [p.strip()[1:] for p in patterns if p.strip().startswith("!")]
    kept = []
    for folder, dirs, files in os.walk(project):
        rel_folder = Path(folder).relative_to(project).as_posix()
        prefix = "" if rel_folder == "." else f"{rel_folder}/"
        dirs[:] = sorted(d for d in dirs
                         if not spec.match_file(f"{prefix}{d}/") or _may_reinclude(f"{prefix}{d}", negations))
        kept += [f"{prefix}{name}" for name in files
                 if not spec.match_file(f"{prefix}{name}") and (Path(folder) / name).is_file()]
    return sorted(kept)


def _may_reinclude(folder: str, negations: list[str]) -> bool:
    """Whether one of the ``!`` patterns could match ``folder`` or something beneath it."""
    for pattern in negations:
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        if not anchored:  # matches at any depth
            return True
        body = pattern.lstrip("/")
        literal = body[: min((body.index(c) for c in "*?[" if c in body), default=len(body))]
        if literal.startswith(f"{folder}/") or f"{folder}/".startswith(literal) or literal == folder:
            return True
    return False


def pack(bundle_dir: str = "build/code-bundle", ignore_file: str = ".prefectignore") -> dict[str, str]:
    """Write ``bundle_dir/code.tar.gz`` from the current directory, minus ``ignore_file``'s patterns.

    Returns ``bundle_dir`` and ``project_dir`` (absolute) for the steps that follow, and the
    number of files packed.
    """
    project = Path.cwd()
    out = (project / bundle_dir).resolve()
    if out == project or project not in out.parents:
        raise ValueError(f"bundle_dir {bundle_dir!r} must be a folder inside the project, e.g. build/code-bundle")
    ignore = project / ignore_file
    patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.exists() else []
    included = select_files(project, patterns)
    if not included:
        raise ValueError(f"nothing to pack in {project}: every file matches {ignore_file}; "
                         "run `prefect deploy` from the project root")
    shutil.rmtree(out, ignore_errors=True)  # only the archive gets pushed from here
    out.mkdir(parents=True)
    with tarfile.open(out / ARCHIVE, "w:gz") as archive:
        for rel in included:
            archive.add(project / rel, arcname=rel, recursive=False, filter=_anonymous)
    return {"bundle_dir": str(out), "project_dir": str(project), "files": str(len(included))}
