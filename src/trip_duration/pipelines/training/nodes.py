"""Training: the course baseline and the XGBoost model on month M, judged on month M+1,
and the promotion gate against the current champion on the same validation data."""

from __future__ import annotations

import logging
import time

import pandas as pd

from trip_duration.features import INPUT_COLUMNS, duration_minutes
from trip_duration.models import BaselineModel, Champion, TripDurationModel, mae, resolve_device, rmse
from trip_duration.params import TrainingParams, parse
from trip_duration.schema import PICKUP

logger = logging.getLogger(__name__)


def train_baseline(train_trips: pd.DataFrame) -> BaselineModel:
    """The course baseline (DictVectorizer-equivalent one-hot of PU, DO, PU_DO + LinearRegression)."""
    return BaselineModel.fit(train_trips, duration_minutes(train_trips))


def train_model(train_trips: pd.DataFrame, params: dict) -> TripDurationModel:
    """XGBoost ``hist`` on the GPU when one is visible, else on CPU; logs which."""
    settings = parse(TrainingParams, params, "training")
    device = resolve_device(settings.device)
    logger.info("training XGBoost on %s (training.device=%s) with %d rows", device, settings.device, len(train_trips))
    started = time.perf_counter()
    model = TripDurationModel.fit(
        train_trips, duration_minutes(train_trips), settings.model.model_dump(), device
    )
    logger.info("XGBoost trained in %.1fs on %s", time.perf_counter() - started, device)
    return model


def evaluate(baseline: BaselineModel, model: TripDurationModel, valid_trips: pd.DataFrame) -> dict[str, float]:
    """RMSE and MAE of both models on the validation month."""
    actual = duration_minutes(valid_trips).to_numpy()
    base_pred, model_pred = baseline.predict(valid_trips), model.predict(valid_trips)
    metrics = {
        "baseline_rmse": rmse(actual, base_pred),
        "baseline_mae": mae(actual, base_pred),
        "model_rmse": rmse(actual, model_pred),
        "model_mae": mae(actual, model_pred),
    }
    logger.info("validation: baseline RMSE %.3f, model RMSE %.3f", metrics["baseline_rmse"], metrics["model_rmse"])
    return metrics


def score_champion(champion: Champion, valid_trips: pd.DataFrame) -> dict:
    """The current champion's RMSE on the same validation data (None values: no champion)."""
    if champion.version is None:
        return {"version": None, "rmse": None}
    actual = duration_minutes(valid_trips).to_numpy()
    score = rmse(actual, champion.model.predict(valid_trips))
    logger.info("champion v%s RMSE %.3f on the same validation data", champion.version, score)
    return {"version": champion.version, "rmse": score}


def decide_promotion(metrics: dict[str, float], champion_score: dict, params: dict) -> dict:
    """Promote only a candidate that beats the champion by ``training.promotion.min_improvement``."""
    margin = parse(TrainingParams, params, "training").promotion.min_improvement
    candidate = metrics["model_rmse"]
    if champion_score["version"] is None:
        return {
            "promote": True,
            "action": "promote",
            "reason": "no champion yet: the first model becomes champion",
            "champion_version": None,
            "champion_rmse": None,
            "candidate_rmse": candidate,
            "min_improvement": margin,
        }
    threshold = champion_score["rmse"] * (1.0 - margin)
    promote = candidate < threshold
    verdict = "beats" if promote else "does not beat"
    return {
        "promote": promote,
        "action": "promote" if promote else "keep_champion",
        "reason": (
            f"candidate RMSE {candidate:.4f} {verdict} champion v{champion_score['version']} "
            f"RMSE {champion_score['rmse']:.4f} by the required {margin:.1%} (threshold {threshold:.4f})"
        ),
        "champion_version": champion_score["version"],
        "champion_rmse": champion_score["rmse"],
        "candidate_rmse": candidate,
        "min_improvement": margin,
    }


def build_candidate(
    model: TripDurationModel,
    metrics: dict[str, float],
    decision: dict,
    train_trips: pd.DataFrame,
    valid_trips: pd.DataFrame,
    params: dict,
) -> dict:
    """Everything the registry records for this candidate: run params, metrics, data facts."""
    settings = parse(TrainingParams, params, "training")
    facts = {
        "taxi": settings.taxi,
        "train_month": str(settings.train_month),
        "valid_month": str(settings.valid_month),
        "train_rows": len(train_trips),
        "valid_rows": len(valid_trips),
        "train_pickup_min": str(train_trips[PICKUP].min()),
        "train_pickup_max": str(train_trips[PICKUP].max()),
        "valid_duration_mean": round(float(duration_minutes(valid_trips).mean()), 4),
    }
    run_params = {f"xgb_{k}": v for k, v in settings.model.model_dump().items()}
    run_params.update(
        {
            "taxi": settings.taxi,
            "features": ",".join(model.features),
            "train_month": facts["train_month"],
            "valid_month": facts["valid_month"],
            "min_improvement": settings.promotion.min_improvement,
        }
    )
    return {
        "model": model,
        "device": model.trained_on,
        "params": run_params,
        "metrics": metrics,
        "facts": facts,
        "decision": decision,
        "input_example": valid_trips[INPUT_COLUMNS].head(settings.input_example_rows).reset_index(drop=True),
    }


def apply_gate(registration, decision: dict):
    """The promotion gate as its own step: moves ``@champion`` to the registered version only when
    the decision says so and the champion is still the one it was compared with (idempotent on retry)."""
    from trip_duration.io.registry import apply_promotion

    return apply_promotion(registration, decision)


def promotion_report(registration, promotion, decision: dict, metrics: dict[str, float]) -> dict:
    """The JSON a person reads: what was trained, how it scored, and what the gate did."""
    return {
        "version": registration.version,
        "run_id": registration.run_id,
        "experiment_id": registration.experiment_id,
        "training_run": registration.training_run,
        "registration_reused": registration.reused,  # a retry found the version its training run registered
        "promoted": promotion.promoted,
        "reason": promotion.reason,
        "champion_version": promotion.champion_version,
        "compared_to": decision["champion_version"],
        "champion_rmse": decision["champion_rmse"],
        **metrics,
    }
