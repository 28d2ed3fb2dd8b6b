import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from trip_duration.errors import SchemaValidationError
from trip_duration.pipelines.ingest import create_pipeline
from trip_duration.pipelines.ingest.nodes import ROW_RULES, check_schema, filter_rows
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
    assert {"column": "trip_distance", "problem": "missing required column"} in report["problems"]


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
    minutes = (validated.tpep_dropoff_datetime - validated.tpep_pickup_datetime).dt.total_seconds() / 60
    assert minutes.between(1, 60).all() and (validated.trip_distance > 0).all()
    pd.testing.assert_frame_equal(trips, before)  # the node never mutates its input


def test_too_many_bad_rows_fail_the_month(month):
    trips, report = check_schema(_raw(month), PARAMS)
    with pytest.raises(SchemaValidationError, match="max_rejected_fraction"):
        filter_rows(trips.assign(trip_distance=0.0), report, PARAMS)


def test_ingest_pipeline_on_an_in_memory_catalog(month):
    catalog = DataCatalog(
        {
            "raw_month": MemoryDataset(_raw(month)),
            "params:ingest": MemoryDataset(PARAMS),
            "validated_trips": MemoryDataset(),
            "rows_report": MemoryDataset(),
            "rejected_rows": MemoryDataset(),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    validated, report = catalog.load("validated_trips"), catalog.load("rows_report")
    assert len(validated) == report["rows_out"] > 4_000
    assert len(catalog.load("rejected_rows")) == report["rows_rejected"]
