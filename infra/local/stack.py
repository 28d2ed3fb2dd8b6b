"""The embedded local stack: moto S3, MLflow and Prefect servers (and workers) on 127.0.0.1.

Everything lives under one state directory (default ``.state/``): PIDs, logs, SQLite
databases and an ``env`` file a shell can source. Used by ``make demo``/``make down``,
the integration tests and the benchmarks. Flow runs start warm by default: forked from a
server that imported the libraries once (infra/local/warmstart.py); ``--cold`` turns that off.

    python -m infra.local.stack up [--no-prefect] [--no-workers] [--cold]
    python -m infra.local.stack down
    python -m infra.local.stack env
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.progress import heartbeat

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEFAULT_DIR = ROOT / ".state"
WARMSTART = ROOT / "infra" / "local" / "warmstart.py"
POOL = "local"
#: environment variable -> Stack field, for `make demo` on a machine where a default port is taken
PORT_VARIABLES = {"STACK_S3_PORT": "s3_port", "STACK_MLFLOW_PORT": "mlflow_port", "STACK_PREFECT_PORT": "prefect_port"}
QUEUES = {"gpu": 1, "cpu": 2}  # queue -> concurrency limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """Where the servers of one stack listen and keep their state."""

    root: Path = DEFAULT_DIR
    s3_port: int = 9000
    mlflow_port: int = 5000
    prefect_port: int = 4200
    bucket: str = "trip-duration"
    #: S3 endpoint clients use; tests may point it at a fault-injecting proxy.
    s3_endpoint: str | None = None
    #: S3 endpoint the MLflow server writes artifacts to; tests may point it at another proxy.
    mlflow_s3_endpoint: str | None = None
    #: Flow runs forked from a preloaded warm-start server (infra/local/warmstart.py); False: cold.
    warm_start: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def s3_url(self) -> str:
        return self.s3_endpoint or f"http://127.0.0.1:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    def env(self) -> dict[str, str]:
        """What a client of this stack needs. The keys are moto's dummy ones, never real secrets."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "TRIP_DURATION_BUCKET": self.bucket,
            "TRIP_DURATION_SOURCE_URL": "",
            "TRIP_DURATION_MODEL_CACHE_DIR": str(self.root / "model-cache"),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": f"{self.prefect_url}/api",
            "PREFECT_HOME": str(self.root / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # No usage telemetry leaves this machine (kedro-telemetry, MLflow, and others honour these).
            "DO_NOT_TRACK": "1",
            "KEDRO_DISABLE_TELEMETRY": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "kedro,trip_duration",
            "PREFECT_WORK_POOL": POOL,
            "KEDRO_LOGGING_CONFIG": str(ROOT / "conf" / "logging.yml"),
            # prefect.yaml's pull step (the image has its own copy, infra/code_pull.py, at the same variable)
            "TRIP_DURATION_CODE_PULL": f"{shlex.quote(str(VENV_BIN / 'python'))} -I "
                                       f"{shlex.quote(str(ROOT / 'infra' / 'code_pull.py'))}",
            **self.extra_env,
        }

    # --- processes ---------------------------------------------------------------
    def _paths(self, name: str) -> tuple[Path, Path]:
        (self.root / "pids").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        return self.root / "pids" / f"{name}.pid", self.root / "logs" / f"{name}.log"

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        pid_file, log_file = self._paths(name)
        if running(pid_file):
            return int(pid_file.read_text())
        full_env = {**os.environ, **self.env(), **(env or {})}
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT, start_new_session=True
            )
        pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, name: str) -> None:
        pid_file, _ = self._paths(name)
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)

    def names(self) -> list[str]:
        pids = self.root / "pids"
        return sorted(p.stem for p in pids.glob("*.pid")) if pids.exists() else []

    # --- servers -------------------------------------------------------------------
    @property
    def s3_data(self) -> Path:
        """Where the S3 server keeps buckets and objects (infra/local/s3server.py)."""
        return self.root / "s3"

    def start_s3(self) -> None:
        if not self.s3_data.exists() and (self.root / "mlflow.db").exists() and not running(self._paths("s3")[0]):
            # A state folder from before S3 persisted: its objects are gone, so the MLflow registry
            # and model cache that point into them start over once, rather than serve dangling versions.
            print(f"  {self.root} predates the persistent S3: its MLflow database pointed at objects that "
                  "are gone; starting MLflow over (Prefect's run history is kept)", flush=True)
            (self.root / "mlflow.db").unlink()
            shutil.rmtree(self.root / "model-cache", ignore_errors=True)
        self.check_port("s3", self.s3_port)
        self.spawn("s3", [str(VENV_BIN / "python"), "-m", "infra.local.s3server", "--host", "127.0.0.1",
                          "--port", str(self.s3_port), "--data", str(self.s3_data)])
        wait_http(f"http://127.0.0.1:{self.s3_port}/moto-api/", "S3 (moto)", self.root / "logs" / "s3.log")

    def create_bucket(self) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.s3_port}", **_moto_keys())
        if self.bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=self.bucket)

    def start_mlflow(self) -> None:
        db = self.root / "mlflow.db"
        self.check_port("mlflow", self.mlflow_port)
        self.spawn(
            "mlflow",
            [
                str(VENV_BIN / "mlflow"), "server",
                "--host", "127.0.0.1", "--port", str(self.mlflow_port),
                "--backend-store-uri", f"sqlite:///{db}",
                "--artifacts-destination", f"s3://{self.bucket}/mlflow",
                "--workers", "1",
            ],
            # The server writes artifacts to S3 directly, or through its own test proxy: never the clients' one.
            env=dict.fromkeys(("AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL"),
                              self.mlflow_s3_endpoint or f"http://127.0.0.1:{self.s3_port}"),
        )
        wait_http(f"{self.mlflow_url}/health", "MLflow", self.root / "logs" / "mlflow.log", timeout=120)

    def start_prefect(self) -> None:
        self.check_port("prefect", self.prefect_port)
        self.spawn(
            "prefect",
            [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)],
            env={
                "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.root / 'prefect.db'}",
                "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_UI_API_URL": f"{self.prefect_url}/api",
            },
        )
        wait_http(f"{self.prefect_url}/api/health", "Prefect", self.root / "logs" / "prefect.log", timeout=180)

    @property
    def warm_socket(self) -> Path:
        path = self.root / "warmstart.sock"
        if len(str(path)) > 100:  # AF_UNIX paths are limited to 108 bytes
            digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
            path = Path(tempfile.gettempdir()) / f"trip-duration-warm-{digest}.sock"
        return path

    def warm_command(self) -> str:
        """The process pool's default command: the warm-start client, falling back to a cold start."""
        return shlex.join([str(VENV_BIN / "python"), str(WARMSTART), "--socket", str(self.warm_socket),
                           "-m", "prefect.engine"])

    def process_template(self) -> Path:
        """Prefect's process-pool template, its default command the warm start when enabled."""
        path = self.root / "process-pool-template.json"
        # From the CLI, not by importing Prefect here: Prefect reads its settings once, on import.
        _run([str(VENV_BIN / "prefect"), "work-pool", "get-default-base-job-template", "--type", "process",
              "--file", str(path)], {**os.environ, **self.env()})
        template = json.loads(path.read_text())
        template["variables"]["properties"]["command"]["default"] = self.warm_command() if self.warm_start else None
        path.write_text(json.dumps(template, indent=2))
        return path

    def create_pool(self, pool_type: str = "process", pool: str = POOL, template: Path | None = None) -> None:
        """The work pool (with a base job template) and its gpu/cpu queues (idempotent: updates the template)."""
        prefect = str(VENV_BIN / "prefect")
        env = {**os.environ, **self.env()}
        if template is None and pool_type == "process":
            template = self.process_template()
        extra = ["--base-job-template", str(template)] if template else []
        listing = subprocess.run([prefect, "work-pool", "inspect", pool], env=env, capture_output=True)
        if listing.returncode != 0:
            _run([prefect, "work-pool", "create", pool, "--type", pool_type, *extra], env)
        elif extra:
            _run([prefect, "work-pool", "update", pool, *extra], env)
        for queue, limit in QUEUES.items():
            found = subprocess.run(
                [prefect, "work-queue", "inspect", queue, "--pool", pool], env=env, capture_output=True
            )
            if found.returncode != 0:
                _run([prefect, "work-queue", "create", queue, "--pool", pool, "--limit", str(limit)], env)
            else:
                _run([prefect, "work-queue", "set-concurrency-limit", queue, str(limit), "--pool", pool], env)

    def create_automations(self) -> None:
        """The chart's automations, from the same files: crash runs that stop sending heartbeats; and, when
        TRIP_DURATION_NOTIFY_URL is set (a webhook URL; TRIP_DURATION_PENDING_ALERT_S the Pending bound), the
        notifications (README, "Notifications")."""
        files = ROOT / "helm" / "trip-duration" / "files"
        _run([str(VENV_BIN / "python"), str(files / "automations.py"), str(files / "automations.json"),
              str(files / "notifications.json")], {**os.environ, **self.env()})

    def start_warm_server(self) -> None:
        """The warm-start server the process pool's command talks to (see infra/local/warmstart.py)."""
        pid_file, log = self._paths("warmstart")
        if not running(pid_file):
            self.warm_socket.unlink(missing_ok=True)  # left by a killed server
        self.spawn("warmstart", [str(VENV_BIN / "python"), str(WARMSTART), "serve", "--socket", str(self.warm_socket)])
        deadline = time.monotonic() + 120
        while not self.warm_socket.exists():
            if time.monotonic() > deadline or not running(pid_file):
                tail = log.read_text()[-3000:] if log.exists() else "(no log)"
                raise RuntimeError(f"the warm-start server did not start; last log lines:\n{tail}")
            time.sleep(0.2)

    def start_workers(self, pool: str = POOL) -> None:
        """One process worker per queue, polling twice a second so a run starts within a second."""
        if self.warm_start:
            self.start_warm_server()
        for queue in QUEUES:
            self.spawn(
                f"worker-{queue}",
                [str(VENV_BIN / "prefect"), "worker", "start", "--pool", pool, "--work-queue", queue,
                 "--name", f"local-{queue}", "--type", "process"],
                env={"PREFECT_WORKER_QUERY_SECONDS": "0.5", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                     "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
            )

    def up(self, prefect: bool = True, workers: bool = True) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_s3()
        self.create_bucket()
        self.start_mlflow()
        if prefect:
            self.start_prefect()
            with heartbeat(f"creating work pool {POOL!r} and its queues ({', '.join(QUEUES)})"):
                self.create_pool()
                self.create_automations()
            if workers:
                with heartbeat("starting the warm-start server (it imports the libraries once) and the workers"):
                    self.start_workers()
        self.save()

    def down(self) -> None:
        for name in sorted(self.names(), key=lambda n: (not n.startswith("worker"), n != "s3")):
            self.stop(name)

    def save(self) -> None:
        (self.root / "stack.json").write_text(json.dumps(asdict(self), default=str, indent=2))
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        # The project's commands (prefect, mlflow, kedro, trip-duration, aws) first on PATH, once.
        venv = shlex.quote(str(VENV_BIN))
        lines.append(f'case ":$PATH:" in *:{venv}:*) ;; *) export PATH={venv}:"$PATH" ;; esac')
        (self.root / "env").write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, root: Path = DEFAULT_DIR) -> Stack:
        data = json.loads((root / "stack.json").read_text())
        data["root"] = Path(data["root"])
        return cls(**data)

    @classmethod
    def for_user(cls, root: Path) -> Stack:
        """The stack `make demo` and `python -m infra.local.stack up` use: the saved one, else the
        defaults; STACK_S3_PORT, STACK_MLFLOW_PORT and STACK_PREFECT_PORT move a server off a port
        another program holds (before it starts: a running server keeps its port until `make down`)."""
        stack = cls.load(root) if (root / "stack.json").exists() else cls(root=root)
        for name, field_name in PORT_VARIABLES.items():
            value = os.environ.get(name)
            if not value:
                continue
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise RuntimeError(f"{name}={value!r} is not a port number: use e.g. {name}=9100")
            server = field_name.removesuffix("_port")
            if int(value) != getattr(stack, field_name) and running(stack._paths(server)[0]):
                raise RuntimeError(f"the stack's {server} server is running on port {getattr(stack, field_name)}: "
                                   f"run make down before moving it to {name}={value}")
            setattr(stack, field_name, int(value))
        return stack

    def check_port(self, name: str, port: int) -> None:
        """Fail with the fix when another program holds ``port`` (this stack's server would not start)."""
        if running(self._paths(name)[0]):
            return
        with socket.socket() as sock:
            # as the servers do: a port whose last connections linger in TIME_WAIT is free to listen on
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                variable = next(k for k, v in PORT_VARIABLES.items() if v == f"{name}_port")
                raise RuntimeError(
                    f"port {port} on 127.0.0.1 is in use by another program, so the stack's {name} server cannot "
                    f"start: stop that program, or choose another port, e.g. {variable}={port + 100} make demo"
                ) from None


def _moto_keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def running(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False
    try:  # a killed child its parent has not reaped yet (a zombie) answers kill(0) but is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_http(url: str, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with heartbeat(f"waiting for {what} to answer at {url}"):
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status < 500:
                        return
            except OSError:
                time.sleep(0.5)
    tail = log.read_text()[-3000:] if log.exists() else "(no log)"
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f}s; last log lines:\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.stack")
    parser.add_argument("command", choices=["up", "down", "env", "reset"])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("STACK_DIR", DEFAULT_DIR)))
    parser.add_argument("--no-prefect", action="store_true")
    parser.add_argument("--no-workers", action="store_true")
    parser.add_argument("--cold", action="store_true", help="no warm-start server: each run a fresh interpreter")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.command == "up":
        stack = Stack.for_user(root)
        stack.warm_start = not args.cold
        stack.up(prefect=not args.no_prefect, workers=not args.no_workers)
        print(f"stack up: S3 {stack.s3_url}  MLflow {stack.mlflow_url}  Prefect {stack.prefect_url}")
    elif args.command == "down":
        if (root / "stack.json").exists():
            Stack.load(root).down()
        print(f"stack down ({root})")
    elif args.command == "reset":
        if (root / "stack.json").exists():
            Stack.load(root).down()
        shutil.rmtree(root, ignore_errors=True)
        print(f"removed {root}")
    else:
        print((root / "env").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
