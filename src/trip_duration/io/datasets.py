"""Our Kedro datasets for the S3 layout in :mod:`trip_duration.layout`, where kedro-datasets' do not fit.

Keys are built from run-time parameters (``--params month=2023-01``); a dataset whose
parameter is missing fails on use with a message naming the parameter, so one catalog
serves every pipeline. Every write is a single PutObject: whole or absent, and a rerun
replaces the same key. Validated months are read by kedro-datasets' ``pandas.ParquetDataset``
(conf/base/catalog.yml), checked against the committed outcome by :func:`check_committed` and
:func:`check_unchanged` (called by ``hooks.CommittedReadsHooks``).
"""

from __future__ import annotations

import hashlib
import io as _io
import logging
import re
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.errors import BatchTooLargeError, ConfigError, DataNotFoundError, SchemaValidationError
from trip_duration.io import s3, tlc
from trip_duration.periods import DateRange, Month
from trip_duration.resources import INFERENCE_BYTES_PER_ROW, Memory, memory_available, size
from trip_duration.schema import DEFAULT_TAXI, PICKUP, RawFile, parse_taxi

logger = logging.getLogger(__name__)

UNSET_BUCKET = "unset-TRIP_DURATION_BUCKET"  # the catalog's ${bucket:} when the variable is not set: fails at use


def _month(value: str | None, param: str) -> Month:
    if value in (None, "", "null"):
        raise ConfigError(f"parameter {param} is not set: set {param}=YYYY-MM (e.g. {param}=2023-01)")
    return Month.parse(value, key=param)


def resolve_batch(month: str | None, start: str | None, end: str | None) -> DateRange:
    """The inference batch: ``batch_month`` or ``batch_start``/``batch_end``."""
    if month not in (None, "", "null"):
        if start or end:
            raise ConfigError("set either batch_month or batch_start/batch_end, not both")
        return DateRange.of_month(Month.parse(month, key="batch_month"))
    if start and end:
        return DateRange.parse(start, end)
    if start or end:
        have, missing = ("batch_start", "batch_end") if start else ("batch_end", "batch_start")
        raise ConfigError(
            f"{have}={start or end} is set but {missing} is not: set {missing}=YYYY-MM-DD too "
            "(the batch is [batch_start, batch_end)), or set batch_month=YYYY-MM instead"
        )
    raise ConfigError("no inference batch: set batch_month=YYYY-MM, or batch_start and batch_end (YYYY-MM-DD)")


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = _io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


class _S3Dataset(AbstractDataset):
    """Shared plumbing: the bucket comes from TRIP_DURATION_BUCKET at use, not at import; the taxi type
    (``taxi``, default yellow) is checked at use too, so a bad ``--params taxi=`` names itself."""

    taxi: str = DEFAULT_TAXI

    def _bucket(self) -> str:
        return get_settings().require_bucket()

    def _taxi(self) -> str:
        return parse_taxi(self.taxi)

    def _describe(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class RawMonthDataset(_S3Dataset):
    """The TLC month under ``raw/{taxi}_tripdata_YYYY-MM.parquet``; fetched once from the source URL
    pattern when absent (trip_duration.io.tlc: streamed, size-checked, then one PutObject). Read-only."""

    def __init__(self, month: str | None = None, taxi: str = DEFAULT_TAXI):
        self.month, self.taxi = month, taxi

    def load(self) -> RawFile:
        month, taxi = _month(self.month, "month"), self._taxi()
        bucket, key = self._bucket(), layout.raw_key(taxi, month)
        try:
            body = s3.get_bytes(bucket, key)
        except DataNotFoundError:
            body = tlc.fetch_month(taxi, month, bucket, key)
        return RawFile(key=key, uri=layout.s3_uri(bucket, key), body=body, taxi=taxi)

    def save(self, data: Any) -> None:
        raise DatasetError("raw/ is read-only: the pipeline never modifies or replaces a raw object")


def require_ingested(bucket: str, month: Month, taxi: str = DEFAULT_TAXI) -> dict:
    """The month's committed ingest outcome, which every reader of validated/ requires.

    Raises DataNotFoundError (never ingested, or an ingest in progress or interrupted) or
    SchemaValidationError (the month was refused), each naming the fix.
    """
    fix = f"kedro run --pipeline ingest --params month={month},taxi={taxi}"
    key = layout.ingest_outcome_key(taxi, month)
    try:
        outcome = s3.get_json(bucket, key)
    except DataNotFoundError as err:
        raise DataNotFoundError(
            f"{taxi} {month} has no committed ingest outcome (s3://{bucket}/{key}): it was never "
            f"ingested, or its ingest was interrupted; ingest it ({fix})") from err
    if outcome.get("status") != "accepted":
        raise SchemaValidationError(f"{taxi} {month} was refused at ingest: {outcome.get('reason')}")
    return outcome


def is_ingested(bucket: str, month: Month, taxi: str = DEFAULT_TAXI) -> bool:
    """True when the month has a committed, accepted ingest outcome."""
    try:
        require_ingested(bucket, month, taxi)
    except (DataNotFoundError, SchemaValidationError):
        return False
    return True


def read_validated(bucket: str, month: Month, outcome: dict | None = None, taxi: str = DEFAULT_TAXI) -> bytes:
    """The validated parquet of an accepted month, checked against its committed outcome (read here
    unless the caller has just read it with :func:`require_ingested`)."""
    outcome = outcome or require_ingested(bucket, month, taxi)
    body = s3.get_bytes(bucket, layout.validated_key(taxi, month))
    if hashlib.sha256(body).hexdigest() != outcome["validated_sha256"]:
        raise _not_committed(bucket, taxi, month)
    return body


def _not_committed(bucket: str, taxi: str, month: Month) -> DataNotFoundError:
    return DataNotFoundError(
        f"s3://{bucket}/{layout.validated_key(taxi, month)} is not the one {layout.ingest_outcome_key(taxi, month)} "
        f"committed (an ingest of {taxi} {month} is running or was interrupted): rerun once it has finished, "
        "or ingest the month again")


_VALIDATED_PATH = re.compile(
    r"^(?:s3a?://)?(?P<bucket>[^/]+)/validated/taxi=(?P<taxi>[^/]+)/"
    r"(?:year=(?P<year>\d{4})/month=(?P<month>\d{2})|(?P<unset>\w+)=unset)/trips\.parquet$")


def validated_target(path: str) -> tuple[str, str, Month] | None:
    """``(bucket, taxi, month)`` of a catalog path to a validated month (``s3://<bucket>/validated/...``), None
    for any other path. A month parameter that was not set (the catalog's ``${month_dir:}`` wrote
    ``<param>=unset``) and a bad taxi type fail here, naming the parameter and the fix."""
    found = _VALIDATED_PATH.match(path)
    if found is None:
        return None
    if found["unset"]:
        _month(None, found["unset"])  # raises, naming the parameter
    bucket = found["bucket"] if found["bucket"] != UNSET_BUCKET else get_settings().require_bucket()
    return bucket, parse_taxi(found["taxi"]), Month.parse(f"{found['year']}-{found['month']}")


def check_committed(bucket: str, taxi: str, month: Month) -> str:
    """Before a generic reader (kedro-datasets) reads validated/: the month's ingest outcome is committed and
    accepted, and the object is the one it committed. Returns the ETag the read must still find after.

    An outcome committed before ETags were recorded (``validated_etag``) is checked by its SHA-256
    instead, at the price of one extra read."""
    outcome = require_ingested(bucket, month, taxi)
    key = layout.validated_key(taxi, month)
    if outcome.get("validated_etag") is None:
        read_validated(bucket, month, outcome, taxi)
        return s3.etag(bucket, key)
    if s3.etag(bucket, key) != outcome["validated_etag"]:
        raise _not_committed(bucket, taxi, month)
    return outcome["validated_etag"]


def check_unchanged(bucket: str, taxi: str, month: Month, expected: str | None) -> None:
    """After that read: the object is still the committed one. s3fs pins every range it reads to the ETag
    it saw when it opened the object; this closes the gap between :func:`check_committed` and that open
    (an ingest replacing the month meanwhile fails the read instead of feeding it to training)."""
    if s3.etag(bucket, layout.validated_key(taxi, month)) != expected:
        raise _not_committed(bucket, taxi, month)


class IngestOutcomeDataset(_S3Dataset):
    """One ingest outcome per month, replaced as a whole.

    Saving removes the month's ``outcome.json`` first (readers stop trusting the old outcome),
    writes the new reports and data, removes what the old outcome had that the new one has not
    (a refused month keeps no ``validated/``), and writes ``outcome.json`` last. Readers require it
    (:func:`require_ingested`), and check ``validated/`` against its SHA-256, so an interrupted ingest
    leaves a month that reads as "not ingested", never half of one. A refused file is copied to
    ``quarantine/`` with its reason; a refused month's rows are all kept in ``quarantine/rows/``.
    """

    def __init__(self, month: str | None = None, taxi: str = DEFAULT_TAXI):
        self.month, self.taxi = month, taxi

    def save(self, outcome: Any) -> None:
        month, taxi = _month(self.month, "month"), self._taxi()
        bucket = self._bucket()
        outcome_key, validated_key = layout.ingest_outcome_key(taxi, month), layout.validated_key(taxi, month)
        s3.delete(bucket, outcome_key)
        report = dict(outcome.schema_report)
        source = report["source_key"]
        reason_key = layout.quarantine_reason_key(source)
        written: dict[str, str] = {}
        validated_etag = None
        if outcome.refused:
            report["quarantined_to"] = s3.copy(bucket, source, layout.quarantine_key(source))
            report["refused"] = outcome.refused
            s3.put_json(bucket, reason_key, report)
            logger.error("refused %s: copied to %s", source, report["quarantined_to"])
            report["ok"] = False  # the month's verdict, whichever check refused it
            s3.delete(bucket, validated_key)
        else:
            body = to_parquet_bytes(outcome.validated)
            validated_etag = s3.put(bucket, validated_key, body)
            written["validated"] = layout.s3_uri(bucket, validated_key)
            if s3.exists(bucket, reason_key):  # an earlier refusal of this raw key: superseded, kept
                old = s3.get_json(bucket, reason_key)
                old["superseded"] = f"{month} was ingested and accepted since; this copy is kept as evidence"
                s3.put_json(bucket, reason_key, old)
        if outcome.rejected is not None and len(outcome.rejected):
            written["rejected_rows"] = s3.put_bytes(bucket, layout.rejected_rows_key(taxi, month),
                                                    to_parquet_bytes(outcome.rejected))
        else:
            s3.delete(bucket, layout.rejected_rows_key(taxi, month))
        if outcome.rows_report is not None:
            written["rows_report"] = s3.put_json(bucket, layout.rows_report_key(taxi, month), outcome.rows_report)
        else:
            s3.delete(bucket, layout.rows_report_key(taxi, month))
        written["schema_report"] = s3.put_json(bucket, layout.schema_report_key(taxi, month), report)
        committed = {
            "month": str(month),
            "taxi": taxi,
            "layout": report.get("layout"),
            "status": "refused" if outcome.refused else "accepted",
            "reason": outcome.refused,
            "source_uri": report["source_uri"],
            "rows_out": outcome.rows_report["rows_out"] if outcome.rows_report and not outcome.refused else 0,
            "validated_sha256": None if outcome.refused else hashlib.sha256(body).hexdigest(),
            "validated_etag": validated_etag,  # what kedro-datasets' readers check (hooks.CommittedReadsHooks)
            "written": written,
        }
        s3.put_json(bucket, outcome_key, committed)  # last: the commit

    def load(self) -> dict:
        return s3.get_json(self._bucket(), layout.ingest_outcome_key(self._taxi(), _month(self.month, "month")))


def check_batch_fits(batch: DateRange, outcomes: dict[Month, dict], memory: Memory | None = None) -> int:
    """Refuse, before anything is read, a batch whose scoring would not fit in this process's memory
    (the pod's limit): an OOM kill says nothing in the run's logs. Returns the estimated bytes.

    Rows are the months' committed counts, prorated by the days of each month inside the batch."""
    rows = 0.0
    for month, outcome in outcomes.items():
        inside = (min(batch.end, month.end) - max(batch.start, month.start)).days
        rows += outcome.get("rows_out", 0) * max(inside, 0) / (month.end - month.start).days
    need = int(rows * INFERENCE_BYTES_PER_ROW)
    memory = memory or memory_available()
    if need > memory.available:
        days = (batch.end - batch.start).days
        step = max(1, days // -(-need // max(memory.available, 1)))  # days a part, parts = ceil(need / room)
        first = DateRange(batch.start, min(batch.end, batch.start + timedelta(days=step)))
        raise BatchTooLargeError(
            f"batch {batch.label} holds ~{rows:,.0f} validated trips, ~{size(need)} to score "
            f"({INFERENCE_BYTES_PER_ROW} B a trip), more than the {size(memory.available)} this run can use "
            f"({memory.source}): score it in parts of at most {step} days (batch_start={first.start} "
            f"batch_end={first.end}, and so on), or give the run more memory (prefect.yaml: the infer "
            "deployment's memory_limit)")
    return need


class BatchTripsDataset(_S3Dataset):
    """Validated trips of an inference batch: every month it overlaps, cut to ``[start, end)``."""

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None,
                 taxi: str = DEFAULT_TAXI):
        self.month, self.start, self.end, self.taxi = month, start, end, taxi

    def load(self) -> pd.DataFrame:
        batch, taxi = resolve_batch(self.month, self.start, self.end), self._taxi()
        bucket, frames = self._bucket(), []
        outcomes = {month: require_ingested(bucket, month, taxi) for month in batch.months()}
        check_batch_fits(batch, outcomes)
        for month, outcome in outcomes.items():
            body = read_validated(bucket, month, outcome, taxi)
            filters = [
                (PICKUP, ">=", pd.Timestamp(batch.start)),
                (PICKUP, "<", pd.Timestamp(batch.end)),
            ]
            frames.append(pq.read_table(_io.BytesIO(body), filters=filters).to_pandas())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def save(self, data: Any) -> None:
        raise DatasetError("the inference batch is read-only")


class PredictionsDataset(_S3Dataset):
    """Predictions parquet at a key set by the batch and the ``model_version`` column."""

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None,
                 taxi: str = DEFAULT_TAXI):
        self.month, self.start, self.end, self.taxi = month, start, end, taxi
        self._last_uri: str | None = None
        self._last_version: int | None = None

    def save(self, predictions: pd.DataFrame) -> None:
        from trip_duration.pipelines.inference.nodes import model_version_of

        version = model_version_of(predictions)
        batch = resolve_batch(self.month, self.start, self.end)
        key = layout.predictions_key(self._taxi(), batch, version)
        self._last_uri = s3.put_bytes(self._bucket(), key, to_parquet_bytes(predictions))
        self._last_version = version

    def load(self) -> pd.DataFrame:
        if self._last_uri is None:
            raise DatasetError("predictions are only readable after this run saved them")
        bucket, key = self._last_uri.removeprefix("s3://").split("/", 1)
        frame = pd.read_parquet(_io.BytesIO(s3.get_bytes(bucket, key)))
        frame.attrs["model_version"] = self._last_version
        return frame


class InferenceSummaryDataset(_S3Dataset):
    """The batch summary JSON, next to the predictions it describes."""

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None,
                 taxi: str = DEFAULT_TAXI):
        self.month, self.start, self.end, self.taxi = month, start, end, taxi
        self._last: dict | None = None

    def save(self, summary: dict) -> None:
        batch, taxi = resolve_batch(self.month, self.start, self.end), self._taxi()
        bucket, version = self._bucket(), summary["model_version"]
        summary = {
            **summary,
            "taxi": taxi,
            "batch": batch.label,
            "predictions_uri": layout.s3_uri(bucket, layout.predictions_key(taxi, batch, version)),
        }
        s3.put_json(bucket, layout.inference_summary_key(taxi, batch, version), summary)
        self._last = summary

    def load(self) -> dict:
        if self._last is None:
            raise DatasetError("the summary is only readable after this run saved it")
        return self._last


class PromotionReportDataset(_S3Dataset):
    """The promotion decision as JSON, keyed by training month and registry version."""

    def __init__(self, train_month: str | None = None, taxi: str = DEFAULT_TAXI):
        self.train_month, self.taxi = train_month, taxi
        self._last: dict | None = None

    def save(self, report: dict) -> None:
        key = layout.promotion_report_key(self._taxi(), _month(self.train_month, "train_month"), report["version"])
        uri = s3.put_json(self._bucket(), key, report)
        self._last = {**report, "report_uri": uri}

    def load(self) -> dict:
        if self._last is None:
            raise DatasetError("the promotion report is only readable after this run saved it")
        return self._last


class FittedModelDataset(_S3Dataset):
    """The XGBoost model one run of the ``fit`` deployment fitted (README, "Only the fit on the GPU"), at
    ``candidates/taxi={taxi}/train={train_month}/fit={fit_run}/model.json``: JSON with a UBJSON booster
    (``TripDurationModel.to_bytes``), never a pickle; anything else is refused on load.

    why custom: the key holds the fit's flow run, and the format is ours (data, not code)."""

    def __init__(self, train_month: str | None = None, fit_run: str | None = None, taxi: str = DEFAULT_TAXI):
        self.train_month, self.fit_run, self.taxi = train_month, fit_run, taxi
        self._loaded: tuple[str, Any] | None = None  # evaluate and register_model read it: fetched once

    def _key(self) -> str:
        if self.fit_run in (None, "", "null"):
            raise ConfigError("parameter fit_run is not set: set fit_run=<the fit's flow run id> (the training "
                              "flow sets it; kedro run --pipeline fit --params fit_run=<any id>,train_month=YYYY-MM)")
        return layout.candidate_key(self._taxi(), _month(self.train_month, "train_month"), str(self.fit_run))

    def save(self, model: Any) -> None:
        s3.put_bytes(self._bucket(), self._key(), model.to_bytes(), content_type="application/json")

    def load(self) -> Any:
        from trip_duration.models import TripDurationModel

        bucket, key = self._bucket(), self._key()
        if self._loaded is None or self._loaded[0] != key:
            try:
                body = s3.get_bytes(bucket, key)
            except DataNotFoundError as err:
                raise DataNotFoundError(
                    f"{layout.s3_uri(bucket, key)} does not exist: fit run {self.fit_run} has not written its model "
                    f"(it failed, or has not finished); kubectl logs -l prefect.io/flow-run-id={self.fit_run}") from err
            self._loaded = (key, TripDurationModel.from_bytes(body, layout.s3_uri(bucket, key)))
        return self._loaded[1]
