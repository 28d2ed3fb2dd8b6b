"""Fetching a month from the source URL into raw/ (trip_duration.io.tlc), against a local HTTP server
standing in for TLC's CloudFront and the stack's real S3 server (moto, over HTTP)."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections import Counter

import pyarrow.parquet as pq
import pytest
from kedro.io import DatasetError

from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.io import s3, tlc
from trip_duration.io.datasets import RawMonthDataset
from trip_duration.periods import Month
from trip_duration.synth import generate_month


def _parquet(month: str, taxi: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(generate_month(month, rows=3_000, seed=5, taxi=taxi), buffer)
    return buffer.getvalue()


class _Source(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` by name; ``drops[name]`` requests of a name break after half the body."""

    files: dict[str, bytes] = {}
    drops: Counter = Counter()
    errors: Counter = Counter()  # name -> 503s to answer first
    hits: Counter = Counter()

    def do_GET(self):  # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        self.hits[name] += 1
        if name not in self.files:
            self.send_error(404)
            return
        if self.errors[name]:
            self.errors[name] -= 1
            self.send_error(503)
            return
        body = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.drops[name]:
            self.drops[name] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-body
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def source(monkeypatch):
    _Source.files, _Source.drops, _Source.errors, _Source.hits = {}, Counter(), Counter(), Counter()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Source)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TRIP_DURATION_SOURCE_URL",
                       f"http://127.0.0.1:{server.server_address[1]}/trip-data/{{taxi}}_tripdata_{{month}}.parquet")
    monkeypatch.setattr(tlc, "BACKOFF_S", 0.05)
    get_settings.cache_clear()
    yield _Source
    server.shutdown()
    get_settings.cache_clear()


def _load(month: str, taxi: str):
    return RawMonthDataset(month=month, taxi=taxi).load()


def _failure(month: str, taxi: str) -> BaseException:
    """The error a load raised (Kedro wraps it in a DatasetError: its cause)."""
    with pytest.raises(DatasetError) as caught:
        _load(month, taxi)
    return caught.value.__cause__


def _raw_exists(stack, taxi: str, month: str) -> bool:
    return s3.exists(stack.bucket, layout.raw_key(taxi, Month.parse(month)))


def test_a_missing_month_is_fetched_once_whole_under_tlcs_file_name(ml_stack, source):
    body = _parquet("2034-01", "green")
    source.files["green_tripdata_2034-01.parquet"] = body
    first = _load("2034-01", "green")
    assert first.key == "raw/green_tripdata_2034-01.parquet" and first.body == body and first.taxi == "green"
    stored = s3.get_bytes(ml_stack.bucket, first.key)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(body).digest()
    assert _load("2034-01", "green").body == body
    assert source.hits["green_tripdata_2034-01.parquet"] == 1  # the second load read raw/, not the source
    assert not _raw_exists(ml_stack, "yellow", "2034-01")  # the other type's key is untouched


def test_not_published_is_a_404_and_leaves_nothing(ml_stack, source):
    error = _failure("2034-02", "green")
    assert isinstance(error, tlc.NotPublishedError)
    assert "green_tripdata_2034-02.parquet answered 404: that month is not published (yet)" in str(error)
    assert not _raw_exists(ml_stack, "green", "2034-02")


def test_a_connection_that_drops_mid_body_is_retried_and_only_the_whole_file_lands(ml_stack, source, caplog):
    body = _parquet("2034-03", "yellow")
    source.files["yellow_tripdata_2034-03.parquet"] = body
    source.drops["yellow_tripdata_2034-03.parquet"] = 1
    source.errors["yellow_tripdata_2034-03.parquet"] = 1
    assert _load("2034-03", "yellow").body == body
    assert source.hits["yellow_tripdata_2034-03.parquet"] == 3  # 503, dropped, whole
    assert "answered 503 (attempt 1 of 3)" in caplog.text and "(attempt 2 of 3)" in caplog.text
    assert s3.get_bytes(ml_stack.bucket, "raw/yellow_tripdata_2034-03.parquet") == body


def test_a_source_that_keeps_dropping_fails_after_every_attempt_and_leaves_nothing(ml_stack, source):
    source.files["yellow_tripdata_2034-04.parquet"] = _parquet("2034-04", "yellow")
    source.drops["yellow_tripdata_2034-04.parquet"] = 10
    error = _failure("2034-04", "yellow")
    assert isinstance(error, tlc.FetchError) and "received" in str(error)
    assert "gave up after 3 attempts: rerun later, or upload the file to raw/ yourself" in str(error)
    assert source.hits["yellow_tripdata_2034-04.parquet"] == 3
    assert not _raw_exists(ml_stack, "yellow", "2034-04")


def test_a_body_that_is_not_parquet_never_reaches_raw(ml_stack, source):
    source.files["yellow_tripdata_2034-05.parquet"] = b"<html>Access denied</html>"
    error = _failure("2034-05", "yellow")
    assert isinstance(error, tlc.FetchError) and "not a parquet file" in str(error)
    assert "check TRIP_DURATION_SOURCE_URL" in str(error)
    assert not _raw_exists(ml_stack, "yellow", "2034-05")
