"""The local stack's S3 server: moto's S3 API over HTTP, with every bucket and object kept on disk.

moto (a dev dependency, in the lock) speaks S3 well enough for boto3, s3fs, prefect-aws and
MLflow, but keeps objects in memory: `make down` used to lose every object while Prefect's and
MLflow's databases kept pointing at them. This server runs moto's own WSGI application and writes
through to a store under the stack's state folder:

    <data>/index.sqlite3    buckets and objects: key, blob, metadata (Content-Type and x-amz-meta-*),
                            last-modified
    <data>/blobs/<id>       one file per object version that is current

A request that changes anything (PUT, POST, DELETE: puts, multipart completions, copies, bulk and
single deletes, bucket creation and deletion) is answered only after the store matches moto's state:
its blob files are written and fsynced, then one SQLite transaction commits them. So a client that
got its 200 finds the object again after `make down` or a SIGKILL; a write cut short leaves at most an
orphan blob, removed at the next start. On start the store is loaded back into moto before the port opens.

Why not MinIO, SeaweedFS or versitygw (which persist natively)? They are Go programs: a newcomer's
machine would need a Go toolchain and minutes of compilation before `make demo`, whose promise is
"nothing but python3". Kept as moto does it: no versioning history, tags or ACLs, and the ETag of a
multipart object becomes the MD5 of its bytes after a restart. It is a development server: it binds
127.0.0.1 and checks no signature.

    python -m infra.local.s3server --port 9000 --data .state/s3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("s3server")

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    account TEXT NOT NULL, name TEXT NOT NULL, region TEXT NOT NULL, PRIMARY KEY (account, name));
CREATE TABLE IF NOT EXISTS objects (
    account TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL,
    metadata TEXT NOT NULL, last_modified TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (account, bucket, key));
"""


def _s3_backends():
    from moto.s3.models import s3_backends

    return s3_backends


def _live_state() -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """moto's buckets now: (account, bucket) -> (region, {key: current FakeKey})."""
    from moto.s3.models import FakeKey

    state = {}
    for account, partitions in list(_s3_backends().items()):
        for backend in list(partitions.values()):
            for name, bucket in list(backend.buckets.items()):
                keys = {key: fake for key, fake in bucket.keys.items() if isinstance(fake, FakeKey)}
                state[(account, name)] = (bucket.region_name, keys)
    return state


class DiskStore:
    """The on-disk copy of moto's buckets, kept equal to it after every change."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "index.sqlite3", check_same_thread=False, isolation_level=None)
        self.db.executescript(_SCHEMA)
        #: what the store holds, per (account, bucket), by identity of moto's FakeKey objects
        #: (moto makes a new one per write)
        self._known: dict[tuple[str, str], dict[str, Any]] = {}

    # --- start-up ------------------------------------------------------------------------
    def restore(self) -> tuple[int, int, int]:
        """Load every stored bucket and object into moto; returns (buckets, objects, bytes)."""
        s3_backends = _s3_backends()
        buckets = self.db.execute("SELECT account, name, region FROM buckets ORDER BY account, name").fetchall()
        count = size = 0
        for account, name, region in buckets:
            backend = s3_backends[account]["aws"]
            backend.create_bucket(name, region)
            known = self._known.setdefault((account, name), {})
            rows = self.db.execute(
                "SELECT key, blob, metadata, last_modified FROM objects WHERE account=? AND bucket=?",
                (account, name),
            ).fetchall()
            for key, blob, metadata, last_modified in rows:
                value = (self.blobs / blob).read_bytes()
                fake = backend.put_object(name, key, value, disable_notification=True)
                fake.set_metadata(json.loads(metadata))
                fake.last_modified = datetime.fromisoformat(last_modified)
                known[key] = fake
                count += 1
                size += len(value)
        self._collect_orphans()
        return len(buckets), count, size

    def _collect_orphans(self) -> None:
        referenced = {row[0] for row in self.db.execute("SELECT blob FROM objects")}
        for path in self.blobs.iterdir():
            if path.name not in referenced:  # a write cut short before its commit
                path.unlink(missing_ok=True)

    # --- write-through -----------------------------------------------------------------------
    def sync(self) -> None:
        """Make the store equal to moto's state: new and replaced objects written, gone ones removed."""
        live = _live_state()
        writes: list[tuple[str, str, str, Any]] = []
        deletes: list[tuple[str, str, str]] = []
        for (account, bucket), (region, keys) in live.items():
            known = self._known.get((account, bucket), {})
            writes += [(account, bucket, key, fake) for key, fake in keys.items() if known.get(key) is not fake]
            deletes += [(account, bucket, key) for key in known.keys() - keys.keys()]
        gone_buckets = [ab for ab in self._known if ab not in live]
        new_buckets = [(ab, region) for ab, (region, _) in live.items() if ab not in self._known]
        if not (writes or deletes or gone_buckets or new_buckets):
            return
        blobs = [self._write_blob(fake.value) for *_, fake in writes]  # durable before the commit
        old_blobs: list[str] = []
        with self.db:  # one transaction
            self.db.execute("BEGIN IMMEDIATE")
            for (account, bucket), region in new_buckets:
                self.db.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", (account, bucket, region))
            for (account, bucket, key, fake), blob in zip(writes, blobs):
                old_blobs += self._blob_of(account, bucket, key)
                self.db.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (account, bucket, key, blob, json.dumps(dict(fake.metadata)),
                     fake.last_modified.isoformat(), fake.size),
                )
            for account, bucket, key in deletes:
                old_blobs += self._blob_of(account, bucket, key)
                self.db.execute("DELETE FROM objects WHERE account=? AND bucket=? AND key=?", (account, bucket, key))
            for account, bucket in gone_buckets:
                old_blobs += [r[0] for r in self.db.execute(
                    "SELECT blob FROM objects WHERE account=? AND bucket=?", (account, bucket))]
                self.db.execute("DELETE FROM objects WHERE account=? AND bucket=?", (account, bucket))
                self.db.execute("DELETE FROM buckets WHERE account=? AND name=?", (account, bucket))
        for blob in old_blobs:
            (self.blobs / blob).unlink(missing_ok=True)
        for (account, bucket, key, fake) in writes:
            self._known.setdefault((account, bucket), {})[key] = fake
        for account, bucket, key in deletes:
            self._known.get((account, bucket), {}).pop(key, None)
        for ab in gone_buckets:
            self._known.pop(ab, None)
        for ab, _ in new_buckets:
            self._known.setdefault(ab, {})

    def _blob_of(self, account: str, bucket: str, key: str) -> list[str]:
        row = self.db.execute(
            "SELECT blob FROM objects WHERE account=? AND bucket=? AND key=?", (account, bucket, key)).fetchone()
        return [row[0]] if row else []

    def _write_blob(self, value: bytes) -> str:
        name = uuid.uuid4().hex
        tmp = self.blobs / f"{name}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.blobs / name)
        return name


class PersistingApp:
    """WSGI middleware: a changing request is answered once the store holds its result."""

    def __init__(self, app, store: DiskStore):
        self.app, self.store = app, store
        self.lock = threading.Lock()  # changes are applied and persisted one at a time

    def __call__(self, environ: dict[str, Any], start_response) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in _READS:
            return self.app(environ, start_response)
        captured: list[Any] = []

        def capture(status: str, headers: list, exc_info: Any = None):
            captured[:] = [status, headers, exc_info]
            return lambda data: None  # moto never uses the legacy write() callable

        with self.lock:
            result = self.app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            if captured and captured[0][:1] == "2":
                self.store.sync()
        start_response(*captured)
        return [body]


def serve(host: str, port: int, data: Path) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    store = DiskStore(data)
    buckets, objects, size = store.restore()
    logger.info("restored %d bucket(s), %d object(s), %.1f MiB from %s", buckets, objects, size / 2**20, data)
    app = PersistingApp(DomainDispatcherApplication(create_backend_app), store)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    logger.info("S3 (moto, persisted to %s) on http://%s:%d", data, host, port)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.s3server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--data", type=Path, required=True, help="folder of the store (created if missing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s - %(message)s")
    serve(args.host, args.port, args.data.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
