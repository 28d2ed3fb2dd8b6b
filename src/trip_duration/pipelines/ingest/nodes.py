"""Ingest: check a raw TLC month's schema as a whole, then filter bad rows and count them."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.parquet as pq
from pandas.api import types as ptypes

from trip_duration.errors import SchemaValidationError
from trip_duration.features import duration_minutes
from trip_duration.params import IngestParams, parse
from trip_duration.periods import Month
from trip_duration.schema import (COLUMN_KINDS, COLUMN_TYPES, DROPOFF, PICKUP, RAW_TIMES, RENAMES, RawFile,
                                  match_layout, taxi_of_columns)

logger = logging.getLogger(__name__)

NEW_YORK = "America/New_York"

_KIND_CHECKS = {
    "timestamp": (ptypes.is_datetime64_any_dtype, "a timestamp"),
    "integer": (ptypes.is_integer_dtype, "an integer"),
    "number": (lambda s: ptypes.is_numeric_dtype(s) and not ptypes.is_bool_dtype(s), "a number"),
    "string": (lambda s: ptypes.is_string_dtype(s) or ptypes.is_object_dtype(s), "a string"),
}


def tlc_schema(required: tuple[str, ...]) -> pa.DataFrameSchema:
    """Pandera schema of a TLC file: required columns must exist; every known column has its kind."""
    columns = {}
    for name, kind in COLUMN_KINDS.items():
        check, label = _KIND_CHECKS[kind]
        columns[name] = pa.Column(
            checks=pa.Check(check, element_wise=False, error=f"must be {label}"),
            nullable=True,
            required=name in required,
        )
    return pa.DataFrameSchema(columns, strict=False)


def _problems(errors: pa.errors.SchemaErrors, frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in errors.failure_cases.itertuples():
        column = row.column if isinstance(row.column, str) else str(row.failure_case)
        if row.check == "column_in_dataframe":
            out.append({"column": str(row.failure_case), "problem": "missing required column"})
        else:
            found = str(frame[column].dtype) if column in frame else "?"
            out.append({"column": column, "problem": f"{row.check} (found dtype {found})"})
    return out


_NULLABLE_INTEGERS = {pa_arrow.int8(): pd.Int8Dtype(), pa_arrow.int16(): pd.Int16Dtype(), pa_arrow.int32(): pd.Int32Dtype(),
                      pa_arrow.int64(): pd.Int64Dtype(), pa_arrow.uint8(): pd.UInt8Dtype(),
                      pa_arrow.uint16(): pd.UInt16Dtype(), pa_arrow.uint32(): pd.UInt32Dtype()}


def _fill_all_null_columns(table: pa_arrow.Table, required: tuple[str, ...]) -> tuple[pa_arrow.Table, list[str]]:
    """A column whose every value is null has Arrow's ``null`` type (TLC has shipped such columns):
    give a known optional one its documented type; a required one is reported."""
    null_required = []
    for index, field in enumerate(table.schema):
        if not pa_arrow.types.is_null(field.type):
            continue
        if field.name in required:
            null_required.append(field.name)
        elif field.name in COLUMN_TYPES:
            table = table.set_column(index, field.name, pa_arrow.nulls(table.num_rows, COLUMN_TYPES[field.name]))
    return table, null_required


def _new_york_local(trips: pd.DataFrame) -> pd.DataFrame:
    """TLC's timestamps are New York local times without a zone. A file that carries a zone is
    converted to New York local time and the zone dropped, so every file compares the same way."""
    for column in (PICKUP, DROPOFF):
        if column in trips and isinstance(trips[column].dtype, pd.DatetimeTZDtype):
            trips[column] = trips[column].dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    return trips


def check_schema(raw: RawFile, params: dict) -> tuple[pd.DataFrame, dict]:
    """Parse the raw parquet and judge it whole. Returns (trips, schema report).

    A broken file (unreadable, empty, a layout TLC never published, the other taxi type's file, a
    mistyped column) gets ``ok: false`` and an empty frame; the outcome dataset then quarantines it and
    the run fails with the reason. An accepted file's columns are renamed to one vocabulary
    (trip_duration.schema.RENAMES): ``validated/`` has one schema whatever the type and the year.
    """
    settings = parse(IngestParams, params, "ingest")
    report = {"source_key": raw.key, "source_uri": raw.uri, "taxi": raw.taxi, "bytes": len(raw.body), "ok": False,
              "problems": []}
    empty = pd.DataFrame()
    try:
        table = pq.read_table(io.BytesIO(raw.body))
    except (pa_arrow.ArrowInvalid, pa_arrow.ArrowException, OSError) as err:
        report["problems"].append({"column": None, "problem": f"unreadable parquet: {err}"})
        return empty, report
    report["rows"] = table.num_rows
    report["columns"] = {f.name: str(f.type) for f in table.schema}
    if table.num_rows == 0:
        report["problems"].append({"column": None, "problem": "empty file: 0 rows"})
        return empty, report
    found = taxi_of_columns(table.column_names)
    if found not in (None, raw.taxi):
        times = ", ".join(RAW_TIMES[found])
        right_key = raw.key.replace(f"{raw.taxi}_tripdata_", f"{found}_tripdata_")
        report["problems"].append({"column": None, "problem": (
            f"a {found} taxi file ({times}) under the {raw.taxi} key {raw.key}: move it to {right_key}, "
            f"or ingest it with taxi={found}")})
        return empty, report
    layout, why = match_layout(raw.taxi, table.schema)
    if layout is None:
        report["problems"].append({"column": None, "problem": why})
        return empty, report
    report["layout"] = f"{raw.taxi} {layout}"
    table = table.rename_columns([RENAMES.get(name, name) for name in table.column_names])
    table, null_required = _fill_all_null_columns(table, settings.required_columns)
    if null_required:
        report["problems"] = [{"column": c, "problem": "every value is null"} for c in null_required]
        return empty, report
    # integer columns with nulls stay integers (pandas' nullable Int64), not float64: null ids are
    # row problems (missing_value), not a mistyped file
    with_nulls = {f.type for f in table.schema if f.type in _NULLABLE_INTEGERS and table.column(f.name).null_count}
    trips = table.to_pandas(types_mapper={t: _NULLABLE_INTEGERS[t] for t in with_nulls}.get)
    trips = _new_york_local(trips)
    try:
        tlc_schema(settings.required_columns).validate(trips, lazy=True)
    except pa.errors.SchemaErrors as err:
        report["problems"] = _problems(err, trips)
        return empty, report
    report["ok"] = True
    return trips, report


#: Row-level rules, checked in this order; a row is counted under the first rule it breaks.
ROW_RULES = (
    "missing_value",
    "non_finite_value",
    "duplicate_trip",
    "zone_out_of_range",
    "non_positive_distance",
    "pickup_outside_month",
    "duration_out_of_range",
)


#: Why a row that broke no rule is in quarantine/rows/: its month was refused as a whole.
MONTH_REFUSED = "month_refused"


def _duplicates(trips: pd.DataFrame) -> np.ndarray:
    """Rows equal in every column to an earlier row. A hash of the trip's identifying columns picks
    the candidates (cheap); only those are compared whole, as ``DataFrame.duplicated`` would."""
    keys = [c for c in (PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance", "total_amount") if c in trips]
    candidates = pd.util.hash_pandas_object(trips[keys], index=False).duplicated(keep=False).to_numpy()
    out = np.zeros(len(trips), dtype=bool)
    if candidates.any():
        out[np.flatnonzero(candidates)] = trips.loc[candidates].duplicated(keep="first").to_numpy()
    return out


def _rule_masks(trips: pd.DataFrame, settings: IngestParams, month: Month) -> dict[str, np.ndarray]:
    duration = duration_minutes(trips).to_numpy()
    zones_ok = trips["PULocationID"].between(1, 265) & trips["DOLocationID"].between(1, 265)
    pickup = trips[PICKUP]
    numeric = [c for c in settings.required_columns if c in trips and ptypes.is_float_dtype(trips[c])]
    finite = np.isfinite(trips[numeric].to_numpy(dtype=float)) | trips[numeric].isna().to_numpy()
    return {
        "missing_value": trips[list(settings.required_columns)].isna().any(axis=1).to_numpy(),
        "non_finite_value": ~finite.all(axis=1),
        # TLC files contain exact duplicates: the first is kept, the others counted and kept aside
        "duplicate_trip": _duplicates(trips),
        "zone_out_of_range": ~zones_ok.fillna(False).to_numpy(dtype=bool),
        "non_positive_distance": ~(trips["trip_distance"] > 0).fillna(False).to_numpy(dtype=bool),
        "pickup_outside_month": ~(
            (pickup >= pd.Timestamp(month.start)) & (pickup < pd.Timestamp(month.end))
        ).to_numpy(dtype=bool),
        "duration_out_of_range": ~(
            (duration >= settings.min_duration_minutes) & (duration <= settings.max_duration_minutes)
        ),
    }


def _refusal(schema_report: dict) -> str:
    details = "; ".join(
        f"{p['column']}: {p['problem']}" if p["column"] else p["problem"] for p in schema_report["problems"]
    )
    return (f"{schema_report['source_uri']} rejected: {details}. "
            f"Copied to {schema_report.get('quarantined_to', 'quarantine/')} with its reason; "
            "replace the raw object with a valid TLC file and rerun.")


def _split_rows(trips: pd.DataFrame, schema_report: dict, settings: IngestParams
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict, str | None]:
    """(validated, rejected rows, row report, why the month is refused or None)."""
    month = Month.parse(settings.month)
    masks = _rule_masks(trips, settings, month)
    reason = np.full(len(trips), "", dtype=object)
    for rule in reversed(ROW_RULES):  # the first rule broken wins
        reason[masks[rule]] = rule
    bad = reason != ""
    validated = _plain_integers(trips.loc[~bad].reset_index(drop=True))
    rejected = trips.loc[bad].assign(rejection_reason=reason[bad]).reset_index(drop=True)
    counts = {rule: int((reason == rule).sum()) for rule in ROW_RULES}
    report = {
        "month": str(month),
        "source_uri": schema_report["source_uri"],
        "rows_in": len(trips),
        "rows_out": len(validated),
        "rows_rejected": int(bad.sum()),
        "rejected_by_rule": counts,
        "rejected_fraction": round(float(bad.mean()), 6) if len(trips) else 0.0,
    }
    logger.info(
        "%s: kept %d of %d rows; rejected %s", month, report["rows_out"], report["rows_in"], counts
    )
    refused = None
    if report["rows_out"] == 0:
        refused = (f"{schema_report['source_uri']}: no row passed the row rules ({counts}): every row is in "
                   f"quarantine/rows/ with its reason. Fix the file (is it a {settings.taxi} taxi month of {month}?) and rerun.")
    elif report["rejected_fraction"] > settings.max_rejected_fraction:
        refused = (f"{schema_report['source_uri']}: {report['rejected_fraction']:.1%} of rows broke row rules "
                   f"({counts}), above ingest.max_rejected_fraction={settings.max_rejected_fraction}: "
                   f"the file is probably not a {settings.taxi} taxi month. Fix the file or raise the limit.")
    if refused is None:
        VALIDATED_SCHEMA.validate(validated)
    return validated, rejected, report, refused


def filter_rows(trips: pd.DataFrame, schema_report: dict, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Keep the rows fit for training and scoring. Returns (validated, rejected rows, row report).

    Every dropped row is counted under its reason and kept, with that reason, in the
    rejected-rows output: nothing is lost silently. Raises on a refused file or month.
    """
    if not schema_report["ok"]:
        raise SchemaValidationError(_refusal(schema_report))
    validated, rejected, report, refused = _split_rows(trips, schema_report, parse(IngestParams, params, "ingest"))
    if refused:
        raise SchemaValidationError(refused)
    return validated, rejected, report


@dataclass
class IngestOutcome:
    """Everything one ingest of a month produced, committed as a whole (io.datasets.IngestOutcomeDataset)."""

    month: str
    schema_report: dict
    validated: pd.DataFrame | None
    rejected: pd.DataFrame | None
    rows_report: dict | None
    refused: str | None  # why the month is refused; None: accepted


def ingest_month(trips: pd.DataFrame, schema_report: dict, params: dict) -> IngestOutcome:
    """The month's outcome: accepted (validated rows) or refused (a broken file, or rows that fail
    the month), never an exception for bad data: the outcome is committed first, then
    :func:`require_accepted` fails the run with the reason."""
    settings = parse(IngestParams, params, "ingest")
    if not schema_report["ok"]:
        return IngestOutcome(str(settings.month), schema_report, None, None, None, _refusal(schema_report))
    validated, rejected, report, refused = _split_rows(trips, schema_report, settings)
    if refused:
        report["refused"] = refused
        # the rows that passed go aside too, under the month's reason: a refused month keeps every row
        report["rows_refused_with_month"] = len(validated)
        rejected = pd.concat([rejected, validated.assign(rejection_reason=MONTH_REFUSED)], ignore_index=True)
    return IngestOutcome(str(settings.month), schema_report, None if refused else validated, rejected, report, refused)


def require_accepted(outcome: dict | IngestOutcome) -> None:
    """Fail the run, after the outcome was committed, when the month was refused.

    ``outcome`` is the committed ``outcome.json`` (from S3), or the IngestOutcome itself (a memory catalog)."""
    reason = outcome.refused if isinstance(outcome, IngestOutcome) else (
        None if outcome.get("status") == "accepted" else outcome.get("reason") or f"outcome {outcome!r}")
    if reason:
        raise SchemaValidationError(reason)


def _plain_integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer columns back to numpy int64 where no value is missing (float64 otherwise,
    as before), so downstream code sees the dtypes it always saw."""
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.api.extensions.ExtensionDtype) and ptypes.is_integer_dtype(frame[column]):
            has_na = bool(frame[column].isna().any())
            frame[column] = frame[column].astype("float64" if has_na else "int64")
    return frame


#: What every validated row satisfies (checked on the output as a post-condition).
VALIDATED_SCHEMA = pa.DataFrameSchema(
    {
        PICKUP: pa.Column(nullable=False, checks=pa.Check(ptypes.is_datetime64_any_dtype, element_wise=False)),
        DROPOFF: pa.Column(nullable=False, checks=pa.Check(ptypes.is_datetime64_any_dtype, element_wise=False)),
        "PULocationID": pa.Column(nullable=False, checks=pa.Check.in_range(1, 265)),
        "DOLocationID": pa.Column(nullable=False, checks=pa.Check.in_range(1, 265)),
        "trip_distance": pa.Column(nullable=False, checks=pa.Check.gt(0)),
    },
    strict=False,
)
