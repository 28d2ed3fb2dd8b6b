"""What the drift check reads (trip_duration.drift; flows/inference.py): the champion's training facts from
MLflow and a validated month's profile, computed once and kept in S3."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from trip_duration import layout
from trip_duration.config import Settings
from trip_duration.drift import PROFILE_VERSION, profile
from trip_duration.errors import DataNotFoundError
from trip_duration.features import duration_minutes
from trip_duration.io import s3
from trip_duration.io.datasets import read_validated, require_ingested
from trip_duration.periods import Month


def version_facts(settings: Settings, version: int) -> dict[str, Any]:
    """The months a registered version was trained and validated on and its validation RMSE (its MLflow run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(settings.model_name, str(version)).run_id
    run = client.get_run(run_id)
    params = run.data.params
    if "train_month" not in params:
        raise DataNotFoundError(f"{settings.model_name} v{version}'s MLflow run {run_id} has no train_month "
                                "parameter: it was not registered by the training pipeline")
    return {"run_id": run_id, "train_month": params["train_month"], "valid_month": params.get("valid_month"),
            "model_rmse": run.data.metrics.get("model_rmse")}


def month_profile(bucket: str, taxi: str, month: Month) -> dict[str, Any]:
    """The profile of a validated month: read from reports/profile/ when there (and of this PROFILE_VERSION),
    else computed from validated/ and written there. A month ingested again gets a new profile: the cached
    one names the validated file's SHA-256 it was computed from."""
    outcome = require_ingested(bucket, month, taxi)
    key = layout.profile_key(taxi, month)
    try:
        cached = s3.get_json(bucket, key)
        if cached.get("version") == PROFILE_VERSION and cached.get("validated_sha256") == outcome["validated_sha256"]:
            return cached
    except DataNotFoundError:
        pass
    trips = pd.read_parquet(io.BytesIO(read_validated(bucket, month, outcome, taxi)))
    computed = {**profile(trips, duration_minutes(trips)), "validated_sha256": outcome["validated_sha256"]}
    s3.put_json(bucket, key, computed)
    return computed
