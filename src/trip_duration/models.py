"""The two models, as plain objects: fit and predict, no I/O."""

from __future__ import annotations

import base64
import json
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LinearRegression

from trip_duration.errors import UntrustedModelError
from trip_duration.features import (
    MODEL_FEATURES,
    N_ZONE_IDS,
    ZonePace,
    fit_one_hot_vocabulary,
    one_hot,
    trip_features,
)

logger = logging.getLogger(__name__)

#: How a fitted model travels from the fit's pod to the training run's pod: data only, never a pickle.
MODEL_FORMAT = "trip-duration-model/1"


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

    def to_bytes(self) -> bytes:
        """The model as JSON (``MODEL_FORMAT``): zone paces as lists, the booster as base64 UBJSON. Data,
        never code: the fit pod hands it to the training run's pod (README, "Only the fit on the GPU")."""
        return json.dumps({
            "format": MODEL_FORMAT,
            "trained_on": self.trained_on,
            "features": self.features,
            "pickup_pace": self.pace.pickup.tolist(),
            "dropoff_pace": self.pace.dropoff.tolist(),
            "booster_ubj": base64.b64encode(bytes(self.booster.save_raw(raw_format="ubj"))).decode(),
        }).encode()

    @classmethod
    def from_bytes(cls, body: bytes, source: str) -> TripDurationModel:
        """The model :meth:`to_bytes` wrote; anything else is refused, naming ``source``."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
                raise ValueError(f"format {data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
            booster = xgb.Booster()
            booster.load_model(bytearray(base64.b64decode(data["booster_ubj"], validate=True)))
            pace = ZonePace(pickup=np.asarray(data["pickup_pace"], dtype=np.float32),
                            dropoff=np.asarray(data["dropoff_pace"], dtype=np.float32))
            if len(pace.pickup) != N_ZONE_IDS or len(pace.dropoff) != N_ZONE_IDS:
                raise ValueError(f"zone paces of {len(pace.pickup)} and {len(pace.dropoff)} zones, not {N_ZONE_IDS}")
            model = cls(pace=pace, booster=booster, trained_on=str(data["trained_on"]), features=list(data["features"]))
        except (ValueError, KeyError, TypeError, xgb.core.XGBoostError) as err:
            raise UntrustedModelError(
                f"{source} is not a fitted model this project wrote ({MODEL_FORMAT}: JSON with a UBJSON booster): "
                f"{' '.join(str(err).split())[:200]}; run the fit again (the training flow starts a new one)") from err
        if model.features != MODEL_FEATURES:
            raise UntrustedModelError(f"{source} has features {model.features}, this code expects {MODEL_FEATURES}: "
                                      "fit it again with this code")
        return model

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
