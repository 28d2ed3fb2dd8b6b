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
    monkeypatch.setattr(backfill, "_runs", lambda name, completed: [])
    backfill.queue([Month(2023, 1), Month(2023, 2)], taxi="green")
    assert [kw["parameters"] for _, kw in calls] == [
        {"batch_month": "2023-01", "reingest": False, "taxi": "green"},
        {"batch_month": "2023-02", "reingest": False, "taxi": "green"}]
    assert {name for name, _ in calls} == {"inference/backfill"} and calls[0][1]["tags"] == ["backfill", "green"]


class _Run:
    def __init__(self, name, parameters, state="Running", message=None):
        from types import SimpleNamespace

        self.name, self.parameters, self.id = name, parameters, name
        final = state in {"Completed", "Failed", "Crashed", "Cancelled"}
        self.state = SimpleNamespace(name=state, message=message, is_final=lambda: final)


def test_a_month_with_an_active_or_completed_identical_run_is_not_queued_again(monkeypatch):
    import prefect.deployments

    active = [_Run("active-feb", {"batch_month": "2023-02", "reingest": False, "taxi": "yellow", "event_id": "e"})]
    done = [_Run("done-jan", {"batch_month": "2023-01", "reingest": False, "taxi": "yellow"}, "Completed"),
                 _Run("done-mar-green", {"batch_month": "2023-03", "reingest": False, "taxi": "green"}, "Completed")]
    monkeypatch.setattr(backfill, "_runs", lambda name, completed: done if completed else active)
    created = []
    monkeypatch.setattr(prefect.deployments, "run_deployment",
                        lambda name, **kw: created.append(kw["parameters"]["batch_month"]) or _Run("new", kw["parameters"]))
    out = backfill.queue(backfill.months("2023-01", "2023-03"))
    assert [(str(q.month), q.how, q.run.name) for q in out] == [
        ("2023-01", "already completed", "done-jan"), ("2023-02", "already queued", "active-feb"),
        ("2023-03", "queued", "new")]  # March's Completed run was green's: other parameters
    assert created == ["2023-03"]
    created.clear()
    again = backfill.queue(backfill.months("2023-01", "2023-02"), again=True)
    assert [q.how for q in again] == ["queued", "already queued"] and created == ["2023-01"]


def test_training_backfills_go_to_each_taxis_train_deployment_and_refuse_reingest(capsys):
    assert backfill.deployment_for(True, "yellow") == "training/train"
    assert backfill.deployment_for(True, "green") == "training/train-green"
    assert backfill.deployment_for(False, "green") == "inference/backfill"
    assert backfill.parameters_for(Month(2023, 4), True, "green") == {"train_month": "2023-04", "taxi": "green"}
    assert backfill.main(["--from", "2023-01", "--to", "2023-02", "--train", "--reingest"]) == 2
    assert "--reingest is for scoring" in capsys.readouterr().err


def test_a_progress_line_counts_what_is_done_and_names_why_a_run_failed():
    run = _Run("brave-otter", {}, "Failed", "DataNotFoundError: raw/yellow_tripdata_2023-04.parquet is missing")
    assert backfill.progress_line(3, 6, Month(2023, 3), run, "Running") == (
        "[3/6 done] 2023-03: brave-otter Running -> Failed: DataNotFoundError: raw/yellow_tripdata_2023-04.parquet "
        "is missing")
    assert backfill.progress_line(0, 6, Month(2023, 3), _Run("x", {}, "Scheduled"), None) == (
        "[0/6 done] 2023-03: x new -> Scheduled")
