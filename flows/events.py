"""The Prefect events our flows emit, which deployment triggers (prefect.yaml) and the chart's
notification automations (helm/trip-duration/files/notifications.json) react to.

A training run's gate ends in one of two events about the registered version it made:

- ``trip-duration.model.promoted``: the version is the new ``@champion``; the ``backfill`` deployment's
  trigger rescores the newest month with it;
- ``trip-duration.model.rejected``: the version did not pass the gate; the chart's notification says why.

The event id is derived from (event, model, version), never random: a training run that is retried and
emits again for the same version sends the same event, and Prefect's triggers skip an event id they have
already seen.
"""

from __future__ import annotations

import uuid
from typing import Any

PROMOTED = "trip-duration.model.promoted"
REJECTED = "trip-duration.model.rejected"
#: namespace of the derived event ids (uuid5): fixed forever, or replays would look new
EVENT_NAMESPACE = uuid.UUID("5d3c8a0e-2b57-4f4e-9a57-0c1f6f3b2a11")


def model_resource(model: str, taxi: str, version: int | str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"trip-duration.model.{model}",
        "prefect.resource.name": model,
        "trip-duration.taxi": taxi,
        "trip-duration.model.version": str(version),
    }


def decision_event_id(event: str, model: str, version: int | str) -> uuid.UUID:
    """The one id of ``event`` about ``model`` version ``version`` (same inputs, same id)."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{event}/{model}/{version}")


def decision_event(report: dict[str, Any], model: str, taxi: str, train: str, valid: str) -> dict[str, Any]:
    """The keyword arguments of :func:`prefect.events.emit_event` for a training run's gate decision."""
    event = PROMOTED if report["promoted"] else REJECTED
    return {
        "event": event,
        "id": decision_event_id(event, model, report["version"]),
        "resource": model_resource(model, taxi, report["version"]),
        "payload": {
            "taxi": taxi,
            "model": model,
            "version": str(report["version"]),
            "champion_version": "" if report["champion_version"] is None else str(report["champion_version"]),
            "train_month": train,
            "valid_month": valid,
            "model_rmse": round(float(report["model_rmse"]), 4),
            "baseline_rmse": round(float(report["baseline_rmse"]), 4),
            "reason": report["reason"],
            "mlflow_run_id": report["run_id"],
        },
    }


def emit_decision(report: dict[str, Any], model: str, taxi: str, train: str, valid: str) -> str:
    """Emit the gate's event (see the module); returns its name, for the run's log."""
    from prefect.events import emit_event

    kwargs = decision_event(report, model, taxi, train, valid)
    emit_event(**kwargs)
    return f"{kwargs['event']} (event id {kwargs['id']})"
