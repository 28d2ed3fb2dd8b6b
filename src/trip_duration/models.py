"""The two models, as plain objects: fit and predict, no I/O."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LinearRegression

from trip_duration.features import (
    MODEL_FEATURES,
    ZonePace,
    fit_one_hot_vocabulary,
    one_hot,
    trip_features,
)

logger = logging.getLogger(__name__)


@dataclass
class BaselineModel:
    """The course baseline: one-hot PU, DO and PU_DO (as DictVectorizer does) + LinearRegression."""

    vocabulary: dict[str, np.ndarray]
    regressor: LinearRegression

    @classmethod
    def fit(cls, trips: pd.DataFrame, target: pd.Series) -> BaselineModel:
        vocabulary = fit_one_hot_vocabulary(trips)
        regressor = LinearRegression().fit(one_hot(trips, vocabulary), target.to_numpy())
        return cls(vocabulary=vocabulary, regressor=regressor)

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        return self.regressor.predict(one_hot(trips, self.vocabulary))


@dataclass
class TripDurationModel:
    """XGBoost (hist) on distance, time of week and zone pace. Predicts minutes."""

    pace: ZonePace
    booster: xgb.Booster
    trained_on: str = "cpu"
    features: list[str] = field(default_factory=lambda: list(MODEL_FEATURES))

    @classmethod
    def fit(
        cls, trips: pd.DataFrame, target: pd.Series, hyperparameters: dict, device: str
    ) -> TripDurationModel:
        pace = ZonePace.fit(trips, target)
        regressor = xgb.XGBRegressor(tree_method="hist", device=device, **hyperparameters)
        regressor.fit(trip_features(trips, pace), target.to_numpy())
        booster = regressor.get_booster()
        # Serve anywhere: a model trained on a GPU predicts on CPU nodes without warnings.
        booster.set_param({"device": "cpu"})
        return cls(pace=pace, booster=booster, trained_on=device)

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        # A duration is never negative; trees fitted on short trips can undershoot slightly.
        return np.maximum(self.booster.inplace_predict(trip_features(trips, self.pace)), 0.0)


def resolve_device(requested: str) -> str:
    """``cuda`` when asked for and usable; for ``auto``, ``cuda`` if a GPU is visible, else ``cpu``."""
    if requested not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"training.device={requested!r}: use auto, cpu or cuda")
    if requested == "cpu":
        return "cpu"
    usable = _cuda_usable()
    if requested == "cuda" and not usable:
        raise RuntimeError(
            "training.device='cuda' but XGBoost sees no usable GPU: schedule the run on a GPU node "
            "(the gpu work queue) or set training.device to auto"
        )
    return "cuda" if usable else "cpu"


def _cuda_usable() -> bool:
    if not xgb.build_info().get("USE_CUDA"):
        return False
    sample = xgb.DMatrix(np.zeros((4, 1)), label=np.zeros(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            booster = xgb.train({"device": "cuda", "tree_method": "hist", "verbosity": 0}, sample, 1)
        except xgb.core.XGBoostError:
            return False
    return json.loads(booster.save_config())["learner"]["generic_param"]["device"].startswith("cuda")


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(actual) - np.asarray(predicted)) ** 2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(predicted))))


@dataclass(frozen=True)
class Champion:
    """The model the registry's champion alias points at (``version`` None: no champion yet)."""

    version: int | None
    model: TripDurationModel | None
