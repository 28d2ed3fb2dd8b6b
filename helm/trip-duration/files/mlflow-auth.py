"""Start-up of the chart's MLflow behind its basic-auth app (run before `mlflow server --app-name basic-auth`).

1. Writes the auth config (database URI included) to a 0600 file on the pod's /tmp: the database
   password comes from the environment (a secretKeyRef), never from a process's argv.
2. Brings the auth tables up to date and makes the users match the Secret, every start (so a
   rotated Secret takes effect on the next restart): `admin` (admin), `trainer` (train flow runs)
   and `reader` (infer flow runs).
3. Gives `trainer` MANAGE on the registered models, one per taxi type (`trip-duration-yellow`,
   `trip-duration-green`), whoever creates them: with default_permission READ, only `trainer` (and
   admin) can register versions and move the champion alias.
"""

import configparser
import os
import sys

config_path = os.environ["MLFLOW_AUTH_CONFIG_PATH"]
database_uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
model_prefix = os.environ.get("TRIP_DURATION_MODEL_NAME", "trip-duration")
model_names = [f"{model_prefix}-{taxi}" for taxi in ("yellow", "green")]  # trip_duration.schema.TAXI_TYPES
users = {
    "admin": (os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"], True),
    "trainer": (os.environ["TRIP_DURATION_TRAINER_PASSWORD"], False),
    "reader": (os.environ["TRIP_DURATION_READER_PASSWORD"], False),
}
#: The flow-run identities are machine tokens, checked on every request (a model download makes ~40):
#: their stored hash is a fast salted PBKDF2 instead of MLflow's default scrypt (~0.14 s a check).
#: A slow hash protects a guessable password; a random token of >= 24 characters is not guessable
#: however it is hashed, so these must be that long. `admin`, a person's password, keeps scrypt.
SERVICE_USERS, SERVICE_MIN_LENGTH, SERVICE_HASH = ("trainer", "reader"), 24, "pbkdf2:sha256:1000"
for name, (password, _) in users.items():
    minimum = SERVICE_MIN_LENGTH if name in SERVICE_USERS else 12
    if len(password) < minimum:
        hint = " (a random token: openssl rand -hex 24)" if name in SERVICE_USERS else ""
        sys.exit(f"mlflow auth: the {name} password in the Secret is shorter than {minimum} characters; "
                 f"set key {name}-password to a longer one{hint} (or delete the generated Secret to get new ones)")

cache_ttl = os.environ.get("TRIP_DURATION_AUTH_CACHE_TTL_SECONDS", "0")
if not cache_ttl.isdigit():
    sys.exit(f"mlflow auth: mlflow.auth.cacheTtlSeconds must be a whole number of seconds >= 0, not {cache_ttl!r}")

settings = {
    "default_permission": "READ",
    "database_uri": database_uri,
    "admin_username": "admin",
    "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    # every request is authenticated, and one scrypt check costs ~0.14 s: a model download makes ~45
    "auth_cache_ttl_seconds": cache_ttl,
}
config = configparser.RawConfigParser()
# MLflow reads the file with ConfigParser's interpolation: a literal % (URL-encoded password) is doubled
config["mlflow"] = {key: value.replace("%", "%%") for key, value in settings.items()}
os.makedirs(os.path.dirname(config_path), exist_ok=True)
with os.fdopen(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
    config.write(out)

# imported only now: importing MLflow's auth package reads the config file written above
from mlflow.server.auth.db.models import SqlUser  # noqa: E402
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

store = SqlAlchemyStore()
store.init_db(database_uri)


def _stored_hash(name: str) -> str:
    with store.ManagedSessionMaker() as session:
        return session.query(SqlUser).filter(SqlUser.username == name).one().password_hash


def _set_fast_hash(name: str, password: str) -> None:
    with store.ManagedSessionMaker(read_only=False) as session:
        user = session.query(SqlUser).filter(SqlUser.username == name).one()
        user.password_hash = generate_password_hash(password, method=SERVICE_HASH)


for name, (password, is_admin) in users.items():
    if not store.has_user(name):
        store.create_user(name, password, is_admin=is_admin)
        print(f"mlflow auth: created user {name}", flush=True)
    elif not store.authenticate_user(name, password):
        store.update_user(name, password=password)
        print(f"mlflow auth: password of {name} set from the Secret", flush=True)
    if name in SERVICE_USERS and not _stored_hash(name).startswith(SERVICE_HASH + "$"):
        _set_fast_hash(name, password)
    if store.get_user(name).is_admin != is_admin:
        store.update_user(name, is_admin=is_admin)
for model_name in model_names:
    store.grant_user_permission("trainer", "registered_model", model_name, "MANAGE")
print(f"mlflow auth: users admin, trainer, reader in place; trainer manages registered models {model_names}", flush=True)
