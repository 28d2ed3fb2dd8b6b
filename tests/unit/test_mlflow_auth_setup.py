"""The chart's MLflow start-up (helm/trip-duration/files/mlflow-auth.py) against a real auth store (SQLite)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "helm" / "trip-duration" / "files" / "mlflow-auth.py"


def _run(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini"),
           "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow-db.sqlite",
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-1", "TRIP_DURATION_TRAINER_PASSWORD": "trainer-password-1-long-token",
           "TRIP_DURATION_READER_PASSWORD": "reader-password-1-long-token", **overrides}
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def _store(tmp_path: Path):
    code = (
        "import sys\n"
        "from mlflow.server.auth.db.models import SqlUser\n"
        "from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore\n"
        "s = SqlAlchemyStore(); s.init_db(sys.argv[1])\n"
        "for u, p in [('admin','admin-password-1'),('trainer','trainer-password-1-long-token'),\n"
        "             ('reader','reader-password-1-long-token'),('reader','rotated-password-2-long-token')]:\n"
        "    with s.ManagedSessionMaker() as session:\n"
        "        method = session.query(SqlUser).filter(SqlUser.username == u).one().password_hash.split('$')[0]\n"
        "    print(u, p, s.authenticate_user(u, p), s.get_user(u).is_admin, method)\n"
        "for taxi in ('yellow', 'green'):\n"
        "    print(f'trainer-model-{taxi}', s.get_registered_model_permission(f'trip-duration-{taxi}', 'trainer').permission)\n"
    )
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini")}
    uri = f"sqlite:///{tmp_path}/mlflow-db.sqlite"
    done = subprocess.run([sys.executable, "-c", code, uri], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_users_are_created_synced_from_the_secret_and_the_config_is_private(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "created user trainer" in first.stdout and "created user reader" in first.stdout
    config = tmp_path / "auth" / "basic_auth.ini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "default_permission = READ" in config.read_text()
    out = _store(tmp_path)
    # the person's password keeps MLflow's scrypt; the flow-run tokens get the fast hash
    assert "admin admin-password-1 True True scrypt:" in out
    assert "trainer trainer-password-1-long-token True False pbkdf2:sha256:1000" in out
    assert "reader reader-password-1-long-token True False pbkdf2:sha256:1000" in out and "trainer-model-yellow MANAGE" in out and "trainer-model-green MANAGE" in out
    # a rotated Secret takes effect at the next start, still with the fast hash
    again = _run(tmp_path, TRIP_DURATION_READER_PASSWORD="rotated-password-2-long-token")
    assert again.returncode == 0 and "password of reader set from the Secret" in again.stdout
    assert "reader rotated-password-2-long-token True False pbkdf2:sha256:1000" in _store(tmp_path)


def test_a_percent_in_the_database_uri_survives_and_short_passwords_are_refused(tmp_path):
    done = _run(tmp_path, MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path}/a%25b.sqlite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "%%25" in (tmp_path / "auth" / "basic_auth.ini").read_text()  # escaped for ConfigParser
    short = _run(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD="short")
    assert short.returncode != 0 and "the admin password in the Secret is shorter than 12 characters" in short.stderr
    token = _run(tmp_path, TRIP_DURATION_TRAINER_PASSWORD="only-20-characters-x")
    assert token.returncode != 0
    assert "the trainer password in the Secret is shorter than 24 characters" in token.stderr
    assert "openssl rand -hex 24" in token.stderr


def test_the_credential_cache_reaches_mlflows_auth_config_and_a_bad_ttl_is_refused(tmp_path):
    """mlflow.auth.cacheTtlSeconds: without the cache every request pays a ~0.14 s scrypt check."""
    done = _run(tmp_path, TRIP_DURATION_AUTH_CACHE_TTL_SECONDS="300")
    assert done.returncode == 0, done.stderr[-2000:]
    code = "from mlflow.server.auth.config import read_auth_config; print(read_auth_config().auth_cache_ttl_seconds)"
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini")}
    read = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert read.stdout.strip() == "300", read.stderr[-2000:]
    bad = _run(tmp_path, TRIP_DURATION_AUTH_CACHE_TTL_SECONDS="5m")
    assert bad.returncode != 0 and "mlflow.auth.cacheTtlSeconds must be a whole number of seconds >= 0, not '5m'" in bad.stderr
