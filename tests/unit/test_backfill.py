"""`make backfill`: the months it queues, and its one-line errors."""

from __future__ import annotations

import pytest

from infra import backfill
from trip_duration.errors import ConfigError
from trip_duration.periods import Month


def test_months_from_to_inclusive_across_a_year():
    assert backfill.months("2022-11", "2023-02") == [Month(2022, 11), Month(2022, 12), Month(2023, 1), Month(2023, 2)]
    assert backfill.months("2023-05", "2023-05") == [Month(2023, 5)]


@pytest.mark.parametrize(("first", "last", "says"), [
    ("2023-13", "2023-02", "FROM='2023-13' is not a month"),
    ("2023-03", "2023-01", "TO=2023-01 is before FROM=2023-03: make backfill FROM=2023-01 TO=2023-03"),
    ("2020-01", "2023-12", "more than 36 months"),
])
def test_bad_ranges_are_refused_naming_the_value(first, last, says):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        backfill.months(first, last)


def test_main_prints_the_error_and_exits_2_without_queueing(capsys, monkeypatch):
    monkeypatch.setattr(backfill, "queue", lambda *a, **k: pytest.fail("nothing may be queued"))
    assert backfill.main(["--from", "2023-03", "--to", "2023-01"]) == 2
    assert "TO=2023-01 is before FROM=2023-03" in capsys.readouterr().err


def test_a_bad_taxi_is_refused_before_anything_is_queued(capsys, monkeypatch):
    monkeypatch.setattr(backfill, "queue", lambda *a, **k: pytest.fail("nothing may be queued"))
    assert backfill.main(["--from", "2023-01", "--to", "2023-02", "--taxi", "purple"]) == 2
    assert "TAXI='purple' is not a taxi type: use one of yellow, green" in capsys.readouterr().err


def test_the_taxi_reaches_every_queued_run(monkeypatch):
    import prefect.deployments

    calls = []
    monkeypatch.setattr(prefect.deployments, "run_deployment", lambda name, **kw: calls.append((name, kw)) or kw)
    backfill.queue([Month(2023, 1), Month(2023, 2)], taxi="green")
    assert [kw["parameters"] for _, kw in calls] == [
        {"batch_month": "2023-01", "reingest": False, "taxi": "green"},
        {"batch_month": "2023-02", "reingest": False, "taxi": "green"}]
    assert {name for name, _ in calls} == {"inference/backfill"} and calls[0][1]["tags"] == ["backfill", "green"]
