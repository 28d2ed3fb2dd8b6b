"""A user's error is one line in the run's logs; a bug keeps its traceback."""

from __future__ import annotations

import logging

import pytest
from kedro.io import DatasetError

from trip_duration import logs
from trip_duration.errors import DataNotFoundError


def _failed_record(err: BaseException, logger: str = "prefect.task_runs") -> logging.LogRecord:
    try:
        raise err
    except BaseException as raised:  # noqa: BLE001
        import sys

        return logging.LogRecord(logger, logging.ERROR, __file__, 1,
                                 "Task run failed with exception: %r - Retries are exhausted",
                                 (raised,), sys.exc_info())


def _wrapped() -> DatasetError:
    ours = DataNotFoundError("s3://trips/validated/year=2023/month=07/trips.parquet is missing: "
                             "run the ingest pipeline for 2023-07 first")
    try:
        try:
            raise ours
        except DataNotFoundError as inner:
            raise DatasetError("Failed while loading data from dataset train_trips") from inner
    except DatasetError as outer:
        return outer


@pytest.fixture
def handler():
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append
    tb = logging.getLogger(logs.TRACEBACK_LOGGER)
    saved = tb.level
    tb.setLevel(logging.DEBUG)  # only this logger: the run's own loggers stay at INFO
    tb.addHandler(capture)
    yield records
    tb.removeHandler(capture)
    tb.setLevel(saved)


def test_our_error_behind_kedros_wrapping_becomes_one_line_and_its_traceback_a_debug_record(handler):
    record = _failed_record(_wrapped())
    assert logs.OneLineErrors().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("Task run failed with exception: DataNotFoundError: s3://trips/validated/")
    assert line.endswith("run the ingest pipeline for 2023-07 first")
    assert record.exc_info is None
    (kept,) = handler  # the traceback is not lost: a DEBUG record carries it
    assert kept.levelno == logging.DEBUG and isinstance(kept.exc_info[1], DatasetError)


def test_a_bug_keeps_its_traceback():
    record = _failed_record(KeyError("model_rmse"))
    assert logs.OneLineErrors().filter(record)
    assert "Traceback" in logging.Formatter("%(message)s").format(record)


def test_debug_level_keeps_every_traceback():
    project = logging.getLogger("trip_duration")
    saved = project.level
    project.setLevel(logging.DEBUG)
    try:
        record = _failed_record(_wrapped())
        logs.OneLineErrors().filter(record)
        assert "Traceback" in logging.Formatter("%(message)s").format(record)
    finally:
        project.setLevel(saved)


def test_install_puts_the_filter_once_on_each_prefect_run_logger():
    logs.install()
    logs.install()
    for name in logs.PREFECT_RUN_LOGGERS:
        assert sum(isinstance(f, logs.OneLineErrors) for f in logging.getLogger(name).filters) == 1
