"""What MLflow's authentication costs `infer`: the champion's download and checks, with and without it.

    python -m bench.auth_bench [--runs 5]

One moto S3 and three MLflow servers on 127.0.0.1, each started as the chart starts MLflow
(`--workers 2`, artifacts served through MLflow from S3), alternating within each round:

- ``no_auth`` (the baseline): plain `mlflow server`, as before the security issue;
- ``auth_first_cut``: the basic-auth app as the chart first shipped it: no credential cache and
  MLflow's default scrypt hash for every user, so every request pays a scrypt check;
- ``auth`` (the chart's default now): files/mlflow-auth.py as the chart runs it, `cacheTtlSeconds`
  300 and the fast salted hash for the flow-run tokens (`trainer`, `reader`).

Each server holds the same registered version: a model logged like the training flow logs it
(`code_paths` with the trip_duration package: ~45 files) and tagged as the training flow tags it. A
sample is what an `infer` pod does first, in a fresh process with an empty model cache (as in a
fresh pod): resolve `@champion`, download the version, check its tags and digest, unpickle it
(`registry.ChampionModelDataset(required=True).load()`), as the `reader` identity where auth is on.
The MLflow servers are restarted before every sample, so the auth cache starts cold as it does for
a daily run (the worst case for the cache).

build/bench/auth.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.local.stack import ROOT, VENV_BIN, Stack, free_port, wait_http

OUT = ROOT / "build" / "bench"
AUTH_SETUP = ROOT / "helm" / "trip-duration" / "files" / "mlflow-auth.py"
PASSWORDS = {"admin": "bench-admin-password-0", "trainer": "bench-trainer-token-0123456789abcdef",
             "reader": "bench-reader-token-0123456789abcdef"}
VARIANTS = {"no_auth": None, "auth_first_cut": "0", "auth": "300"}
MODEL = "trip-duration"

LOAD = """
import json, os, sys, time
t0 = time.perf_counter()
from trip_duration.io.registry import ChampionModelDataset
t1 = time.perf_counter()
champion = ChampionModelDataset(required=True).load()
t2 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "model_load": t2 - t1, "version": champion.version}))
"""

REGISTER = """
import os, sys, tempfile
from pathlib import Path
import mlflow
from trip_duration.io import registry

class Tiny:  # stands in for the booster: the bench measures requests, not unpickling XGBoost
    pass

mlflow.set_experiment("auth-bench")  # its creator may write to it (the default experiment is READ)
with registry._without_uv_project_files(), registry._project_code() as code:
    info = mlflow.pyfunc.log_model(name="model", python_model=registry.TripDurationPyfunc(Tiny()),
                                   registered_model_name=sys.argv[1], code_paths=[str(code)],
                                   pip_requirements=["mlflow"])
version = str(info.registered_model_version)
client = mlflow.MlflowClient()
with tempfile.TemporaryDirectory() as tmp:
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{sys.argv[1]}/{version}", dst_path=tmp)
    files = sum(1 for p in Path(local).rglob("*") if p.is_file())
    client.set_model_version_tag(sys.argv[1], version, registry.DIGEST_TAG, registry.model_digest(Path(local)))
client.set_model_version_tag(sys.argv[1], version, registry.REGISTERED_BY_TAG, registry.REGISTERED_BY)
client.set_registered_model_alias(sys.argv[1], "champion", version)
print(files)
"""


SCRYPT_ALL = """
import sys
from mlflow.server.auth.db.models import SqlUser
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
from werkzeug.security import generate_password_hash
store = SqlAlchemyStore()
store.init_db(sys.argv[1])
with store.ManagedSessionMaker(read_only=False) as session:
    for user in session.query(SqlUser).all():
        user.password_hash = generate_password_hash(%r[user.username])
print("ok")
""" % PASSWORDS


class Server:
    """One MLflow server as the chart runs it, on its own SQLite database."""

    def __init__(self, stack: Stack, name: str, cache_ttl: str | None) -> None:
        self.stack, self.name, self.cache_ttl = stack, name, cache_ttl
        self.port = free_port()
        self.root = stack.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = f"sqlite:///{self.root / 'mlflow.db'}"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.stack.env(), "MLFLOW_TRACKING_URI": self.url,
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if self.cache_ttl is not None:
            env.update({"MLFLOW_AUTH_CONFIG_PATH": str(self.root / "basic_auth.ini"),
                        "MLFLOW_BACKEND_STORE_URI": self.db,
                        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORDS["admin"],
                        "TRIP_DURATION_TRAINER_PASSWORD": PASSWORDS["trainer"],
                        "TRIP_DURATION_READER_PASSWORD": PASSWORDS["reader"],
                        "MLFLOW_FLASK_SERVER_SECRET_KEY": "bench-flask-secret",
                        "TRIP_DURATION_AUTH_CACHE_TTL_SECONDS": self.cache_ttl,
                        "TRIP_DURATION_MODEL_NAME": MODEL})
        return env

    def client_env(self, user: str) -> dict[str, str]:
        env = {**os.environ, **self.stack.env(), "MLFLOW_TRACKING_URI": self.url}
        if self.cache_ttl is not None:
            env.update({"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": PASSWORDS[user]})
        return env

    def start(self) -> None:
        env = self.env()
        argv = [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", self.db, "--artifacts-destination", f"s3://{self.stack.bucket}/{self.name}",
                "--workers", "2"]
        if self.cache_ttl is not None:
            subprocess.run([sys.executable, str(AUTH_SETUP)], env=env, check=True, capture_output=True)
            if self.name == "auth_first_cut":  # MLflow's default hash for everyone, as before
                _python(SCRYPT_ALL, env, self.db)
            argv.append("--app-name=basic-auth")
        log = self.root / "server.log"
        self.proc = subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_http(f"{self.url}/health", f"MLflow ({self.name})", log, timeout=180)

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=60)
            self.proc = None


def _python(code: str, env: dict, *args: str) -> str:
    done = subprocess.run([str(VENV_BIN / "python"), "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="auth-bench-") as tmp:
        stack = Stack(root=Path(tmp), s3_port=free_port(), mlflow_port=free_port(), prefect_port=free_port())
        stack.root.mkdir(parents=True, exist_ok=True)
        stack.start_s3()
        stack.create_bucket()
        servers = {name: Server(stack, name, ttl) for name, ttl in VARIANTS.items()}
        files = {}
        try:
            for name, server in servers.items():  # the same version on each, registered by `trainer`
                server.start()
                files[name] = int(_python(REGISTER, server.client_env("trainer" if server.cache_ttl else "admin"), f"{MODEL}-yellow"))
                server.stop()
            samples: dict[str, list[dict]] = {name: [] for name in servers}
            for round_ in range(args.runs):
                for name, server in servers.items():
                    server.start()  # a cold auth cache, as for a daily run
                    try:
                        with tempfile.TemporaryDirectory(prefix="model-cache-") as cache:
                            env = {**server.client_env("reader"), "TRIP_DURATION_MODEL_CACHE_DIR": cache}
                            sample = json.loads(_python(LOAD, env))
                    finally:
                        server.stop()
                    samples[name].append(sample)
                    print(f"round {round_ + 1}/{args.runs} {name}: model_load {sample['model_load']:.3f}s", flush=True)
        finally:
            for server in servers.values():
                server.stop()
            stack.down()
    median = {name: statistics.median(s["model_load"] for s in rows) for name, rows in samples.items()}
    report = {
        "what": "the champion's resolve + download + tag/digest check + unpickle, in a fresh process with an empty "
                "model cache, against MLflow servers started as the chart starts them (--workers 2, artifacts "
                "served from moto S3); each server restarted before each sample (cold auth cache)",
        "runs_each": args.runs,
        "model_files": files,
        "median_model_load_s": {k: round(v, 3) for k, v in median.items()},
        "ratio_auth_over_no_auth": round(median["auth"] / median["no_auth"], 3),
        "ratio_auth_first_cut_over_no_auth": round(median["auth_first_cut"] / median["no_auth"], 3),
        "added_s_auth": round(median["auth"] - median["no_auth"], 3),
        "added_s_auth_first_cut": round(median["auth_first_cut"] - median["no_auth"], 3),
        "samples": samples,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "auth.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("model_files", "median_model_load_s", "ratio_auth_over_no_auth",
                                             "ratio_auth_first_cut_over_no_auth", "added_s_auth")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
