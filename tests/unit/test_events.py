"""The gate's events (flows/events.py) and the notification set-up (the chart's files/automations.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from prefect.events.schemas.automations import AutomationCore

from flows.events import PROMOTED, REJECTED, decision_event, decision_event_id
from tests.k8s.render import CHART

REPORT = {"promoted": True, "version": 7, "champion_version": 7, "model_rmse": 4.04217, "baseline_rmse": 5.3,
          "reason": "no champion yet", "run_id": "abc"}


def _automations():
    spec = importlib.util.spec_from_file_location("automations", CHART / "files" / "automations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_event_id_is_derived_from_event_model_and_version_only():
    first = decision_event(REPORT, "trip-duration-yellow", "yellow", "2023-01", "2023-02")
    again = decision_event({**REPORT, "model_rmse": 1.0}, "trip-duration-yellow", "yellow", "2023-01", "2023-02")
    assert first["id"] == again["id"] == decision_event_id(PROMOTED, "trip-duration-yellow", 7)
    assert first["id"] != decision_event_id(PROMOTED, "trip-duration-yellow", 8)
    assert first["id"] != decision_event_id(PROMOTED, "trip-duration-green", 7)
    assert first["id"] != decision_event_id(REJECTED, "trip-duration-yellow", 7)


def test_the_event_names_the_decision_and_carries_what_the_trigger_and_message_read():
    rejected = decision_event({**REPORT, "promoted": False, "champion_version": None}, "trip-duration-green", "green",
                              "2023-03", "2023-04")
    assert rejected["event"] == REJECTED
    assert rejected["resource"] == {"prefect.resource.id": "trip-duration.model.trip-duration-green",
                                    "prefect.resource.name": "trip-duration-green", "trip-duration.taxi": "green",
                                    "trip-duration.model.version": "7"}
    payload = rejected["payload"]
    assert (payload["taxi"], payload["valid_month"], payload["champion_version"], payload["model_rmse"]) == (
        "green", "2023-04", "", 4.0422)


def test_every_notification_automation_is_valid_once_its_values_are_in():
    automations = _automations()
    specs = json.loads((CHART / "files" / "notifications.json").read_text())
    filled = automations.substitute(specs, {"NOTIFY_BLOCK_ID": "5d3c8a0e-2b57-4f4e-9a57-0c1f6f3b2a11",
                                            "PENDING_ALERT_S": 600})
    parsed = [AutomationCore.model_validate(spec) for spec in filled]
    assert [a.trigger.within.total_seconds() for a in parsed] == [0, 600, 0]
    assert "Pending for over 600 s" in filled[1]["actions"][0]["subject"]
    assert "${" not in json.dumps(filled)


@pytest.mark.parametrize("raw", ["5", "ten", "-1"])
def test_a_bad_pending_bound_is_refused_naming_the_value_and_the_fix(raw):
    with pytest.raises(SystemExit, match=f"TRIP_DURATION_PENDING_ALERT_S='{raw}'.*notifications.pendingAlertSeconds"):
        _automations().pending_alert_s({"TRIP_DURATION_PENDING_ALERT_S": raw})


def test_no_url_deletes_the_notification_automations_and_a_bad_one_is_refused_without_echoing_it(monkeypatch):
    automations = _automations()
    deleted = []
    monkeypatch.setattr(automations, "delete", deleted.extend)
    specs = json.loads((CHART / "files" / "notifications.json").read_text())
    automations.notifications(specs, {})
    assert deleted == [spec["name"] for spec in specs]
    with pytest.raises(SystemExit) as refused:
        automations.notifications(specs, {"TRIP_DURATION_NOTIFY_URL": "hooks.slack.com/services/T0/B0/secret"})
    assert "http://" in str(refused.value) and "hooks.slack.com" not in str(refused.value)
