"""Ingest: check a raw TLC month's schema as a whole, then filter bad rows and count them."""

from __future__ import annotations

import io
import logging

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
from trip_duration.schema import COLUMN_KINDS, DROPOFF, PICKUP, RawFile

logger = logging.getLogger(__name__)

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


def check_schema(raw: RawFile, params: dict) -> tuple[pd.DataFrame, dict]:
    """Parse the raw parquet and judge it whole. Returns (trips, schema report).

    A broken file (unreadable, empty, missing or mistyped column) gets ``ok: false`` and
    an empty frame; the report dataset then quarantines it and ``filter_rows`` refuses it.
    """
    settings = parse(IngestParams, params, "ingest")
    report = {"source_key": raw.key, "source_uri": raw.uri, "bytes": len(raw.body), "ok": False, "problems": []}
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
    trips = table.to_pandas()
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
    "zone_out_of_range",
    "non_positive_distance",
    "pickup_outside_month",
    "duration_out_of_range",
)


def _rule_masks(trips: pd.DataFrame, settings: IngestParams, month: Month) -> dict[str, np.ndarray]:
    duration = duration_minutes(trips).to_numpy()
    zones_ok = trips["PULocationID"].between(1, 265) & trips["DOLocationID"].between(1, 265)
    pickup = trips[PICKUP]
    return {
        "missing_value": trips[list(settings.required_columns)].isna().any(axis=1).to_numpy(),
        "zone_out_of_range": ~zones_ok.fillna(False).to_numpy(dtype=bool),
        "non_positive_distance": ~(trips["trip_distance"] > 0).fillna(False).to_numpy(dtype=bool),
        "pickup_outside_month": ~(
            (pickup >= pd.Timestamp(month.start)) & (pickup < pd.Timestamp(month.end))
        ).to_numpy(dtype=bool),
        "duration_out_of_range": ~(
            (duration >= settings.min_duration_minutes) & (duration <= settings.max_duration_minutes)
        ),
    }


def filter_rows(trips: pd.DataFrame, schema_report: dict, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Keep the rows fit for training and scoring. Returns (validated, rejected rows, row report).

    Every dropped row is counted under its reason and kept, with that reason, in the
    rejected-rows output: nothing is lost silently.
    """
    if not schema_report["ok"]:
        details = "; ".join(
            f"{p['column']}: {p['problem']}" if p["column"] else p["problem"] for p in schema_report["problems"]
        )
        raise SchemaValidationError(
            f"{schema_report['source_uri']} rejected: {details}. "
            f"Copied to {schema_report.get('quarantined_to', 'quarantine/')} with its reason; "
            "replace the raw object with a valid TLC file and rerun."
        )
    settings = parse(IngestParams, params, "ingest")
    month = Month.parse(settings.month)
    masks = _rule_masks(trips, settings, month)
    reason = np.full(len(trips), "", dtype=object)
    for rule in reversed(ROW_RULES):  # the first rule broken wins
        reason[masks[rule]] = rule
    bad = reason != ""
    validated = trips.loc[~bad].reset_index(drop=True)
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
    if report["rejected_fraction"] > settings.max_rejected_fraction:
        raise SchemaValidationError(
            f"{schema_report['source_uri']}: {report['rejected_fraction']:.1%} of rows broke row rules "
            f"({counts}), above ingest.max_rejected_fraction={settings.max_rejected_fraction}: "
            "the file is probably not a yellow-taxi month. Fix the file or raise the limit."
        )
    VALIDATED_SCHEMA.validate(validated)
    return validated, rejected, report


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
