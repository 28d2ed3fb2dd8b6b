"""Warm starts for process workers: each flow run forked from a parent that imported the libraries once.

A process worker starts every flow run as ``python -m prefect.engine``: a new interpreter that
imports Prefect, prefect-aws, pandas, XGBoost, MLflow... before the flow's first line, seconds
per run. The warm-start server imports those libraries once, then forks a child per run. The
worker's command is this file's client: it hands the server its argv, environment, working
directory and stdio, forwards signals to the child, and exits with the child's status, so the
worker (logs, cancellation, crash detection) sees an ordinary process.

The child runs exactly what the command names (``-m prefect.engine``), in the run's own
environment and directory, then exits through normal interpreter shutdown (atexit handlers
flush Prefect's logs). Project code is never preloaded: each run pulls its own from S3.
What a preloaded library configured on import (Prefect's settings and logging) is configured
again in the child from the run's environment; libraries that read files the run pulls on
import (``kedro.framework``: its logging config) are not preloaded.

    python infra/local/warmstart.py serve --socket PATH [--preload mod1,mod2]
    python infra/local/warmstart.py --socket PATH -m prefect.engine     # the worker's command

When the server is not there the client runs the same command cold (``exec``), so a run
never fails for want of a warm start. Restart the server after changing the environment
(``make down``): children run the libraries the server imported.

The client's imports are the standard library only: it starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

DEFAULT_PRELOAD = (
    "prefect",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps.core",
    "prefect.artifacts",
    "prefect.utilities.visualization",  # imported by every task call
    "prefect_aws",
    "prefect_aws.deployments.steps",
    "boto3",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "sklearn",
    "xgboost",
    "mlflow",
    "mlflow.pyfunc",
    "pandera.pandas",
    "pydantic_settings",
    "omegaconf",
    "dynaconf",
    "kedro.config",
    "kedro.io",
    "kedro.pipeline",
)  # not kedro.framework: it reads the logging config its run pulls (KEDRO_LOGGING_CONFIG) on import
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!I")


# --- client -------------------------------------------------------------------------------------


def _cold(command: list[str], why: str) -> None:
    print(f"warm start unavailable ({why}); starting cold: python {' '.join(command)}", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, *command])


def client(socket_path: str, command: list[str]) -> int:
    """Run ``command`` (``python`` argv without the interpreter) in a child of the server."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
        payload = json.dumps({"argv": command, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(sock, [HEADER.pack(len(payload))], [0, 1, 2])
        sock.sendall(payload)
        replies = sock.makefile("r", encoding="utf-8")
        first = replies.readline().split(maxsplit=1)
    except OSError as err:
        sock.close()
        _cold(command, f"{socket_path}: {err.strerror or err}")
        return 1  # not reached: exec
    if not first or first[0] != "pid":
        sock.close()
        _cold(command, f"server answered {' '.join(first) or 'nothing'}")
        return 1
    pid = int(first[1])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(pid, signum)  # the child leads its own process group
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    last = replies.readline().split()
    if len(last) != 2 or last[0] != "exit":
        print(f"warm start: lost the server while pid {pid} ran; killing it", file=sys.stderr, flush=True)
        forward(signal.SIGKILL, None)
        return 1
    code = int(last[1])
    if code < 0:  # the child died of a signal: so does this process, for the worker to see it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


# --- server -------------------------------------------------------------------------------------


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 16))
        if not chunk:
            raise ConnectionError("client closed the connection mid-request")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _warm_caches() -> None:
    """Fill the per-process caches every run would otherwise fill again (no I/O, no network)."""
    import inspect

    # Kedro's settings loader (dynaconf) calls inspect.stack(), which maps every loaded module
    # to its file on first use.
    inspect.stack()
    if "boto3" in sys.modules:
        # botocore parses and compiles the S3 service model and endpoint rules on the first client
        # (~0.3 s; later ones ~0.07 s). Explicit dummy keys: no credential lookup, no request.
        import boto3

        boto3.session.Session(
            aws_access_key_id="warm-up", aws_secret_access_key="warm-up", region_name="us-east-1"
        ).client("s3")


class Server:
    """A single-threaded fork server: ``serve()`` returns only in a forked child, with its request."""

    def __init__(self, socket_path: str, preload: list[str]):
        self.socket_path = socket_path
        self.preload = preload
        self.pid = os.getpid()
        self.children: dict[int, socket.socket] = {}
        self.stopping = False

    def _preload(self) -> None:
        import importlib
        import threading
        import time

        started = time.perf_counter()
        loaded = []
        for name in self.preload:
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception as err:  # noqa: BLE001 - a missing optional library only costs its warm start
                print(f"warm start server: not preloading {name}: {type(err).__name__}: {err}", flush=True)
        _warm_caches()
        if threading.active_count() != 1:
            raise RuntimeError(f"preloading started Python threads {threading.enumerate()}: forking is unsafe")
        print(f"warm start server: preloaded {len(loaded)} modules in {time.perf_counter() - started:.1f} s",
              flush=True)

    def serve(self) -> dict | None:
        import selectors

        self._preload()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is the owner's only: it runs code as them
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        listener.listen(64)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        print(f"warm start server: pid {self.pid} listening on {self.socket_path}", flush=True)
        try:
            while not self.stopping:
                for key, _ in selector.select(timeout=0.2):
                    if key.fileobj is listener:
                        conn, _ = listener.accept()
                        request = self._accept(conn, listener, selector)
                        if request is not None:
                            return request  # in the child
                    else:
                        self._client_event(key.fileobj, selector)
                self._reap(selector)
        finally:
            if os.getpid() == self.pid:
                for pid in list(self.children):
                    _kill_group(pid, signal.SIGTERM)
                listener.close()
                if os.path.exists(self.socket_path):
                    os.unlink(self.socket_path)
        return None

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _accept(self, conn: socket.socket, listener: socket.socket, selector) -> dict | None:
        import selectors

        conn.settimeout(10)
        fds: list[int] = []
        try:
            header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
            if len(header) != HEADER.size or len(fds) != 3:
                raise ConnectionError(f"malformed request header ({len(header)} bytes, {len(fds)} fds)")
            request = json.loads(_recv_exact(conn, HEADER.unpack(header)[0]))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as err:  # noqa: BLE001 - one bad request must not stop the server
            print(f"warm start server: request refused: {type(err).__name__}: {err}", flush=True)
            for fd in fds:
                os.close(fd)
            _reply_and_close(conn, f"error {type(err).__name__}")
            return None
        if pid == 0:  # the child: drop every server resource, take the client's stdio
            selector.close()
            listener.close()
            conn.close()
            for other in self.children.values():
                other.close()
            for target, fd in zip((0, 1, 2), fds):
                os.dup2(fd, target)
                os.close(fd)
            return request
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        conn.sendall(f"pid {pid}\n".encode())
        self.children[pid] = conn
        selector.register(conn, selectors.EVENT_READ, pid)
        return None

    def _client_event(self, conn: socket.socket, selector) -> None:
        """A client only ever closes its end: it was killed, so is its run."""
        pid = selector.get_key(conn).data
        if conn.recv(1):
            return
        selector.unregister(conn)
        conn.close()
        if self.children.pop(pid, None) is not None:
            print(f"warm start server: client of pid {pid} went away; killing the run", flush=True)
            _kill_group(pid, signal.SIGKILL)

    def _reap(self, selector) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            selector.unregister(conn)
            _reply_and_close(conn, f"exit {os.waitstatus_to_exitcode(status)}")


def _reply_and_close(conn: socket.socket, line: str) -> None:
    """The server's last word to a client; a client already gone is not an error."""
    try:
        conn.sendall(f"{line}\n".encode())
    except OSError:
        pass
    conn.close()


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _reconfigure() -> None:
    """Redo, with the run's environment, what preloaded libraries configured on import."""
    if "prefect.context" in sys.modules:  # settings and logging, read once on `import prefect`
        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        refresh_global_settings_context()
        setup_logging(incremental=False)


def run_request(request: dict) -> None:
    """In the forked child: become the process the command would have started, then run it."""
    import runpy

    os.setsid()  # its own process group, for the client to signal it and what it starts
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = request["argv"]
    sys.path[0] = request["cwd"]  # as `python -m` and `python script` put it first
    _reconfigure()
    print(f"warm start: pid {os.getpid()} forked from server {os.getppid()} for: python {' '.join(argv)}",
          file=sys.stderr, flush=True)
    if argv[:1] == ["-m"] and len(argv) >= 2:
        sys.argv = [argv[1], *argv[2:]]
        sys.modules.pop(argv[1], None)  # imported by a preloaded module: run afresh as __main__, as cold
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        import argparse

        parser = argparse.ArgumentParser(prog="warmstart.py serve")
        parser.add_argument("--socket", required=True)
        parser.add_argument("--preload", default=",".join(DEFAULT_PRELOAD),
                            help="comma-separated modules to import once, before forking")
        args = parser.parse_args(argv[1:])
        request = Server(args.socket, [m for m in args.preload.split(",") if m]).serve()
        if request is not None:
            run_request(request)  # the child; SystemExit and errors behave as under `python -m`
        return 0
    if len(argv) >= 3 and argv[0] == "--socket":
        return client(argv[1], argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
