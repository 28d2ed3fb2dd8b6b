import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression

from trip_duration.features import MODEL_FEATURES, duration_minutes, trip_features, ZonePace
from trip_duration.models import BaselineModel, TripDurationModel, resolve_device, rmse
from trip_duration.synth import generate_trips


def _clean(month, rows=20_000):
    trips = generate_trips(month, rows=rows, seed=11)
    minutes = duration_minutes(trips)
    return trips[(minutes >= 1) & (minutes <= 60) & (trips["trip_distance"] > 0)].reset_index(drop=True)


def _course_dicts(trips):
    frame = pd.DataFrame(
        {
            "PULocationID": trips["PULocationID"].astype(str),
            "DOLocationID": trips["DOLocationID"].astype(str),
            "PU_DO": trips["PULocationID"].astype(str) + "_" + trips["DOLocationID"].astype(str),
        }
    )
    return frame.to_dict(orient="records")


def test_vectorized_baseline_equals_the_course_dictvectorizer_pipeline():
    train, valid = _clean("2023-01"), _clean("2023-02")
    ours = BaselineModel.fit(train, duration_minutes(train))
    dv = DictVectorizer()
    course = LinearRegression().fit(dv.fit_transform(_course_dicts(train)), duration_minutes(train))
    course_pred = course.predict(dv.transform(_course_dicts(valid)))
    assert ours.predict(valid) == pytest.approx(course_pred, abs=0.05)


def test_features_are_a_float_matrix_and_do_not_touch_the_input():
    trips = _clean("2023-01", 1_000)
    before = trips.copy()
    pace = ZonePace.fit(trips, duration_minutes(trips))
    matrix = trip_features(trips, pace)
    assert matrix.shape == (len(trips), len(MODEL_FEATURES)) and matrix.dtype == np.float32
    pd.testing.assert_frame_equal(trips, before)


def test_unknown_zone_falls_back_to_the_prior():
    trips = _clean("2023-01", 1_000)
    pace = ZonePace.fit(trips, duration_minutes(trips))
    odd = trips.head(1).assign(PULocationID=999)
    assert trip_features(odd, pace)[0, 4] == pace.pickup[0]


def test_xgboost_beats_the_baseline_on_the_next_month():
    train, valid = _clean("2023-01"), _clean("2023-02")
    y_train, y_valid = duration_minutes(train), duration_minutes(valid)
    base = rmse(y_valid, BaselineModel.fit(train, y_train).predict(valid))
    model = TripDurationModel.fit(train, y_train, {"n_estimators": 60, "max_depth": 6}, "cpu")
    assert rmse(y_valid, model.predict(valid)) < 0.9 * base


def test_device_resolution_on_this_machine():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="training.device"):
        resolve_device("tpu")


def test_a_fitted_model_travels_as_json_and_predicts_the_same():
    """README, "Only the fit on the GPU": the fit pod hands its model over as JSON + UBJSON, never a pickle."""
    from trip_duration.models import MODEL_FORMAT

    train, valid = _clean("2023-01", 5_000), _clean("2023-02", 2_000)
    model = TripDurationModel.fit(train, duration_minutes(train), {"n_estimators": 20}, "cpu")
    body = model.to_bytes()
    assert body.startswith(b"{") and b"pickle" not in body and MODEL_FORMAT.encode() in body
    again = TripDurationModel.from_bytes(body, "s3://b/candidates/x/model.json")
    assert np.array_equal(again.predict(valid), model.predict(valid))
    assert (again.trained_on, again.features) == ("cpu", MODEL_FEATURES)


@pytest.mark.parametrize("body", [b"\x80\x04\x95 a pickle", b'{"format": "other/1"}', b'[1, 2]',
                                  b'{"format": "trip-duration-model/1", "booster_ubj": "!!"}'])
def test_anything_but_a_fitted_model_is_refused_naming_its_source(body):
    from trip_duration.errors import UntrustedModelError

    with pytest.raises(UntrustedModelError, match=r"s3://b/k/model.json is not a fitted model this project wrote"):
        TripDurationModel.from_bytes(body, "s3://b/k/model.json")
