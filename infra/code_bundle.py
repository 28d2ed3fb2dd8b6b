"""The code a flow run pulls, as one content-addressed archive: `prefect deploy`'s push steps.

prefect.yaml:

    push:  pack -> push (s3://$TRIP_DURATION_BUCKET/code/trip-duration/<sha256>.tar.gz)
    pull:  $TRIP_DURATION_CODE_PULL --bucket ... --key <that key> --sha256 <that hash>   (infra/code_pull.py)

- One object per deploy, not ~45 (a HEAD and a GET each with prefect-aws's folder steps), and never a
  mix of two deploys' files.
- The key is the archive's SHA-256, so the deployment's pull step names the exact bytes it runs:
  a later deploy uploads a new key and cannot change what an earlier deployment version runs,
  and whoever can write the bucket cannot swap the code under a deployment (the pull step checks
  the hash before unpacking). Identical code gives the identical key (the archive is
  reproducible: sorted names, no owners, fixed times), uploaded once.
- Rollback: ``TRIP_DURATION_CODE_SHA256=<an earlier hash> make deploy`` points the deployments at
  that archive again (it must exist in the bucket; nothing is packed or uploaded).

What goes in is exactly what prefect-aws's `push_to_s3` would upload: `.prefectignore` (an allow-list),
read by the same Prefect function.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import pathspec
from prefect.utilities.filesystem import filter_files

ARCHIVE = "code.tar.gz"
PREFIX = "code/trip-duration"
#: set to an earlier archive's hash to deploy that code again (rollback)
ROLLBACK_ENV = "TRIP_DURATION_CODE_SHA256"


def code_key(sha256: str) -> str:
    return f"{PREFIX}/{sha256}.tar.gz"


def _reproducible(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""  # no deployer's user name in the bucket
    member.mtime = 0  # the same files give the same bytes, hence the same key
    member.mode = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
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

    Returns ``bundle_dir``, ``project_dir`` (absolute), the archive's ``sha256``, its bucket ``key``
    and the number of files packed. With ``TRIP_DURATION_CODE_SHA256`` set (rollback) nothing is
    packed: the outputs name that archive.
    """
    project = Path.cwd()
    out = (project / bundle_dir).resolve()
    if out == project or project not in out.parents:
        raise ValueError(f"bundle_dir {bundle_dir!r} must be a folder inside the project, e.g. build/code-bundle")
    rollback = os.environ.get(ROLLBACK_ENV, "").strip()
    if rollback:
        if not re.fullmatch(r"[0-9a-f]{64}", rollback):
            raise ValueError(f"{ROLLBACK_ENV}={rollback!r} is not a SHA-256 (64 lowercase hex digits); list the "
                             f"archives with: aws s3 ls s3://$TRIP_DURATION_BUCKET/{PREFIX}/")
        return {"bundle_dir": str(out), "project_dir": str(project), "sha256": rollback,
                "key": code_key(rollback), "files": "0", "rollback": "true"}
    ignore = project / ignore_file
    patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.exists() else []
    included = select_files(project, patterns)
    if not included:
        raise ValueError(f"nothing to pack in {project}: every file matches {ignore_file}; "
                         "run `prefect deploy` from the project root")
    shutil.rmtree(out, ignore_errors=True)  # only the archive gets pushed from here
    out.mkdir(parents=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for rel in included:
            archive.add(project / rel, arcname=rel, recursive=False, filter=_reproducible)
    data = gzip.compress(raw.getvalue(), mtime=0)  # no timestamp in the gzip header either
    (out / ARCHIVE).write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    return {"bundle_dir": str(out), "project_dir": str(project), "sha256": sha256, "key": code_key(sha256),
            "files": str(len(included)), "rollback": "false"}


def push(bucket: str, bundle_dir: str, sha256: str, key: str, rollback: str = "false") -> dict[str, str]:
    """Upload the archive to its content-addressed ``key`` (once: an existing key holds the same bytes).

    On rollback, only checks that ``key`` exists. Credentials: the caller's AWS chain (never stored).
    """
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3")

    def exists() -> bool:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return head.get("Metadata", {}).get("sha256") == sha256

    if rollback == "true":
        if not exists():
            raise ValueError(f"{ROLLBACK_ENV}={sha256}: s3://{bucket}/{key} does not exist (or was not uploaded by "
                             f"a deploy); list the archives with: aws s3 ls s3://{bucket}/{PREFIX}/")
        return {"bucket": bucket, "key": key, "uploaded": "false"}
    if exists():
        return {"bucket": bucket, "key": key, "uploaded": "false"}
    s3.upload_file(str(Path(bundle_dir) / ARCHIVE), bucket, key,
                   ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": "application/gzip"})
    return {"bucket": bucket, "key": key, "uploaded": "true"}
