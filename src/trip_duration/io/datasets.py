"""Kedro datasets for the S3 layout in :mod:`trip_duration.layout`.

Keys are built from run-time parameters (``--params month=2023-01``); a dataset whose
parameter is missing fails on use with a message naming the parameter, so one catalog
serves every pipeline. Every write is a single PutObject: whole or absent, and a rerun
replaces the same key.
"""

from __future__ import annotations

import io as _io
import logging
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.errors import ConfigError, DataNotFoundError
from trip_duration.io import s3
from trip_duration.periods import DateRange, Month
from trip_duration.schema import PICKUP, RawFile

logger = logging.getLogger(__name__)


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
    """Shared plumbing: the bucket comes from TRIP_DURATION_BUCKET at use, not at import."""

    def _bucket(self) -> str:
        return get_settings().require_bucket()

    def _describe(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


class RawMonthDataset(_S3Dataset):
    """The TLC month under ``raw/``; fetched once from the TLC URL pattern if absent. Read-only."""

    def __init__(self, month: str | None = None):
        self.month = month

    def load(self) -> RawFile:
        month = _month(self.month, "month")
        bucket, key = self._bucket(), layout.raw_key(month)
        try:
            body = s3.get_bytes(bucket, key)
        except DataNotFoundError:
            body = self._fetch(month, bucket, key)
        return RawFile(key=key, uri=layout.s3_uri(bucket, key), body=body)

    @staticmethod
    def _fetch(month: Month, bucket: str, key: str) -> bytes:
        pattern = get_settings().source_url
        if not pattern:
            raise DataNotFoundError(
                f"s3://{bucket}/{key} does not exist and TRIP_DURATION_SOURCE_URL is empty: upload the month, "
                f"or generate one with `trip-duration generate --month {month}`"
            )
        url = pattern.format(month=month)
        logger.info("%s is not in the bucket yet: fetching %s", key, url)
        body = s3.download(url)
        s3.put_bytes(bucket, key, body)
        return body

    def save(self, data: Any) -> None:
        raise DatasetError("raw/ is read-only: the pipeline never modifies or replaces a raw object")


class SchemaReportDataset(_S3Dataset):
    """Saves the schema verdict; a rejected file is first copied to quarantine/ with its reason."""

    def __init__(self, month: str | None = None):
        self.month = month

    def _key(self) -> str:
        return layout.schema_report_key(_month(self.month, "month"))

    def save(self, report: dict) -> None:
        bucket = self._bucket()
        report = dict(report)
        if not report["ok"]:
            source = report["source_key"]
            report["quarantined_to"] = s3.copy(bucket, source, layout.quarantine_key(source))
            s3.put_json(bucket, layout.quarantine_reason_key(source), report)
            logger.error("rejected %s: copied to %s", source, report["quarantined_to"])
        s3.put_json(bucket, self._key(), report)

    def load(self) -> dict:
        return s3.get_json(self._bucket(), self._key())


class MonthParquetDataset(_S3Dataset):
    """A month-keyed parquet object: ``kind`` is ``validated`` or ``rejected_rows``."""

    _KEYS = {
        "validated": layout.validated_key,
        "rejected_rows": lambda m: layout.quarantine_key(f"rows/year={m.year:04d}/month={m.month:02d}.parquet"),
    }

    def __init__(self, kind: str, month: str | None = None, month_param: str = "month"):
        if kind not in self._KEYS:
            raise ConfigError(f"MonthParquetDataset kind={kind!r}: use one of {sorted(self._KEYS)}")
        self.kind, self.month, self.month_param = kind, month, month_param

    def _key(self) -> str:
        return self._KEYS[self.kind](_month(self.month, self.month_param))

    def load(self) -> pd.DataFrame:
        key = self._key()
        try:
            body = s3.get_bytes(self._bucket(), key)
        except DataNotFoundError as err:
            raise DataNotFoundError(
                f"{err}: run the ingest pipeline for that month first "
                f"(kedro run --pipeline ingest --params month={self.month})"
            ) from err
        return pd.read_parquet(_io.BytesIO(body))

    def save(self, frame: pd.DataFrame) -> None:
        s3.put_bytes(self._bucket(), self._key(), to_parquet_bytes(frame))


class MonthJsonDataset(_S3Dataset):
    """A month-keyed JSON report (``kind``: ``rows``)."""

    def __init__(self, kind: str = "rows", month: str | None = None):
        self.kind, self.month = kind, month

    def _key(self) -> str:
        return layout.rows_report_key(_month(self.month, "month"))

    def load(self) -> dict:
        return s3.get_json(self._bucket(), self._key())

    def save(self, report: dict) -> None:
        s3.put_json(self._bucket(), self._key(), report)


class BatchTripsDataset(_S3Dataset):
    """Validated trips of an inference batch: every month it overlaps, cut to ``[start, end)``."""

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None):
        self.month, self.start, self.end = month, start, end

    def load(self) -> pd.DataFrame:
        batch = resolve_batch(self.month, self.start, self.end)
        bucket, frames = self._bucket(), []
        for month in batch.months():
            key = layout.validated_key(month)
            try:
                body = s3.get_bytes(bucket, key)
            except DataNotFoundError as err:
                raise DataNotFoundError(
                    f"{err}: ingest {month} before scoring it (kedro run --pipeline ingest --params month={month})"
                ) from err
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

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None):
        self.month, self.start, self.end = month, start, end
        self._last_uri: str | None = None

    def save(self, predictions: pd.DataFrame) -> None:
        versions = predictions["model_version"].unique()
        if len(versions) != 1:
            raise ValueError(f"one batch is scored by one model version, got {list(versions)}")
        batch = resolve_batch(self.month, self.start, self.end)
        key = layout.predictions_key(batch, versions[0])
        self._last_uri = s3.put_bytes(self._bucket(), key, to_parquet_bytes(predictions))

    def load(self) -> pd.DataFrame:
        if self._last_uri is None:
            raise DatasetError("predictions are only readable after this run saved them")
        bucket, key = self._last_uri.removeprefix("s3://").split("/", 1)
        return pd.read_parquet(_io.BytesIO(s3.get_bytes(bucket, key)))


class InferenceSummaryDataset(_S3Dataset):
    """The batch summary JSON, next to the predictions it describes."""

    def __init__(self, month: str | None = None, start: str | None = None, end: str | None = None):
        self.month, self.start, self.end = month, start, end
        self._last: dict | None = None

    def save(self, summary: dict) -> None:
        batch = resolve_batch(self.month, self.start, self.end)
        bucket = self._bucket()
        summary = {
            **summary,
            "batch": batch.label,
            "predictions_uri": layout.s3_uri(bucket, layout.predictions_key(batch, summary["model_version"])),
        }
        s3.put_json(bucket, layout.inference_summary_key(batch, summary["model_version"]), summary)
        self._last = summary

    def load(self) -> dict:
        if self._last is None:
            raise DatasetError("the summary is only readable after this run saved it")
        return self._last


class PromotionReportDataset(_S3Dataset):
    """The promotion decision as JSON, keyed by training month and registry version."""

    def __init__(self, train_month: str | None = None):
        self.train_month = train_month
        self._last: dict | None = None

    def save(self, report: dict) -> None:
        key = layout.promotion_report_key(_month(self.train_month, "train_month"), report["version"])
        uri = s3.put_json(self._bucket(), key, report)
        self._last = {**report, "report_uri": uri}

    def load(self) -> dict:
        if self._last is None:
            raise DatasetError("the promotion report is only readable after this run saved it")
        return self._last
