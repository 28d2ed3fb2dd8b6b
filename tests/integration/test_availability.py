"""A scheduled run picks the newest month that has data and is not done yet, or says why there is none
(real moto S3 over HTTP; the source is a real local HTTP server answering HEAD)."""

from __future__ import annotations

import http.server
import threading
from functools import partial

import pytest

from tests.conftest import put_month
from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.io import availability, s3
from trip_duration.periods import DateRange, Month

pytestmark = pytest.mark.integration


def _scored(stack, month: str, version: int) -> None:
    s3.put_json(stack.bucket, layout.inference_summary_key("yellow", DateRange.of_month(Month.parse(month)), version), {"rows": 1})


def test_inference_picks_the_newest_month_with_data_not_yet_scored_by_the_champion(ml_stack):
    put_month(ml_stack, "2030-03", rows=200)
    put_month(ml_stack, "2030-04", rows=200)
    newest = Month.parse("2030-06")  # 2030-05 and 2030-06 are "not out yet"
    pick = availability.inference_month(ml_stack.bucket, newest, champion=7)
    assert pick.month == Month.parse("2030-04") and "(raw)" in pick.reason
    _scored(ml_stack, "2030-04", 7)
    assert availability.inference_month(ml_stack.bucket, newest, champion=7).month == Month.parse("2030-03")
    _scored(ml_stack, "2030-03", 7)
    nothing = availability.inference_month(ml_stack.bucket, newest, champion=7)
    assert nothing.month is None
    assert nothing.reason.startswith("nothing to score: of 2030-01..2030-06, 2030-04, 2030-03 already scored by v7")
    # a new champion scores the newest month again
    assert availability.inference_month(ml_stack.bucket, newest, champion=8).month == Month.parse("2030-04")


def test_training_picks_the_newest_month_whose_next_month_exists_and_stops_at_a_trained_one(ml_stack):
    put_month(ml_stack, "2031-03", rows=200)
    put_month(ml_stack, "2031-04", rows=200)
    newest = Month.parse("2031-05")  # 2031-05 has no data; 2031-04 has no validation month
    pick = availability.training_months(ml_stack.bucket, newest)
    assert pick.month == Month.parse("2031-03"), pick
    s3.put_json(ml_stack.bucket, layout.promotion_report_key("yellow", Month.parse("2031-03"), 4), {"version": 4})
    done = availability.training_months(ml_stack.bucket, newest)
    assert done.month is None and "2031-03 is the newest month" in done.reason and "already trained" in done.reason


def test_no_data_in_the_window_is_nothing_to_do_with_a_reason(ml_stack):
    for pick in (availability.training_months(ml_stack.bucket, Month.parse("2040-06")),
                 availability.inference_month(ml_stack.bucket, Month.parse("2040-06"), champion=1)):
        assert pick.month is None and "two months late" in pick.reason and "2040-01..2040-06" in pick.reason


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A local HTTP server standing in for TLC's CloudFront: it has 2032-02 only (404 otherwise)."""
    (tmp_path / "yellow_tripdata_2032-02.parquet").write_bytes(b"PAR1")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/yellow_tripdata_{{month}}.parquet"
    monkeypatch.setenv("TRIP_DURATION_SOURCE_URL", url)
    get_settings.cache_clear()
    yield url
    server.shutdown()
    get_settings.cache_clear()


def test_a_month_published_at_the_source_but_not_in_the_bucket_counts_as_existing(ml_stack, source):
    pick = availability.inference_month(ml_stack.bucket, Month.parse("2032-04"), champion=1)
    assert pick.month == Month.parse("2032-02") and source.format(month="2032-02") in pick.reason


def test_an_unreachable_source_is_a_warning_not_a_failure(ml_stack, monkeypatch, caplog):
    from tests.conftest import free_port

    monkeypatch.setenv("TRIP_DURATION_SOURCE_URL", f"http://127.0.0.1:{free_port()}/{{month}}.parquet")
    get_settings.cache_clear()
    try:
        pick = availability.inference_month(ml_stack.bucket, Month.parse("2033-03"), champion=1, lookback=2)
    finally:
        get_settings.cache_clear()
    assert pick.month is None
    assert "unreachable" in caplog.text and "TRIP_DURATION_SOURCE_URL" in caplog.text
