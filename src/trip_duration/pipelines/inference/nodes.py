"""Batch inference: score validated trips with the champion and summarise the batch."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from trip_duration.features import duration_minutes
from trip_duration.models import Champion
from trip_duration.schema import DROPOFF, PICKUP

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = [PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance"]


def score_batch(champion: Champion, batch_trips: pd.DataFrame) -> pd.DataFrame:
    """One row per trip: its keys, the predicted minutes, the actual minutes and the model version."""
    if batch_trips.empty:
        raise ValueError("the batch has no validated trips to score: check batch_month/batch_start/batch_end")
    predicted = champion.model.predict(batch_trips)
    return batch_trips[PREDICTION_COLUMNS].assign(
        predicted_duration=predicted.astype(np.float32),
        actual_duration=duration_minutes(batch_trips).to_numpy(dtype=np.float32),
        model_version=np.int64(champion.version),
    )


def summarize(predictions: pd.DataFrame) -> dict:
    """Rows, prediction statistics and the model version of the batch."""
    predicted = predictions["predicted_duration"]
    error = predicted - predictions["actual_duration"]
    summary = {
        "rows": len(predictions),
        "model_version": int(predictions["model_version"].iloc[0]),
        "pickup_min": str(predictions[PICKUP].min()),
        "pickup_max": str(predictions[PICKUP].max()),
        "prediction_mean": round(float(predicted.mean()), 4),
        "prediction_std": round(float(predicted.std()), 4),
        "prediction_p50": round(float(predicted.quantile(0.5)), 4),
        "prediction_p95": round(float(predicted.quantile(0.95)), 4),
        "rmse_vs_actual": round(float(np.sqrt(np.mean(error**2))), 4),
    }
    logger.info("scored %d trips with model v%d", summary["rows"], summary["model_version"])
    return summary
