"""A corpus of hostile raw files, each run through the ingest nodes, each held to the same promises:

- no exception escapes for bad data: every file gets an outcome (accepted, or refused with a reason);
- a refusal is one line that names the column or the file, and every row the file had is kept aside;
- an accepted month accounts for every row (kept + rejected, each rejection with a known rule) and
  what it keeps satisfies every row rule: required values present, finite, zones 1-265, distance > 0,
  pickup inside the month, duration 1-60 min, no exact duplicate.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trip_duration.features import duration_minutes
from trip_duration.pipelines.ingest.nodes import (MONTH_REFUSED, ROW_RULES, VALIDATED_SCHEMA, check_schema,
                                                  ingest_month)
from trip_duration.schema import LAYOUTS, PICKUP, RAW_TIMES, RawFile

RAW_PICKUP, RAW_DROPOFF = RAW_TIMES["yellow"]  # the raw file's names; validated/ has PICKUP
from trip_duration.synth import generate_month

PARAMS = {"month": "2023-01"}
BASE = generate_month("2023-01", rows=3_000, seed=11)


def _set(table: pa.Table, name: str, change: Callable[[list], list], type_: pa.DataType | None = None) -> pa.Table:
    values = change(table[name].to_pylist())
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, type_ or table.schema.field(name).type))


def _head(values: list, head: list) -> list:
    return head + values[len(head):]


def _cast(table: pa.Table, name: str, type_: pa.DataType) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, table[name].cast(type_, safe=False))


def _zoned(table: pa.Table, zone: str) -> pa.Table:
    for name in (RAW_PICKUP, RAW_DROPOFF):
        local = table[name].to_pandas().dt.tz_localize("America/New_York", ambiguous="NaT", nonexistent="NaT")
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array(local.dt.tz_convert(zone), pa.timestamp("us", tz=zone)))
    return table


def _bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


CORPUS: dict[str, Callable[[], bytes]] = {
    "clean": lambda: _bytes(BASE),
    "null zone ids": lambda: _bytes(_set(BASE, "PULocationID", lambda v: _head(v, [None] * 5))),
    "zone ids 0 and 266": lambda: _bytes(_set(BASE, "DOLocationID", lambda v: _head(v, [0, 266, -1]))),
    "int32 zone ids": lambda: _bytes(_cast(_cast(BASE, "PULocationID", pa.int32()), "DOLocationID", pa.int32())),
    "inf, -inf, nan distances": lambda: _bytes(_set(BASE, "trip_distance", lambda v: _head(v, [np.inf, -np.inf, np.nan]))),
    "negative and zero distances": lambda: _bytes(_set(BASE, "trip_distance", lambda v: _head(v, [-3.0, 0.0]))),
    "huge distance": lambda: _bytes(_set(BASE, "trip_distance", lambda v: _head(v, [1e300]))),
    "timestamps in UTC": lambda: _bytes(_zoned(BASE, "UTC")),
    "timestamps in Tokyo": lambda: _bytes(_zoned(BASE, "Asia/Tokyo")),
    "timestamps in ns": lambda: _bytes(_cast(_cast(BASE, RAW_PICKUP, pa.timestamp("ns")), RAW_DROPOFF, pa.timestamp("ns"))),
    "timestamps in ms": lambda: _bytes(_cast(_cast(BASE, RAW_PICKUP, pa.timestamp("ms")), RAW_DROPOFF, pa.timestamp("ms"))),
    "null timestamps": lambda: _bytes(_set(BASE, RAW_PICKUP, lambda v: _head(v, [None, None]))),
    "drop-off before pick-up": lambda: _bytes(_set(BASE, RAW_DROPOFF, lambda v: _head(v, [pd.Timestamp("2023-01-01")] * 4))),
    "pick-ups of another month": lambda: _bytes(_set(BASE, RAW_PICKUP, lambda v: _head(v, [pd.Timestamp("2022-12-31 23:00")] * 7))),
    "pick-ups in 2099": lambda: _bytes(_set(BASE, RAW_PICKUP, lambda v: _head(v, [pd.Timestamp("2099-01-05")] * 3))),
    "exact duplicates": lambda: _bytes(pa.concat_tables([BASE, BASE.slice(0, 25)])),
    "all-null optional column": lambda: _bytes(_set(BASE, "Airport_fee", lambda v: [None] * len(v), pa.null())),
    "all-null required column": lambda: _bytes(_set(BASE, "trip_distance", lambda v: [None] * len(v), pa.null())),
    "unknown extra column": lambda: _bytes(BASE.append_column("mystery", pa.array(["x"] * len(BASE)))),
    "missing required column": lambda: _bytes(BASE.drop_columns(["DOLocationID"])),
    "distance as text": lambda: _bytes(_cast(BASE, "trip_distance", pa.string())),
    "zone ids as float": lambda: _bytes(_cast(BASE, "PULocationID", pa.float64())),
    "zero rows": lambda: _bytes(BASE.slice(0, 0)),
    "one row": lambda: _bytes(BASE.slice(0, 1)),
    "truncated file": lambda: _bytes(BASE)[:5_000],
    "a CSV, not parquet": lambda: BASE.slice(0, 50).to_pandas().to_csv().encode(),
    "empty bytes": lambda: b"",
    "every row bad": lambda: _bytes(_set(BASE, "trip_distance", lambda v: [0.0] * len(v))),
    "airport_fee spelled as in 2022": lambda: _bytes(BASE.rename_columns(
        [n.replace("Airport_fee", "airport_fee") for n in BASE.column_names])),
    "a green file under the yellow key": lambda: _bytes(generate_month("2023-01", rows=500, seed=11, taxi="green")),
    "a column renamed by hand": lambda: _bytes(BASE.rename_columns([n.replace("fare_amount", "fare") for n in BASE.column_names])),
    "most rows bad": lambda: _bytes(_set(BASE, "trip_distance", lambda v: [0.0] * (len(v) * 2 // 3) + v[len(v) * 2 // 3:])),
}


@pytest.mark.parametrize("case", CORPUS)
def test_every_hostile_file_gets_an_outcome_that_keeps_its_promises(case):
    body = CORPUS[case]()
    raw = RawFile("raw/yellow_tripdata_2023-01.parquet", "s3://b/raw/yellow_tripdata_2023-01.parquet", body)
    trips, report = check_schema(raw, PARAMS)
    outcome = ingest_month(trips, report, PARAMS)  # never raises for bad data
    assert raw.body == body  # the raw bytes are never touched
    if outcome.refused:
        assert outcome.validated is None
        assert "\n" not in outcome.refused and "s3://b/raw/yellow_tripdata_2023-01.parquet" in outcome.refused
        if report["ok"]:  # rows were read: every one is kept aside with its reason
            assert len(outcome.rejected) == len(trips) == outcome.rows_report["rows_in"]
            assert set(outcome.rejected["rejection_reason"]) <= {*ROW_RULES, MONTH_REFUSED}
        else:
            assert report["problems"] and all(p["problem"] for p in report["problems"])
        return
    rows, validated, rejected = outcome.rows_report, outcome.validated, outcome.rejected
    assert rows["rows_in"] == len(trips) == len(validated) + len(rejected) == rows["rows_out"] + rows["rows_rejected"]
    assert set(rejected["rejection_reason"]) <= set(ROW_RULES)
    assert sum(rows["rejected_by_rule"].values()) == rows["rows_rejected"]
    VALIDATED_SCHEMA.validate(validated)
    assert validated[PICKUP].dt.tz is None
    assert validated[PICKUP].between(pd.Timestamp("2023-01-01"), pd.Timestamp("2023-02-01"), inclusive="left").all()
    assert np.isfinite(validated["trip_distance"]).all()
    assert duration_minutes(validated).between(1, 60).all()
    assert not validated.duplicated().any()


def test_the_corpus_exercises_both_outcomes_and_every_row_rule():
    """Guards the corpus itself: it must keep refusing some files and tripping every rule."""
    refused, rules = 0, set()
    for case, make in CORPUS.items():
        body = make()
        raw = RawFile("raw/yellow_tripdata_2023-01.parquet", "s3://b/raw/yellow_tripdata_2023-01.parquet", body)
        outcome = ingest_month(*check_schema(raw, PARAMS), PARAMS)
        refused += bool(outcome.refused)
        if outcome.rejected is not None:
            rules |= set(outcome.rejected["rejection_reason"])
    assert refused >= 8 and rules == {*ROW_RULES, MONTH_REFUSED}


@pytest.mark.parametrize(("taxi", "layout"), [(t, y) for t in LAYOUTS for y in LAYOUTS[t]])
def test_every_published_layout_of_both_types_is_accepted_into_one_validated_schema(taxi, layout):
    key = f"raw/{taxi}_tripdata_2023-01.parquet"
    table = generate_month("2023-01", rows=3_000, seed=11, taxi=taxi, layout=layout)
    params = {**PARAMS, "taxi": taxi}
    trips, report = check_schema(RawFile(key, f"s3://b/{key}", _bytes(table), taxi=taxi), params)
    outcome = ingest_month(trips, report, params)
    assert outcome.refused is None and report["layout"] == f"{taxi} {layout}"
    validated = outcome.validated
    assert {PICKUP, "dropoff_datetime", "airport_fee" if taxi == "yellow" else "trip_type"} <= set(validated.columns)
    assert not any(c.startswith(("tpep_", "lpep_")) or c == "Airport_fee" for c in validated.columns)
    VALIDATED_SCHEMA.validate(validated)
    assert outcome.rows_report["rows_out"] > 0.75 * len(table)  # green trips are longer: more over 60 min
    # the same trips whatever the layout: the default layout's month keeps the same rows
    default = generate_month("2023-01", rows=3_000, seed=11, taxi=taxi)
    same = ingest_month(*check_schema(RawFile(key, f"s3://b/{key}", _bytes(default), taxi=taxi), params), params)
    assert len(same.validated) == len(validated)


def test_a_file_of_the_other_type_is_refused_naming_the_right_key_and_parameter():
    green = _bytes(generate_month("2023-01", rows=500, seed=11, taxi="green"))
    raw = RawFile("raw/yellow_tripdata_2023-01.parquet", "s3://b/raw/yellow_tripdata_2023-01.parquet", green)
    outcome = ingest_month(*check_schema(raw, PARAMS), PARAMS)
    assert outcome.refused and "a green taxi file (lpep_pickup_datetime, lpep_dropoff_datetime)" in outcome.refused
    assert "move it to raw/green_tripdata_2023-01.parquet, or ingest it with taxi=green" in outcome.refused
    yellow = _bytes(BASE)
    raw = RawFile("raw/green_tripdata_2023-01.parquet", "s3://b/raw/green_tripdata_2023-01.parquet", yellow, "green")
    outcome = ingest_month(*check_schema(raw, {**PARAMS, "taxi": "green"}), {**PARAMS, "taxi": "green"})
    assert "a yellow taxi file" in outcome.refused and "taxi=yellow" in outcome.refused


def test_an_unknown_layout_is_refused_with_the_columns_that_differ():
    changed = BASE.rename_columns([n.replace("fare_amount", "fare") for n in BASE.column_names])
    changed = changed.append_column("mystery", pa.array(["x"] * len(BASE)))
    raw = RawFile("raw/yellow_tripdata_2023-01.parquet", "s3://b/raw/yellow_tripdata_2023-01.parquet", _bytes(changed))
    outcome = ingest_month(*check_schema(raw, PARAMS), PARAMS)
    assert ("not a known yellow layout (2019, 2022, 2023, 2024, 2025): against the nearest, yellow 2023, "
            "missing fare_amount; unexpected fare, mystery") in outcome.refused
