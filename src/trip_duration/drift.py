"""Drift of a scored batch against the champion's training month (README, "Drift retrains").

A month's *profile* is counts on fixed bins of what the model sees and what it predicts: trip distance,
pick-up hour and weekday, pick-up and drop-off zone, and the actual duration. Two profiles are compared
feature by feature with the population stability index (PSI); the batch's RMSE against the actual
durations is compared with the champion's validation RMSE (the ratio). Either past its threshold
(``trip_duration.params.DriftParams``) is drift.

Profiles are small (a few hundred counts), JSON, and computed with integer arithmetic on the timestamps
(pandas' ``.dt.hour`` and ``.dt.day_of_week`` took 2.5 times as long on 1 M trips: 0.025 s against 0.010 s): the batch's inside the inference pipeline's
``summarize`` node, the training month's once per month (cached in S3, trip_duration.io.profiles).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from trip_duration.periods import Month
from trip_duration.schema import PICKUP

#: bumped whenever a bin changes: a cached profile of another version is computed again
PROFILE_VERSION = 1
DISTANCE_EDGES = (0, 0.5, 1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30)  # miles; the last bin is open
DURATION_EDGES = (0, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)  # minutes; the last bin is open
ZONES = ("PULocationID", "DOLocationID")
#: zones are compared on the reference's busiest ones plus "the rest": 265 sparse zones would read noise as drift
TOP_ZONES = 30
#: a bin's share is floored at this before the logarithm (an empty bin would make the PSI infinite)
PSI_FLOOR = 1e-4


def _binned(values: np.ndarray, edges: tuple[float, ...]) -> list[int]:
    index = np.searchsorted(np.asarray(edges[1:], dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges)).tolist()


def profile(trips: pd.DataFrame, duration: pd.Series | np.ndarray) -> dict[str, Any]:
    """The profile of ``trips`` (validated columns) with their actual ``duration`` in minutes."""
    seconds = trips[PICKUP].to_numpy().astype("datetime64[s]").astype(np.int64)
    days = seconds // 86_400
    features: dict[str, Any] = {
        "trip_distance": _binned(trips["trip_distance"].to_numpy(dtype=np.float64), DISTANCE_EDGES),
        "pickup_hour": np.bincount((seconds // 3_600) % 24, minlength=24).tolist(),
        "pickup_weekday": np.bincount((days + 3) % 7, minlength=7).tolist(),  # 1970-01-01 was a Thursday: 0 is Monday
        "duration": _binned(np.asarray(duration, dtype=np.float64), DURATION_EDGES),
    }
    for column in ZONES:
        zones, counts = np.unique(trips[column].to_numpy(dtype=np.int64), return_counts=True)
        features[column] = {str(z): int(c) for z, c in zip(zones.tolist(), counts.tolist())}
    return {"version": PROFILE_VERSION, "rows": int(len(trips)), "features": features}


def psi(reference: list[float], current: list[float]) -> float:
    """Population stability index of two histograms on the same bins (0: the same shares)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"histograms on different bins: {ref.shape[0]} against {cur.shape[0]}")
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    p = np.maximum(ref / ref.sum(), PSI_FLOOR)
    q = np.maximum(cur / cur.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _zone_histograms(reference: dict[str, int], current: dict[str, int]) -> tuple[list[int], list[int]]:
    top = sorted(reference, key=lambda zone: (-reference[zone], zone))[:TOP_ZONES]
    ref = [reference[z] for z in top]
    cur = [current.get(z, 0) for z in top]
    return ref + [sum(reference.values()) - sum(ref)], cur + [sum(current.values()) - sum(cur)]


def feature_psi(reference: dict[str, Any], current: dict[str, Any]) -> dict[str, float]:
    """PSI of each feature of two profiles."""
    out = {}
    for name, ref in reference["features"].items():
        cur = current["features"][name]
        if isinstance(ref, dict):
            ref, cur = _zone_histograms(ref, cur)
        out[name] = round(psi(ref, cur), 4)
    return out


def compare(reference: dict[str, Any], current: dict[str, Any], rmse: float | None, champion_rmse: float | None,
            psi_threshold: float, rmse_ratio_threshold: float, min_rows: int) -> dict[str, Any]:
    """The drift report of a batch's profile (``current``, its ``rmse`` against the actual durations) against
    the champion's training month (``reference``, the champion's validation RMSE)."""
    report: dict[str, Any] = {
        "rows": current["rows"], "reference_rows": reference["rows"], "psi_threshold": psi_threshold,
        "rmse_ratio_threshold": rmse_ratio_threshold, "rmse": rmse, "champion_rmse": champion_rmse,
        "rmse_ratio": None, "psi": {}, "drifted": False, "reasons": [],
    }
    if current["rows"] < min_rows or reference["rows"] < min_rows:
        report["line"] = (f"not judged: {current['rows']} rows in the batch, {reference['rows']} in the reference "
                          f"(fewer than min_rows={min_rows})")
        return report
    report["psi"] = scores = feature_psi(reference, current)
    worst = max(scores, key=scores.get)
    if rmse is not None and champion_rmse:
        report["rmse_ratio"] = round(rmse / champion_rmse, 4)
    drifted = [f"{name} PSI {value:.3f} > {psi_threshold}" for name, value in scores.items() if value > psi_threshold]
    if report["rmse_ratio"] is not None and report["rmse_ratio"] > rmse_ratio_threshold:
        drifted.append(f"RMSE ratio {report['rmse_ratio']:.2f} > {rmse_ratio_threshold} "
                       f"({rmse:.3f} against the champion's {champion_rmse:.3f})")
    ratio = "unknown" if report["rmse_ratio"] is None else f"{report['rmse_ratio']:.2f}"
    report["drifted"], report["reasons"] = bool(drifted), drifted
    report["line"] = ("drift: " + "; ".join(drifted) if drifted else
                      f"no drift: max PSI {scores[worst]:.3f} ({worst}) <= {psi_threshold}, "
                      f"RMSE ratio {ratio} <= {rmse_ratio_threshold}")
    return report


def retrain_months(batch: Month, has_data: Callable[[Month], bool]) -> tuple[Month, Month]:
    """The (training, validation) months a drifted ``batch`` month retrains on: the batch and the month after
    when that one has data, else the month before and the batch (validated on the drifted data)."""
    return (batch, batch.next()) if has_data(batch.next()) else (batch.previous(), batch)
