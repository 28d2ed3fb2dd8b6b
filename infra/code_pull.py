"""The pull step of every flow run: fetch the code archive a deployment names, check it, unpack it.

    python -I code_pull.py --bucket B --key code/trip-duration/<sha256>.tar.gz --sha256 <sha256> [--dest .]

prefect.yaml's pull step runs it as ``$TRIP_DURATION_CODE_PULL --bucket ... --key ... --sha256 ...``
(the image sets TRIP_DURATION_CODE_PULL to its copy of this file; the local stack to this one). It
lives in the image, not in the archive: the code that checks the code must not come with it.

- one GET of the exact key the deployment names (content-addressed: the key is the archive's hash);
- the SHA-256 of what arrived must equal ``--sha256`` (a replaced or truncated object is refused);
- before anything is written, every member is checked: no absolute path, no ``..``, no link, device
  or FIFO, at most ``--max-files`` members and ``--max-bytes`` unpacked; then tarfile's ``data``
  filter extracts (it refuses the same things again).
Any refusal exits 2 with one line naming the key and what was wrong; nothing is unpacked then.
Standard library and boto3 only (both in the image).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

MAX_BYTES = 256 * 1024 * 1024
MAX_FILES = 20_000


class Refused(Exception):
    """The archive is not the one the deployment names, or would write outside its folder."""


def check_members(archive: tarfile.TarFile, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> int:
    """Raise :class:`Refused` for the first member that could escape the folder or exceed a bound; return bytes."""
    total = count = 0
    for member in archive:
        count += 1
        if count > max_files:
            raise Refused(f"more than {max_files} members")
        name = member.name
        path = PurePosixPath(name)
        if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise Refused(f"absolute path {name!r}")
        if ".." in path.parts:
            raise Refused(f"path with '..' {name!r}")
        if member.issym() or member.islnk():
            raise Refused(f"link {name!r} -> {member.linkname!r} (the bundle holds regular files only)")
        if not (member.isfile() or member.isdir()):
            raise Refused(f"special file {name!r} (type {member.type!r})")
        total += member.size
        if total > max_bytes:
            raise Refused(f"more than {max_bytes} bytes unpacked (at {name!r})")
    return total


def unpack(archive_path: Path, dest: Path, expected_sha256: str, max_bytes: int = MAX_BYTES,
           max_files: int = MAX_FILES) -> int:
    """Check ``archive_path`` against ``expected_sha256`` and its members, then unpack into ``dest``."""
    digest = hashlib.sha256()
    with archive_path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected_sha256:
        raise Refused(f"SHA-256 is {digest.hexdigest()}, the deployment names {expected_sha256}")
    try:
        with tarfile.open(archive_path, "r:gz") as archive:  # one pass: the members are read once, then kept
            check_members(archive, max_bytes, max_files)
            members = archive.getmembers()
            if hasattr(tarfile, "data_filter"):  # PEP 706 (3.11.4+): the same refusals, once more
                archive.extractall(dest, filter="data")
            else:
                archive.extractall(dest)  # check_members has refused everything the filter would
    except (tarfile.TarError, EOFError, OSError) as err:
        raise Refused(f"not a readable .tar.gz: {err}") from err
    return len(members)


def fetch(bucket: str, key: str, target: Path) -> None:
    import boto3

    boto3.client("s3").download_file(bucket, key, str(target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--dest", default=".")
    parser.add_argument("--max-bytes", type=int, default=int(os.environ.get("TRIP_DURATION_CODE_MAX_BYTES", MAX_BYTES)))
    parser.add_argument("--max-files", type=int, default=MAX_FILES)
    args = parser.parse_args(argv)
    dest = Path(args.dest).resolve()
    source = f"s3://{args.bucket}/{args.key}"
    with tempfile.TemporaryDirectory(prefix=".code-pull-", dir=dest) as tmp:
        archive = Path(tmp) / "code.tar.gz"
        try:
            fetch(args.bucket, args.key, archive)
        except Exception as err:  # botocore's errors: the line names the key and the cause
            print(f"code pull: cannot fetch {source}: {err}. Redeploy (make deploy) or name an existing "
                  f"key (aws s3 ls s3://{args.bucket}/code/trip-duration/)", file=sys.stderr)
            return 2
        try:
            files = unpack(archive, dest, args.sha256, args.max_bytes, args.max_files)
        except Refused as err:
            print(f"code pull: refused {source}: {err}; nothing was unpacked. Redeploy from a clean "
                  "checkout (make deploy)", file=sys.stderr)
            return 2
    print(f"code pull: {source} verified (sha256 {args.sha256[:12]}...) and unpacked: {files} members in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
