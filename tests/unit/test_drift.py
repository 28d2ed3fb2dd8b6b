"""The drift check (trip_duration.drift, flows/inference.check_drift; README, "Drift retrains")."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from trip_duration import drift
from trip_duration.errors import ConfigError
from trip_duration.features import duration_minutes
from trip_duration.params import DriftParams, drift_params
from trip_duration.periods import DateRange, Month
from trip_duration.synth import generate_trips

DEFAULTS = DriftParams()


def _profile(trips: pd.DataFrame) -> dict:
    return drift.profile(trips, duration_minutes(trips))


def _compare(reference, current, rmse=5.0, champion_rmse=5.0, **kw):
    options = {"psi_threshold": DEFAULTS.psi_threshold, "rmse_ratio_threshold": DEFAULTS.rmse_ratio_threshold,
               "min_rows": DEFAULTS.min_rows, **kw}
    return drift.compare(reference, current, rmse, champion_rmse, **options)


@pytest.fixture(scope="module")
def months():
    """Two synthetic months of one city (the same seed: the same zones), 50 000 trips each."""
    return generate_trips("2023-01", rows=50_000, seed=3), generate_trips("2023-02", rows=50_000, seed=3)


def test_profile_counts_on_fixed_bins_with_the_calendar_of_pandas():
    trips = pd.DataFrame({
        "pickup_datetime": pd.to_datetime(["2023-01-02 00:10", "2023-01-07 23:59", "2023-01-08 13:00"]),
        "PULocationID": [1, 1, 7], "DOLocationID": [2, 3, 3], "trip_distance": [0.2, 1.0, 45.0]})
    got = drift.profile(trips, pd.Series([1.0, 12.0, 90.0]))
    features = got["features"]
    assert got["rows"] == 3 and got["version"] == drift.PROFILE_VERSION
    hours, weekdays = np.zeros(24, int), np.zeros(7, int)
    np.add.at(hours, trips["pickup_datetime"].dt.hour, 1)
    np.add.at(weekdays, trips["pickup_datetime"].dt.day_of_week, 1)
    assert features["pickup_hour"] == hours.tolist() and features["pickup_weekday"] == weekdays.tolist()
    assert features["trip_distance"][0] == 1 and features["trip_distance"][2] == 1 and features["trip_distance"][-1] == 1
    assert features["duration"][0] == 1 and features["duration"][6] == 1 and features["duration"][-1] == 1
    assert features["PULocationID"] == {"1": 2, "7": 1} and features["DOLocationID"] == {"2": 1, "3": 2}
    assert sum(features["trip_distance"]) == sum(features["duration"]) == 3


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    assert drift.psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    small, large = drift.psi([50, 50], [55, 45]), drift.psi([50, 50], [90, 10])
    assert 0 < small < 0.05 < 0.2 < large
    assert np.isfinite(drift.psi([100, 0], [50, 50]))  # an empty bin is floored, not infinite
    with pytest.raises(ValueError, match="different bins"):
        drift.psi([1, 2], [1, 2, 3])


def test_the_next_synthetic_month_is_no_drift(months):
    january, february = months
    report = _compare(_profile(january), _profile(february))
    assert not report["drifted"] and max(report["psi"].values()) < 0.05, report
    assert report["line"].startswith("no drift: max PSI") and report["rmse_ratio"] == 1.0


def test_longer_trips_or_slower_traffic_are_drift_each_named(months):
    january, february = months
    reference = _profile(january)
    longer = february.assign(trip_distance=february["trip_distance"] * 2)
    report = _compare(reference, _profile(longer))
    assert report["drifted"] and [r.split()[0] for r in report["reasons"]] == ["trip_distance"], report
    slower = february.assign(dropoff_datetime=february["pickup_datetime"]
                             + (february["dropoff_datetime"] - february["pickup_datetime"]) * 2)
    report = _compare(reference, _profile(slower))
    assert report["drifted"] and "duration PSI" in report["line"] and "trip_distance" not in report["line"]


def test_the_error_alone_is_drift_and_an_unknown_error_is_not(months):
    january, february = months
    reference, current = _profile(january), _profile(february)
    report = _compare(reference, current, rmse=7.0, champion_rmse=5.0)
    assert report["drifted"] and report["rmse_ratio"] == 1.4
    assert report["reasons"] == ["RMSE ratio 1.40 > 1.3 (7.000 against the champion's 5.000)"]
    assert not _compare(reference, current, rmse=None)["drifted"]
    assert not _compare(reference, current, rmse=6.4, champion_rmse=5.0)["drifted"]  # 1.28


def test_zones_are_compared_on_the_busiest_of_the_reference_plus_the_rest():
    reference = {f"{z}": 100 - z for z in range(60)}
    # a move among the quiet zones (outside the top 30) is not drift; onto one busy zone is
    quiet = {**reference, "59": 0, "58": 80}
    ref, cur = drift._zone_histograms(reference, quiet)
    assert len(ref) == drift.TOP_ZONES + 1 and sum(ref) == sum(reference.values())
    assert drift.psi(ref, cur) < 0.01
    busy = {**reference, "0": 3000}
    assert drift.psi(*drift._zone_histograms(reference, busy)) > 0.2


def test_too_few_rows_are_not_judged(months):
    january, february = months
    report = _compare(_profile(january), _profile(february.head(999)), rmse=50.0)
    assert not report["drifted"] and report["line"].startswith("not judged: 999 rows")


def test_retrain_months_take_the_next_month_when_it_has_data_else_the_one_before():
    june = Month.parse("2024-06")
    assert drift.retrain_months(june, lambda m: True) == (june, Month.parse("2024-07"))
    assert drift.retrain_months(june, lambda m: False) == (Month.parse("2024-05"), june)


def test_the_drift_event_id_is_derived_from_model_version_and_batch():
    from flows.events import DRIFTED, drift_event

    report = {"reasons": ["trip_distance PSI 0.5 > 0.2"], "psi": {"trip_distance": 0.5}, "rmse_ratio": 1.1}
    one = drift_event(report, "trip-duration-yellow", "yellow", 3, "2024-07", "2024-06", "2024-07")
    assert one == drift_event(report, "trip-duration-yellow", "yellow", 3, "2024-07", "2024-06", "2024-07")
    assert one["event"] == DRIFTED and one["resource"]["trip-duration.taxi"] == "yellow"
    assert one["payload"]["train_month"] == "2024-06" and one["payload"]["valid_month"] == "2024-07"
    assert one["id"] != drift_event(report, "trip-duration-yellow", "yellow", 4, "2024-07", "2024-06", "2024-07")["id"]
    assert one["id"] != drift_event(report, "trip-duration-yellow", "yellow", 3, "2024-08", "2024-07", "2024-08")["id"]


def test_drift_settings_come_from_the_environment_and_a_bad_one_names_the_variable_and_fix():
    assert drift_params({}) == DEFAULTS
    assert drift_params({"TRIP_DURATION_DRIFT_ENABLED": "false", "TRIP_DURATION_DRIFT_MIN_ROWS": "10"}) == \
        DriftParams(enabled=False, min_rows=10)
    for var, value in (("TRIP_DURATION_DRIFT_PSI_THRESHOLD", "0"), ("TRIP_DURATION_DRIFT_RMSE_RATIO_THRESHOLD", "0.9"),
                       ("TRIP_DURATION_DRIFT_ENABLED", "maybe")):
        with pytest.raises(ConfigError, match=f"{var}='{value}'.*chart's drift"):
            drift_params({var: value})


class _Checked:
    """check_drift with its I/O replaced: the champion v3 trained on 2024-05/2024-06, S3 writes kept."""

    def __init__(self, monkeypatch, months, next_has_data: bool = False):
        import flows.inference as inference

        january, february = months
        self.written, self.emitted = {}, []
        facts = {"run_id": "r1", "train_month": "2024-05", "valid_month": "2024-06", "model_rmse": 5.0}
        monkeypatch.setattr(inference, "get_run_logger", lambda: logging.getLogger("test"))
        monkeypatch.setattr(inference, "version_facts", lambda settings, version: facts)
        monkeypatch.setattr(inference, "month_profile", lambda bucket, taxi, month: _profile(january))
        monkeypatch.setattr(inference, "in_bucket", lambda bucket, month, taxi: "raw" if next_has_data else None)
        monkeypatch.setattr(inference.s3, "put_json", lambda bucket, key, body: self.written.__setitem__(key, body))
        monkeypatch.setattr("prefect.events.emit_event", lambda **kw: self.emitted.append(kw))
        self.inference, self.february = inference, february

    def __call__(self, batch: str, distance_factor: float = 1.0, **params) -> str:
        from trip_duration.config import Settings

        settings = Settings(bucket="b", model_name="trip-duration").for_taxi("yellow")
        trips = self.february.assign(trip_distance=self.february["trip_distance"] * distance_factor)
        summary = {"model_version": 3, "profile": _profile(trips), "rmse_vs_actual": 5.0}
        return self.inference.check_drift(settings, "yellow", DateRange.of_month(Month.parse(batch)), summary,
                                          DriftParams(**params))


def test_a_drifted_month_after_the_champions_emits_one_event_naming_the_months(monkeypatch, months):
    check = _Checked(monkeypatch, months)
    line = check("2024-07", distance_factor=2)
    (event,) = check.emitted
    assert event["payload"]["train_month"] == "2024-06" and event["payload"]["valid_month"] == "2024-07"
    assert f"emitted trip-duration.model.drifted (event id {event['id']}): retrain on 2024-06" in line
    report = check.written["reports/inference/taxi=yellow/year=2024/month=07/model_version=3/drift.json"]
    assert report["drifted"] and report["event"]["id"] == str(event["id"]) and report["line"] == line
    check = _Checked(monkeypatch, months, next_has_data=True)
    check("2024-07", distance_factor=2)
    assert check.emitted[0]["payload"]["train_month"] == "2024-07"  # and validated on 2024-08


def test_no_event_when_not_drifted_when_the_champion_knows_the_month_or_when_switched_off(monkeypatch, months):
    check = _Checked(monkeypatch, months)
    assert check("2024-07").startswith("no drift") and not check.emitted
    assert "no retraining: v3 was trained up to 2024-06" in check("2024-06", distance_factor=2)
    assert "no event (drift.emitEvent is false)" in check("2024-07", distance_factor=2, emit_event=False)
    assert check("2024-07", distance_factor=2, enabled=False) == "" and not check.emitted
    # every judged batch has its drift.json (the last one of 2024-07 says no event); none when switched off
    assert sorted(check.written) == [f"reports/inference/taxi=yellow/year=2024/month={m}/model_version=3/drift.json"
                                     for m in ("06", "07")]
    assert check.written[sorted(check.written)[1]]["line"].endswith("no event (drift.emitEvent is false)")


def test_a_failing_check_only_warns_and_says_so(monkeypatch, months, caplog):
    check = _Checked(monkeypatch, months)

    def away(settings, version):
        raise ConnectionError("MLflow is away")

    monkeypatch.setattr(check.inference, "version_facts", away)
    assert check("2024-07") == "not checked: ConnectionError: MLflow is away"
    assert "not checked: ConnectionError" in caplog.text and not check.written
