"""MLflow: training runs, one registered model per taxi type (``trip-duration-yellow``, ``trip-duration-green``)
and its ``champion`` alias, so one type never gates the other.

The tracking server proxies artifacts to S3 (``--artifacts-destination s3://.../mlflow``),
so clients need only ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from trip_duration.config import Settings, get_settings
from trip_duration.errors import NoChampionError, UntrustedModelError
from trip_duration.models import Champion, TripDurationModel
from trip_duration.resources import disk_full_is_said, require_room
from trip_duration.schema import DEFAULT_TAXI, parse_taxi

logger = logging.getLogger(__name__)


class TripDurationPyfunc(mlflow.pyfunc.PythonModel):
    """Serves raw TLC trip columns -> predicted minutes, for any MLflow consumer."""

    def __init__(self, model: TripDurationModel):
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> Any:
        return self.model.predict(model_input)


#: MLflow 3's UI opens an experiment on this kind's view: model training (runs, metrics), not GenAI traces.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def _client() -> MlflowClient:
    return MlflowClient()


def champion_version(settings: Settings) -> int | None:
    """The version the champion alias points at, or None when there is no champion yet."""
    try:
        found = _client().get_model_version_by_alias(settings.model_name, settings.champion_alias)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        if err.error_code == "PERMISSION_DENIED":
            # MLflow's auth answers 403, not 404, for a registered model that does not exist yet
            user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(anonymous)")
            raise NoChampionError(
                f"MLflow refused user {user!r} the registered model {settings.model_name!r} (403): it does not exist "
                "yet (run the training deployment first) or this user may not read it (MLFLOW_TRACKING_USERNAME/"
                "PASSWORD: the chart's `reader` or `trainer`)") from err
        raise
    return int(found.version)


def ensure_registered_model(settings: Settings) -> None:
    """Create the registered model if missing (training): then its alias can be read under MLflow's auth."""
    try:
        _client().create_registered_model(settings.model_name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


#: Version tags the training flow writes and inference checks. Under the chart's MLflow auth only the
#: `trainer` identity (and admin) can set tags on a version of the registered model.
REGISTERED_BY_TAG, REGISTERED_BY = "trip_duration.registered_by", "training-flow"
DIGEST_TAG = "trip_duration.model_sha256"


def model_digest(model_dir: Path) -> str:
    """SHA-256 over a model folder's files (relative path and bytes, sorted; bytecode left out)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
            continue
        digest.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def verify_version(settings: Settings, version: int, model_dir: Path, tags: dict[str, str] | None = None) -> None:
    """Refuse a version the training flow did not register, or whose files differ from what it registered."""
    if tags is None:
        tags = _client().get_model_version(settings.model_name, str(version)).tags or {}
    fix = (f"run the training deployment (prefect deployment run training/train) to register a version, "
           f"or point @{settings.champion_alias} back at one it registered")
    if tags.get(REGISTERED_BY_TAG) != REGISTERED_BY:
        raise UntrustedModelError(
            f"{settings.model_name} v{version} was not registered by the training flow (version tag "
            f"{REGISTERED_BY_TAG}={tags.get(REGISTERED_BY_TAG)!r}, expected {REGISTERED_BY!r}): refusing to load it; {fix}")
    actual = model_digest(model_dir)
    if tags.get(DIGEST_TAG) != actual:
        raise UntrustedModelError(
            f"{settings.model_name} v{version}: its files (SHA-256 {actual[:12]}...) are not the ones the training "
            f"flow registered ({DIGEST_TAG}={str(tags.get(DIGEST_TAG))[:12]}...): refusing to load it; {fix}")


_CACHE_FIX = ("free space there, or point TRIP_DURATION_MODEL_CACHE_DIR at a volume with room (the chart: "
              "flowRun.sizeLimits.cache)")
_SCRATCH_FIX = ("free space in the temporary folder, or point TMPDIR at a volume with room (the chart: "
                "flowRun.sizeLimits.tmp)")


def _scratch_full_is_said(what: str):
    """ENOSPC in the temporary folder (where MLflow stages a model) as one line naming TMPDIR."""
    return disk_full_is_said(what, Path(tempfile.gettempdir()), _SCRATCH_FIX)


_memo: dict[tuple[str, int, str], TripDurationModel] = {}
_memo_lock = threading.Lock()


def _artifact_bytes(uri: str) -> int:
    """Total size of the files under an artifact URI (what a download will write)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo, total, folders = get_artifact_repository(uri), 0, [None]
    while folders:
        for info in repo.list_artifacts(folders.pop()):
            if info.is_dir:
                folders.append(info.path)
            else:
                total += info.file_size or 0
    return total


def load_version(settings: Settings, version: int) -> TripDurationModel:
    """Load a registry version, cached in-process and on disk under ``model_cache_dir/<name>/<version>-<run id>``.

    The cache key is the version's MLflow run id, not its number alone: a cache that outlives its
    MLflow database (a new server, a restored backup) would otherwise serve another "v1".
    """
    found = _client().get_model_version(settings.model_name, str(version))
    run_id = found.run_id or f"created{found.creation_timestamp}"
    memo_key = (settings.model_name, version, run_id)
    with _memo_lock:
        if memo_key in _memo:
            return _memo[memo_key]
        target = Path(settings.model_cache_dir) / settings.model_name / f"{version}-{run_id}"
        if not (target / "MLmodel").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            what, uri = f"{settings.model_name} v{version}", f"models:/{settings.model_name}/{version}"
            require_room(what, target.parent, _artifact_bytes(uri), _CACHE_FIX)
            with disk_full_is_said(f"downloading {what}", target.parent, _CACHE_FIX):
                staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-"))
                try:
                    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
                    if target.exists():
                        shutil.rmtree(target)
                    os.replace(staging, target)  # a half-downloaded model is never seen as cached
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
            logger.info("downloaded %s v%s (run %s) to %s", settings.model_name, version, run_id, target)
        else:
            logger.info("using cached %s v%s (run %s) from %s", settings.model_name, version, run_id, target)
        # before anything is unpickled: only what the training flow registered, byte for byte
        verify_version(settings, version, target, tags=found.tags or {})
        # MLflow's own check compares all ~200 locked requirements (1.2 s a load); the pickled
        # model depends on a handful, checked below.
        _warn_on_version_drift(target)
        model = mlflow.pyfunc.load_model(str(target), suppress_warnings=True).unwrap_python_model().model
        _memo[memo_key] = model
        return model


#: What the pickled model (booster + pandas/numpy state) needs to load and score the same.
MODEL_RUNTIME_PACKAGES = ("xgboost", "numpy", "pandas")
#: What a consumer of a logged model installs (its requirements.txt): the packages the pickled model
#: imports, pinned to the versions it was trained with. Given explicitly, MLflow skips its inference
#: (a subprocess that imports the model: ~6 s of every registration here, 14-19 s on a busy node).
MODEL_REQUIREMENTS = ("mlflow", "cloudpickle", "numpy", "pandas", "pyarrow", "scikit-learn", "xgboost")


def model_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


@contextmanager
def _without_uv_project_files() -> Iterator[None]:
    """MLflow copies the project's uv.lock (1.2 MB) and pyproject.toml into every model version when
    it runs in a uv project; the version's requirements.txt already says what the model needs."""
    saved = os.environ.get("MLFLOW_LOG_UV_FILES")
    os.environ["MLFLOW_LOG_UV_FILES"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_LOG_UV_FILES", None)
        else:
            os.environ["MLFLOW_LOG_UV_FILES"] = saved


@contextmanager
def _project_code() -> Iterator[Path]:
    """A copy of the ``trip_duration`` package without bytecode, for ``code_paths``."""
    import trip_duration

    package = Path(trip_duration.__file__).parent
    with tempfile.TemporaryDirectory(prefix="model-code-") as tmp:
        target = Path(tmp) / "trip_duration"
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        yield target


def _warn_on_version_drift(model_dir: Path) -> list[str]:
    """Warn (and return the lines) when the model was logged with other versions of the
    packages it needs than those installed here."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    drift = []
    requirements = model_dir / "requirements.txt"
    lines = requirements.read_text().splitlines() if requirements.exists() else []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name not in MODEL_RUNTIME_PACKAGES or (req.marker and not req.marker.evaluate()):
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            installed = "not installed"
        if not req.specifier.contains(installed, prereleases=True):
            drift.append(f"{req.name}: model logged with {req.specifier}, installed {installed}")
    for message in drift:
        logger.warning("model %s: %s (rebuild the image from the lock the model was trained with)",
                       model_dir, message)
    return drift


class ChampionModelDataset(AbstractDataset):
    """Loads the model behind the champion alias: resolved to a version once per load.

    ``required=False`` (training) loads ``Champion(None, None)`` when there is none yet;
    ``required=True`` (inference) raises a clear error instead.
    """

    def __init__(self, required: bool = True, taxi: str = DEFAULT_TAXI):
        self.required, self.taxi = required, taxi

    def load(self) -> Champion:
        settings = get_settings().for_taxi(parse_taxi(self.taxi))
        if not self.required:  # training: the model it will register under
            ensure_registered_model(settings)
        version = champion_version(settings)
        if version is None:
            if self.required:
                raise NoChampionError(
                    f"registered model {settings.model_name!r} has no {settings.champion_alias!r} alias yet: "
                    "run the training deployment first"
                )
            return Champion(version=None, model=None)
        return Champion(version=version, model=load_version(settings, version))

    def save(self, data: Any) -> None:
        raise DatasetError("the champion alias is moved by the promotion gate only")

    def _describe(self) -> dict[str, Any]:
        return {"required": self.required, "taxi": self.taxi}


#: One training run (the Prefect flow run, or one pipeline run outside Prefect) registers one version,
#: tagged with this key: a retried registration finds it again instead of registering a second one.
TRAINING_RUN_TAG = "trip_duration.training_run"


def training_run_key(fallback: str) -> str:
    """The Prefect flow run's id when running under Prefect (task and flow retries keep it), else ``fallback``."""
    flow_run = os.environ.get("PREFECT__FLOW_RUN_ID")
    return f"prefect-flow-run:{flow_run}" if flow_run else fallback


@dataclass(frozen=True)
class Registration:
    run_id: str
    experiment_id: str
    version: int
    training_run: str
    reused: bool  # True: an earlier attempt of this training run had registered it
    taxi: str = DEFAULT_TAXI  # whose registered model (<prefix>-<taxi>) the version belongs to


@dataclass(frozen=True)
class Promotion:
    version: int
    promoted: bool
    champion_version: int | None  # where the alias points after the gate
    reason: str


def _version_of_training_run(settings: Settings, key: str, model_rmse: float) -> Any | None:
    """The version an earlier attempt of this training run registered, if it holds the same model."""
    found = _client().search_model_versions(
        f"name = '{settings.model_name}' and tags.`{TRAINING_RUN_TAG}` = '{key}'")
    if not found:
        return None
    found = sorted(found, key=lambda v: int(v.version))
    if len(found) > 1:
        logger.warning("training run %s has %d versions (%s): using the first", key, len(found),
                       ", ".join(f"v{v.version}" for v in found))
    version = found[0]
    logged = _client().get_run(version.run_id).data.metrics.get("model_rmse") if version.run_id else None
    if logged is None or abs(logged - model_rmse) > 1e-9 * max(1.0, abs(model_rmse)):
        logger.warning("training run %s registered v%s with model RMSE %s; this attempt trained another model "
                       "(RMSE %.6f): registering it as a new version", key, version.version, logged, model_rmse)
        return None
    return version


class ModelRegistryDataset(AbstractDataset):
    """Saving a candidate logs an MLflow run and registers one version for this training run.

    Idempotent: a retry (of the task or of the flow) finds the version its training run already
    registered (version tag ``trip_duration.training_run``) and completes what is missing, instead
    of registering a second one. The champion alias is moved by the gate node, not here
    (:func:`apply_promotion`). Loading returns the :class:`Registration` of the last save in this process.
    """

    def __init__(self, taxi: str = DEFAULT_TAXI) -> None:
        self.taxi = taxi
        self._last: Registration | None = None
        self._fallback_key = f"pipeline-run:{uuid.uuid4()}"

    def save(self, candidate: dict) -> None:
        taxi = parse_taxi(self.taxi)
        settings = get_settings().for_taxi(taxi)
        key = training_run_key(self._fallback_key)
        existing = _version_of_training_run(settings, key, candidate["metrics"]["model_rmse"])
        if existing is not None:
            run = _client().get_run(existing.run_id)
            version, run_id, experiment_id = int(existing.version), existing.run_id, run.info.experiment_id
            tags = existing.tags or {}
            logger.info("%s v%d was already registered by this training run (%s): not registering another",
                        settings.model_name, version, key)
        else:
            with _scratch_full_is_said("logging the model"):
                version, run_id, experiment_id = self._register(settings, candidate, key)
            tags = {}
        client = _client()
        if DIGEST_TAG not in tags:
            # what inference checks before unpickling (verify_version), set before the gate can move the alias
            with (_scratch_full_is_said(f"checking v{version}'s files"),
                  tempfile.TemporaryDirectory(prefix="registered-") as tmp):
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{settings.model_name}/{version}", dst_path=tmp)
                client.set_model_version_tag(settings.model_name, str(version), DIGEST_TAG, model_digest(Path(local)))
        if tags.get(REGISTERED_BY_TAG) != REGISTERED_BY:
            client.set_model_version_tag(settings.model_name, str(version), REGISTERED_BY_TAG, REGISTERED_BY)
        logger.info("registered %s v%d (MLflow run %s, training run %s)", settings.model_name, version, run_id, key)
        self._last = Registration(run_id, experiment_id, version, key, reused=existing is not None, taxi=taxi)

    @staticmethod
    def _register(settings: Settings, candidate: dict, key: str) -> tuple[int, str, str]:
        experiment = mlflow.set_experiment(settings.experiment)
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            _client().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        _end_orphan_runs(experiment.experiment_id)
        # a failure inside this block ends the MLflow run as FAILED: no version, nothing half-registered
        with mlflow.start_run(run_name=f"train-{candidate['facts']['train_month']}") as run:
            mlflow.log_params(candidate["params"])
            mlflow.log_metrics(candidate["metrics"])
            mlflow.set_tags({f"data.{k}": v for k, v in candidate["facts"].items()})
            mlflow.set_tags({"device": candidate["device"], "decision": candidate["decision"]["action"],
                             "taxi": candidate["facts"]["taxi"], "registered_model": settings.model_name,
                             TRAINING_RUN_TAG: key})
            if os.environ.get("PREFECT__FLOW_RUN_ID"):  # links the MLflow run to the Prefect run
                mlflow.set_tag("prefect_flow_run_id", os.environ["PREFECT__FLOW_RUN_ID"])
            example = candidate["input_example"]
            model = candidate["model"]
            with _without_uv_project_files(), _project_code() as code:
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=TripDurationPyfunc(model),
                    signature=infer_signature(example, model.predict(example)),
                    input_example=example,
                    pip_requirements=model_requirements(),
                    # self-contained: the package the pickle refers to travels with it
                    code_paths=[str(code)],
                )
            # the version is created with its training-run tag in one call: a retry always finds it
            registered = mlflow.register_model(info.model_uri, settings.model_name, tags={TRAINING_RUN_TAG: key})
        return int(registered.version), run.info.run_id, run.info.experiment_id

    def load(self) -> Registration:
        if self._last is None:
            raise DatasetError("no model was registered in this run yet")
        return self._last

    def _describe(self) -> dict[str, Any]:
        return {"taxi": self.taxi}


def _end_orphan_runs(experiment_id: str) -> None:
    """End as FAILED the MLflow runs a killed training left RUNNING: those whose Prefect flow run is
    over (Crashed, Failed, Cancelled: the process died inside its MLflow run) or gone. Best effort: the
    Prefect API unreachable leaves them for the next run."""
    ours = os.environ.get("PREFECT__FLOW_RUN_ID")
    orphans = [run for run in _client().search_runs([experiment_id], "attributes.status = 'RUNNING'")
               if run.data.tags.get("prefect_flow_run_id") not in (None, ours)]
    if not orphans:
        return
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as prefect:
            for run in orphans:
                flow_run = run.data.tags["prefect_flow_run_id"]
                try:
                    state = prefect.read_flow_run(UUID(flow_run)).state
                except (ObjectNotFound, ValueError):
                    state = None
                if state is not None and not state.is_final():
                    continue  # that training is still running
                _client().set_terminated(run.info.run_id, "FAILED")
                _client().set_tag(run.info.run_id, "trip_duration.ended_by", f"prefect-flow-run:{ours}")
                logger.warning("MLflow run %s was left RUNNING by flow run %s (%s): ended it as FAILED",
                               run.info.run_id, flow_run, state.name if state else "not found")
    except Exception as err:  # noqa: BLE001 - a cleanup must never fail the training that found it
        logger.warning("could not check %d RUNNING MLflow run(s) against Prefect (%s): left for the next run",
                       len(orphans), err)


def apply_promotion(registration: Registration, decision: dict) -> Promotion:
    """The gate's decision applied to the registry, idempotently and only if nothing changed.

    The alias moves only when the decision says promote AND the champion is still the version the
    candidate was compared with; a retry after the alias already moved reports the promotion
    instead of refusing it. MLflow has no compare-and-set for aliases: the champion is read again
    just before the move and just after it, so a move by someone else in between is reported, not
    hidden (training runs one at a time on the ``gpu`` queue, so only a manual move can race).
    """
    settings = get_settings().for_taxi(registration.taxi)
    name, version, alias = settings.model_name, registration.version, settings.champion_alias
    compared = decision["champion_version"]
    current = champion_version(settings)
    if current == version:
        promoted, reason = True, f"v{version} is already @{alias}: an earlier attempt of this training run promoted it"
    elif not decision["promote"]:
        promoted, reason = False, decision["reason"]
    elif current != compared:
        promoted = False
        reason = (f"champion moved from {_v(compared)} to {_v(current)} while this run was training: "
                  "not promoting a model compared against a stale champion")
    else:
        _client().set_registered_model_alias(name, alias, str(version))
        current = champion_version(settings)
        promoted = current == version
        reason = decision["reason"] if promoted else (
            f"champion moved to {_v(current)} while the alias was being set: v{version} is not champion")
    tags = {
        "promotion.decision": "promoted" if promoted else "rejected",
        "promotion.reason": reason,
        # when promoted, the version it replaced: where to point the alias back to undo it
        "promotion.compared_to": str(compared or "none"),
        "promotion.candidate_rmse": f"{decision['candidate_rmse']:.6f}",
        "promotion.champion_rmse": str(decision.get("champion_rmse")),
    }
    for key, value in tags.items():
        _client().set_model_version_tag(name, str(version), key, value)
    logger.info("%s v%d: %s (%s)", name, version, tags["promotion.decision"], reason)
    return Promotion(version, promoted, current, reason)


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"
