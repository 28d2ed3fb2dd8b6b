"""Keep a flow-run pod's stdout and stderr in S3 after the pod is gone.

A Job's pod logs vanish with the Job (``finishedJobTtl``), and Prefect keeps only what reached its
API: a crash before Prefect started, or an OOM kill, leaves nothing there. Two halves, both in the
image, both standard library (plus boto3 for ``ship``); the chart's base job template wires them:

    python -I pod_log.py tee --file /var/log/trip-duration/pod.log --await-shipper 10 -- prefect flow-run execute
        The flow-run container's command. Waits (at most 10 s) for the sidecar's sign that it is up,
        so that a command failing at once cannot end the pod before the sidecar ships it. Runs the command with stdout and stderr merged into one
        pipe and copies every byte, as it arrives, to the container's stdout (``kubectl logs``
        shows what it always showed) and to ``--file`` on an emptyDir the sidecar shares. Signals
        are passed on to the command; its exit status is returned (128+N for a signal N). A command
        that cannot start is written to the file too, with exit status 127 (or 126).

    python -I pod_log.py ship --file /var/log/trip-duration/pod.log
        A native sidecar (an init container with restartPolicy Always): every ``--every`` seconds,
        and once more when Kubernetes stops it after the flow-run container ended (completed,
        failed, OOM-killed or deleted), it uploads the file to
        ``s3://$TRIP_DURATION_BUCKET/logs/<flow>/<deployment>/<flow-run-id>.log``. It runs in its
        own cgroup: the kernel's OOM killer, which kills the whole flow-run container, spares it.
        A flow run that needed a second pod (an eviction rescheduled it) keeps both pods' logs
        under the one key, each after a ``===== pod <name>`` line.

The key's parts come from the pod's labels (downward API, set by the Prefect worker):
TRIP_DURATION_LOG_FLOW, TRIP_DURATION_LOG_DEPLOYMENT, TRIP_DURATION_LOG_FLOW_RUN_ID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
MAX_BYTES = 200 * 1024 * 1024
READY_SUFFIX = ".shipper-ready"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def note(message: str) -> bytes:
    return f"[pod_log] {message}\n".encode()


# ----------------------------------------------------------------------------------------------- tee
class Spool:
    """Append-only copy of the stream, bounded: past ``max_bytes`` one line says so and the rest is
    only on stdout. A failing disk never stops the stream to stdout."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes, self.written, self.full = max_bytes, 0, False
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            self.fd = None
            _write_all(2, note(f"cannot write {path}: {err}; this pod's log is not kept in S3"))

    def write(self, data: bytes) -> None:
        if self.fd is None or self.full:
            return
        if self.written + len(data) > self.max_bytes:
            data = data[: self.max_bytes - self.written] + b"\n" + note(
                f"the log passed {self.max_bytes} bytes: the rest is only on the pod's stdout")
            self.full = True
        try:
            _write_all(self.fd, data)
            self.written += len(data)
        except OSError as err:
            self.fd = None
            _write_all(2, note(f"stopped copying the log to the file: {err}"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BrokenPipeError:
            return


def await_shipper(ready: str, timeout: float) -> None:
    """Wait for the sidecar's sign that it handles SIGTERM: a command that fails at once must not
    end the pod before the sidecar can ship that failure."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if time.monotonic() > deadline:
            _write_all(2, note(f"no sign of the log sidecar ({ready}) after {timeout:g} s: starting anyway"))
            return
        time.sleep(0.01)


def tee(command: list[str], path: str, max_bytes: int = MAX_BYTES) -> int:
    spool = Spool(path, max_bytes)
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    except OSError as err:
        code = 126 if isinstance(err, PermissionError) else 127
        line = note(f"cannot start {command!r}: {err.strerror or err} (exit {code}): check the image "
                    "and the deployment's `command` job variable")
        spool.write(line)
        _write_all(2, line)
        return code

    def forward(signum: int, _frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)

    def pump() -> None:
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            spool.write(chunk)
            _write_all(1, chunk)

    pumping = threading.Thread(target=pump, name="pod-log-pump", daemon=True)
    pumping.start()
    code = child.wait()
    # A grandchild that kept the pipe open must not hold the pod: the output is drained for 5 s.
    pumping.join(5)
    code = 128 - code if code < 0 else code
    spool.write(note(f"{command[0]} exited with code {code}"))
    return code


# ---------------------------------------------------------------------------------------------- ship
def key_for(flow: str, deployment: str, flow_run_id: str) -> str:
    """``logs/<flow>/<deployment>/<flow-run-id>.log``, every part reduced to [A-Za-z0-9._-]."""
    if not flow_run_id:
        raise ValueError("no flow-run id: TRIP_DURATION_LOG_FLOW_RUN_ID is empty (the pod lacks the "
                         "prefect.io/flow-run-id label a Prefect worker sets)")
    parts = [_SAFE.sub("-", p).strip("-.") or "none" for p in (flow or "none", deployment or "none", flow_run_id)]
    return "logs/{}/{}/{}.log".format(*parts)


def pod_header(pod: str, started: dt.datetime) -> bytes:
    return f"===== pod {pod} started {started.isoformat(timespec='seconds')} =====\n".encode()


def earlier_pods(previous: bytes, pod: str) -> bytes:
    """What other pods of the same flow run uploaded: kept ahead of this pod's section. A restarted
    sidecar finds its own pod's section there and drops it (it uploads it again, whole)."""
    mine = f"===== pod {pod} started ".encode()
    at = previous.find(mine)
    return previous if at < 0 else previous[:at]


class Concat(io.RawIOBase):
    """Read ``head`` then the first ``size`` bytes of the file at ``path`` (a stream for upload_fileobj)."""

    def __init__(self, head: bytes, path: str | None, size: int) -> None:
        self.head, self.left = memoryview(head), size
        self.file = open(path, "rb") if path and size else None  # noqa: SIM115 - closed in close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        if not self.file or self.left <= 0:
            return 0
        n = self.file.readinto(memoryview(buffer)[: min(len(buffer), self.left)])
        self.left -= n
        return n

    def close(self) -> None:
        if self.file:
            self.file.close()
        super().close()


class Shipper:
    """Uploads the file under one key. boto3 is imported, and the earlier pods' log read, at the first
    upload (``--every`` seconds in, or when stopped): the sidecar takes no CPU from the flow run's start."""

    def __init__(self, path: str, bucket: str, key: str, pod: str) -> None:
        self.path, self.bucket, self.key, self.pod = path, bucket, key, pod
        self.header = pod_header(pod, dt.datetime.now(dt.timezone.utc))
        self.client = self.transfer = self.prefix = None
        self.shipped = -1

    def _connect(self) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.client = boto3.client("s3")
        self.transfer = TransferConfig(max_concurrency=2, multipart_chunksize=8 * 1024 * 1024)
        self.prefix = earlier_pods(self._previous(), self.pod)

    def _previous(self) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return b""
        except Exception as err:  # noqa: BLE001 - the log still ships, without the earlier pods'
            _write_all(2, note(f"could not read s3://{self.bucket}/{self.key} ({err}): an earlier pod's "
                               "log under that key would be replaced"))
            return b""

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def ship(self, final: bool = False) -> bool:
        """Upload when the file grew (always on the final call). False when S3 refused."""
        size = self.size()
        if size == self.shipped and not final:
            return True
        if self.client is None:
            try:
                self._connect()
            except Exception as err:  # noqa: BLE001 - one line, then the next attempt
                self.client = None
                _write_all(2, note(f"could not reach S3 for s3://{self.bucket}/{self.key}: {err}"))
                return False
        body = Concat(self.prefix + self.header + (b"" if size or not final else note(
            "nothing from the flow-run container: it printed nothing, or was killed first (its pod's status and the flow run's state say which)")), self.path, size)
        try:
            self.client.upload_fileobj(io.BufferedReader(body, 1024 * 1024), self.bucket, self.key,
                                       ExtraArgs={"ContentType": "text/plain; charset=utf-8"},
                                       Config=self.transfer)
        except Exception as err:  # noqa: BLE001 - one line, then the next attempt
            _write_all(2, note(f"could not upload s3://{self.bucket}/{self.key}: {err}"))
            return False
        finally:
            body.close()
        self.shipped = size
        return True


def ship_loop(shipper: Shipper, every: float, stop: threading.Event, attempts: int = 5) -> int:
    while not stop.wait(every):
        shipper.ship()
    for attempt in range(attempts):
        if shipper.ship(final=True):
            return 0
        time.sleep(min(2 ** attempt, 5))
    return 1


def ship_main(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with open(args.file + READY_SUFFIX, "w"):  # tee waits for this: SIGTERM is handled from here on
        pass
    bucket = args.bucket or os.environ.get("TRIP_DURATION_BUCKET", "")
    try:
        key = args.key or key_for(os.environ.get("TRIP_DURATION_LOG_FLOW", ""),
                                  os.environ.get("TRIP_DURATION_LOG_DEPLOYMENT", ""),
                                  os.environ.get("TRIP_DURATION_LOG_FLOW_RUN_ID", ""))
        if not bucket:
            raise ValueError("no bucket: set TRIP_DURATION_BUCKET (the chart's runtime ConfigMap) or --bucket")
    except ValueError as err:
        # A native sidecar that exits is restarted: say it once, then wait to be stopped.
        _write_all(2, note(f"not shipping this pod's log: {err}"))
        stop.wait()
        return 0
    shipper = Shipper(args.file, bucket, key, os.environ.get("HOSTNAME", "pod"))
    _write_all(2, note(f"shipping {args.file} to s3://{bucket}/{key} every {args.every:g} s and at the end"))
    return ship_loop(shipper, args.every, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pod_log.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tee", help="run a command, copying its output to stdout and to --file")
    t.add_argument("--file", required=True)
    t.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    t.add_argument("--await-shipper", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for the ship sidecar's sign (--file + .shipper-ready)")
    t.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("ship", help="upload --file to S3 every --every seconds and when stopped")
    s.add_argument("--file", required=True)
    s.add_argument("--every", type=float, default=30.0)
    s.add_argument("--bucket", default="")
    s.add_argument("--key", default="")
    args = parser.parse_args(argv)
    if args.mode == "tee":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("tee needs a command after --")
        if args.await_shipper > 0:
            await_shipper(args.file + READY_SUFFIX, args.await_shipper)
        return tee(command, args.file, args.max_bytes)
    return ship_main(args)


if __name__ == "__main__":
    sys.exit(main())
