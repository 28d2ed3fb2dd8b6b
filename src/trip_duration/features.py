"""Features, computed column-wise with pandas/numpy: no per-row Python objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from trip_duration.schema import DROPOFF, PICKUP

#: TLC taxi zone ids run 1..263, with 264/265 for unknown; index 0 is never a zone.
N_ZONE_IDS = 266
MODEL_FEATURES = ["trip_distance", "hour", "weekday", "minute_of_day", "pickup_zone_pace", "dropoff_zone_pace"]
#: The raw columns a caller must supply to score trips.
INPUT_COLUMNS = [PICKUP, "PULocationID", "DOLocationID", "trip_distance"]


def duration_minutes(trips: pd.DataFrame) -> pd.Series:
    """The target: drop-off minus pick-up, in minutes."""
    return ((trips[DROPOFF] - trips[PICKUP]).dt.total_seconds() / 60.0).rename("duration")


@dataclass(frozen=True)
class ZonePace:
    """Smoothed minutes per mile of trips starting (``pickup``) or ending (``dropoff``) in each zone.

    Learned on the training month; a zone seen rarely leans on the overall median.
    """

    pickup: np.ndarray
    dropoff: np.ndarray

    @classmethod
    def fit(cls, trips: pd.DataFrame, duration: pd.Series, smoothing: float = 20.0) -> ZonePace:
        pace = duration.to_numpy() / np.maximum(trips["trip_distance"].to_numpy(), 0.1)
        prior = float(np.median(pace))

        def smoothed(zones: np.ndarray) -> np.ndarray:
            total = np.bincount(zones, weights=pace, minlength=N_ZONE_IDS)
            count = np.bincount(zones, minlength=N_ZONE_IDS)
            return ((total + prior * smoothing) / (count + smoothing)).astype(np.float32)

        return cls(
            pickup=smoothed(_zone_index(trips["PULocationID"])),
            dropoff=smoothed(_zone_index(trips["DOLocationID"])),
        )


def _zone_index(zones: pd.Series) -> np.ndarray:
    """Zone ids as array indices; anything outside 1..265 maps to 0 (the prior)."""
    ids = zones.to_numpy(dtype=np.int64, na_value=0)
    return np.where((ids >= 1) & (ids < N_ZONE_IDS), ids, 0)


def trip_features(trips: pd.DataFrame, pace: ZonePace) -> np.ndarray:
    """The model's feature matrix (float32, columns in MODEL_FEATURES order)."""
    pickup = trips[PICKUP].dt
    hour = pickup.hour.to_numpy()
    out = np.empty((len(trips), len(MODEL_FEATURES)), dtype=np.float32)
    out[:, 0] = trips["trip_distance"].to_numpy(dtype=np.float32)
    out[:, 1] = hour
    out[:, 2] = pickup.day_of_week.to_numpy()
    out[:, 3] = hour * 60 + pickup.minute.to_numpy()
    out[:, 4] = pace.pickup[_zone_index(trips["PULocationID"])]
    out[:, 5] = pace.dropoff[_zone_index(trips["DOLocationID"])]
    return out


def zone_pair_codes(trips: pd.DataFrame) -> dict[str, np.ndarray]:
    """The course's categorical features (PU, DO, PU_DO) as integer keys."""
    pu = trips["PULocationID"].to_numpy(dtype=np.int64)
    do = trips["DOLocationID"].to_numpy(dtype=np.int64)
    return {"PULocationID": pu, "DOLocationID": do, "PU_DO": pu * 1000 + do}


def fit_one_hot_vocabulary(trips: pd.DataFrame) -> dict[str, np.ndarray]:
    """Sorted distinct values of each course feature, as DictVectorizer learns them."""
    return {name: np.unique(values) for name, values in zone_pair_codes(trips).items()}


def one_hot(trips: pd.DataFrame, vocabulary: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Sparse one-hot matrix equal to DictVectorizer's (unseen values are all-zero rows)."""
    rows, cols, offset = [], [], 0
    n = len(trips)
    for name, values in zone_pair_codes(trips).items():
        vocab = vocabulary[name]
        pos = np.searchsorted(vocab, values)
        pos_clipped = np.minimum(pos, len(vocab) - 1)
        known = vocab[pos_clipped] == values
        rows.append(np.flatnonzero(known))
        cols.append(pos_clipped[known] + offset)
        offset += len(vocab)
    row_idx, col_idx = np.concatenate(rows), np.concatenate(cols)
    data = np.ones(len(row_idx), dtype=np.float64)
    return sp.csr_matrix((data, (row_idx, col_idx)), shape=(n, offset))
