"""Batch inference: score validated trips with the champion and summarise the batch."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from trip_duration.drift import profile
from trip_duration.features import duration_minutes
from trip_duration.models import Champion
from trip_duration.schema import DROPOFF, PICKUP

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = [PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance"]


def score_batch(champion: Champion, batch_trips: pd.DataFrame) -> pd.DataFrame:
    """One row per trip: its keys, the predicted minutes, the actual minutes and the model version."""
    if batch_trips.empty:
        # a date range without trips is a valid batch: an empty result with the full schema, said so
        logger.warning("the batch has no validated trips: writing an empty result (0 rows) with model v%d",
                       champion.version)
        empty = batch_trips[PREDICTION_COLUMNS].assign(
            predicted_duration=pd.Series(dtype=np.float32), actual_duration=pd.Series(dtype=np.float32),
            model_version=pd.Series(dtype=np.int64))
        empty.attrs["model_version"] = int(champion.version)  # no row carries it
        return empty
    predicted = champion.model.predict(batch_trips)
    return batch_trips[PREDICTION_COLUMNS].assign(
        predicted_duration=predicted.astype(np.float32),
        actual_duration=duration_minutes(batch_trips).to_numpy(dtype=np.float32),
        model_version=np.int64(champion.version),
    )


def model_version_of(predictions: pd.DataFrame) -> int:
    """The one model version that scored a batch (an empty batch carries it in ``attrs``)."""
    versions = predictions["model_version"].unique()
    if len(versions) == 0 and "model_version" in predictions.attrs:
        return int(predictions.attrs["model_version"])
    if len(versions) != 1:
        raise ValueError(f"one batch is scored by one model version, got {list(versions)}")
    return int(versions[0])


def summarize(predictions: pd.DataFrame) -> dict:
    """Rows, prediction statistics and the model version of the batch."""
    if predictions.empty:
        summary = {"rows": 0, "model_version": model_version_of(predictions), "empty": True,
                   "note": "no validated trips in this batch: the result is empty, not missing"}
        summary.update(dict.fromkeys(("pickup_min", "pickup_max", "prediction_mean", "prediction_std",
                                      "prediction_p50", "prediction_p95", "rmse_vs_actual", "profile")))
        logger.warning("scored 0 trips with model v%d: the batch is empty", summary["model_version"])
        return summary
    predicted = predictions["predicted_duration"]
    error = predicted - predictions["actual_duration"]
    summary = {
        "rows": len(predictions),
        "model_version": model_version_of(predictions),
        "pickup_min": str(predictions[PICKUP].min()),
        "pickup_max": str(predictions[PICKUP].max()),
        "prediction_mean": round(float(predicted.mean()), 4),
        "prediction_std": round(float(predicted.std()), 4),
        "prediction_p50": round(float(predicted.quantile(0.5)), 4),
        "prediction_p95": round(float(predicted.quantile(0.95)), 4),
        "rmse_vs_actual": round(float(np.sqrt(np.mean(error**2))), 4),
        # the batch's side of the drift check (flows/inference.py): counts on fixed bins, computed here and not
        # in a node of its own, which would be one more Prefect task per run (README, "Drift retrains")
        "profile": profile(predictions, predictions["actual_duration"]),
    }
    logger.info("scored %d trips with model v%d", summary["rows"], summary["model_version"])
    return summary
