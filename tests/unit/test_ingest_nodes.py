import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from trip_duration.errors import SchemaValidationError
from trip_duration.pipelines.ingest import create_pipeline
from trip_duration.pipelines.ingest.nodes import ROW_RULES, check_schema, filter_rows, ingest_month, require_accepted
from trip_duration.schema import RawFile
from trip_duration.synth import generate_month

PARAMS = {"month": "2023-01"}


def _raw(table: pa.Table | None = None, body: bytes | None = None) -> RawFile:
    if body is None:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        body = buffer.getvalue()
    return RawFile("raw/yellow_tripdata_2023-01.parquet", "s3://b/raw/yellow_tripdata_2023-01.parquet", body)


@pytest.fixture(scope="module")
def month() -> pa.Table:
    return generate_month("2023-01", rows=5_000, seed=2)


def test_good_file_passes(month):
    trips, report = check_schema(_raw(month), PARAMS)
    assert report["ok"] and report["problems"] == [] and len(trips) == 5_000


def test_missing_column_is_named(month):
    _, report = check_schema(_raw(month.drop_columns(["trip_distance"])), PARAMS)
    assert not report["ok"]
    assert report["problems"] == [{"column": None, "problem": (
        "not a known yellow layout (2019, 2022, 2023, 2024, 2025): against the nearest, yellow 2023, "
        "missing trip_distance")}]


def test_mistyped_column_is_named(month):
    broken = month.set_column(
        month.schema.get_field_index("PULocationID"), "PULocationID", month["PULocationID"].cast(pa.string())
    )
    _, report = check_schema(_raw(broken), PARAMS)
    assert not report["ok"]
    (problem,) = report["problems"]
    assert problem["column"] == "PULocationID" and "must be an integer" in problem["problem"]


def test_unreadable_and_empty_files_are_rejected(month):
    _, report = check_schema(_raw(body=b"this is not parquet"), PARAMS)
    assert not report["ok"] and "unreadable parquet" in report["problems"][0]["problem"]
    _, report = check_schema(_raw(month.slice(0, 0)), PARAMS)
    assert not report["ok"] and "empty file" in report["problems"][0]["problem"]


def test_filter_refuses_a_rejected_file_with_the_reason():
    report = {"ok": False, "source_uri": "s3://b/raw/x.parquet", "quarantined_to": "s3://b/quarantine/raw/x.parquet",
              "problems": [{"column": "trip_distance", "problem": "missing required column"}]}
    with pytest.raises(SchemaValidationError, match="trip_distance: missing required column.*quarantine"):
        filter_rows(pd.DataFrame(), report, PARAMS)


def test_row_rules_count_every_dropped_row(month):
    trips, report = check_schema(_raw(month), PARAMS)
    trips = trips.copy()
    trips.loc[0, "PULocationID"] = 400  # zone out of range
    trips.loc[1, "trip_distance"] = None  # missing
    before = trips.copy()
    validated, rejected, rows = filter_rows(trips, report, PARAMS)
    assert rows["rows_in"] == rows["rows_out"] + rows["rows_rejected"] == 5_000
    assert sum(rows["rejected_by_rule"].values()) == rows["rows_rejected"] == len(rejected)
    assert set(rows["rejected_by_rule"]) == set(ROW_RULES)
    assert rows["rejected_by_rule"]["zone_out_of_range"] >= 1 and rows["rejected_by_rule"]["missing_value"] >= 1
    assert rejected["rejection_reason"].isin(ROW_RULES).all()
    minutes = (validated.dropoff_datetime - validated.pickup_datetime).dt.total_seconds() / 60
    assert minutes.between(1, 60).all() and (validated.trip_distance > 0).all()
    pd.testing.assert_frame_equal(trips, before)  # the node never mutates its input


def test_too_many_bad_rows_fail_the_month(month):
    trips, report = check_schema(_raw(month), PARAMS)
    mostly_bad = trips.assign(trip_distance=np.where(np.arange(len(trips)) % 10 < 6, 0.0, trips["trip_distance"]))
    with pytest.raises(SchemaValidationError, match="max_rejected_fraction"):
        filter_rows(mostly_bad, report, PARAMS)


class _Kept(MemoryDataset):
    """Not released after its last consumer, so the test can read it after the run."""

    def _release(self) -> None:
        pass


def test_ingest_pipeline_on_an_in_memory_catalog(month):
    catalog = DataCatalog({"raw_month": MemoryDataset(_raw(month)), "params:ingest": MemoryDataset(PARAMS),
                           "ingest_outcome": _Kept(copy_mode="assign")})
    SequentialRunner().run(create_pipeline(), catalog)
    outcome = catalog.load("ingest_outcome")
    assert outcome.refused is None and outcome.schema_report["ok"]
    assert len(outcome.validated) == outcome.rows_report["rows_out"] > 4_000
    assert len(outcome.rejected) == outcome.rows_report["rows_rejected"]


def test_a_month_whose_every_row_breaks_a_rule_is_refused_with_every_row_kept(month):
    trips, report = check_schema(_raw(month), PARAMS)
    outcome = ingest_month(trips.assign(trip_distance=0.0), report, PARAMS)
    assert outcome.validated is None and len(outcome.rejected) == len(trips)
    assert "no row passed the row rules" in outcome.refused and "quarantine/rows/" in outcome.refused
    assert outcome.rows_report["rows_out"] == 0 and outcome.rows_report["refused"] == outcome.refused
    with pytest.raises(SchemaValidationError, match="no row passed the row rules"):
        require_accepted(outcome)
    # a broken file: refused the same way, before any row is looked at
    _, broken = check_schema(_raw(body=b"not parquet"), PARAMS)
    refused = ingest_month(pd.DataFrame(), broken, PARAMS)
    assert refused.validated is None and refused.rows_report is None and "unreadable parquet" in refused.refused


def _with(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_null_zone_ids_are_row_problems_not_a_mistyped_file(month):
    ids = month["PULocationID"].to_pylist()
    ids[:3] = [None, None, None]
    trips, report = check_schema(_raw(_with(month, "PULocationID", pa.array(ids, pa.int64()))), PARAMS)
    assert report["ok"], report["problems"]
    validated, rejected, rows = filter_rows(trips, report, PARAMS)
    assert rows["rejected_by_rule"]["missing_value"] == 3
    assert validated["PULocationID"].dtype == "int64"  # what downstream always saw
    assert rows["rows_out"] + rows["rows_rejected"] == len(month) == len(validated) + len(rejected)


def test_non_finite_distances_are_filtered_and_counted(month):
    distance = month["trip_distance"].to_pylist()
    distance[:2] = [float("inf"), float("nan")]
    distance[2] = float("-inf")
    trips, report = check_schema(_raw(_with(month, "trip_distance", pa.array(distance, pa.float64()))), PARAMS)
    validated, rejected, rows = filter_rows(trips, report, PARAMS)
    assert rows["rejected_by_rule"]["non_finite_value"] == 2 and rows["rejected_by_rule"]["missing_value"] == 1
    assert validated["trip_distance"].map(lambda v: v == v and abs(v) != float("inf")).all()
    assert set(rejected["rejection_reason"].head(3)) == {"missing_value", "non_finite_value"}


def test_zoned_timestamps_become_new_york_local_time(month):
    # the same instants, written with a zone (UTC): converted back to New York local time
    zoned = month
    for name in ("tpep_pickup_datetime", "tpep_dropoff_datetime"):
        local = month[name].to_pandas().dt.tz_localize("America/New_York", ambiguous="NaT", nonexistent="NaT")
        zoned = _with(zoned, name, pa.array(local.dt.tz_convert("UTC"), pa.timestamp("us", tz="UTC")))
    trips, report = check_schema(_raw(zoned), PARAMS)
    assert report["ok"], report["problems"]
    plain, _ = check_schema(_raw(month), PARAMS)
    assert trips["pickup_datetime"].dt.tz is None
    same = trips["pickup_datetime"].notna()
    assert (trips.loc[same, "pickup_datetime"] == plain.loc[same, "pickup_datetime"]).all()
    validated, _, rows = filter_rows(trips, report, PARAMS)  # no TypeError comparing with the month
    assert rows["rows_out"] == len(validated) > 0


def test_an_all_null_optional_column_is_accepted_and_a_required_one_named(month):
    trips, report = check_schema(_raw(_with(month, "Airport_fee", pa.nulls(len(month)))), PARAMS)
    assert report["ok"], report["problems"]
    assert trips["airport_fee"].isna().all()
    _, report = check_schema(_raw(_with(month, "trip_distance", pa.nulls(len(month)))), PARAMS)
    assert not report["ok"] and report["problems"] == [{"column": "trip_distance", "problem": "every value is null"}]


def test_exact_duplicate_trips_are_kept_aside_and_counted(month):
    doubled = pa.concat_tables([month, month.slice(0, 10)])
    trips, report = check_schema(_raw(doubled), PARAMS)
    validated, rejected, rows = filter_rows(trips, report, PARAMS)
    once, _, first = filter_rows(*check_schema(_raw(month), PARAMS), PARAMS)
    duplicates = rows["rejected_by_rule"]["duplicate_trip"]
    # the ten copies are counted, except those whose original already broke an earlier rule
    assert 0 < duplicates <= 10 and len(validated) == len(once)
    assert (rejected["rejection_reason"] == "duplicate_trip").sum() == duplicates
    assert not validated.duplicated().any()


def test_duplicates_are_whole_row_equality_not_just_the_hashed_keys(month):
    from trip_duration.pipelines.ingest.nodes import _duplicates

    trips = pa.concat_tables([month, month.slice(0, 20)]).to_pandas()
    trips.loc[len(month):len(month) + 9, "VendorID"] += 100  # same trip keys, another vendor: not a duplicate
    expected = trips.duplicated(keep="first").to_numpy()
    assert (_duplicates(trips) == expected).all() and expected.sum() == 10
