"""The Prefect events our flows emit, which deployment triggers (prefect.yaml) and the chart's
notification automations (helm/trip-duration/files/notifications.json) react to.

A training run's gate ends in one of two events about the registered version it made:

- ``trip-duration.model.promoted``: the version is the new ``@champion``; the ``backfill`` deployment's
  trigger rescores the newest month with it;
- ``trip-duration.model.rejected``: the version did not pass the gate; the chart's notification says why.

An inference run whose batch drifted from the champion's training month emits
``trip-duration.model.drifted`` (trip_duration.drift): the ``train``/``train-green`` trigger retrains on the
months it names. Its id is derived from (model, version, batch).

A run a trigger started takes the event's id (``event_id``) and acts on it once (:func:`once_per_event`).

The event id is derived from (event, model, version), never random: a training run that is retried and
emits again for the same version sends the same event, and Prefect's triggers skip an event id they have
already seen.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, TypeVar

R = TypeVar("R")

PROMOTED = "trip-duration.model.promoted"
REJECTED = "trip-duration.model.rejected"
DRIFTED = "trip-duration.model.drifted"
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


def drift_event(report: dict[str, Any], model: str, taxi: str, version: int | str, batch: str, train: str,
                valid: str) -> dict[str, Any]:
    """The keyword arguments of :func:`prefect.events.emit_event` for a drifted batch: retrain on (train, valid)."""
    return {
        "event": DRIFTED,
        "id": decision_event_id(DRIFTED, model, f"{version}/{batch}"),
        "resource": model_resource(model, taxi, version),
        "payload": {
            "taxi": taxi,
            "model": model,
            "version": str(version),
            "batch": batch,
            "train_month": train,
            "valid_month": valid,
            "reasons": report["reasons"],
            "psi": report["psi"],
            "rmse_ratio": report["rmse_ratio"],
        },
    }


def once_per_event(event_id: str | None, work: Callable[[], R], outcome: Callable[[R], str]) -> R | Any:
    """Run ``work`` for the event ``event_id`` once: the run that completes records the id at
    ``events/handled/<id>.json`` with ``outcome(result)``; a later run for the same id (a replay later than
    the server remembers ids) completes doing nothing. Without an id (a run by hand or a schedule), just ``work``."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run
    from prefect.states import Completed

    from trip_duration import layout
    from trip_duration.config import get_settings
    from trip_duration.errors import DataNotFoundError
    from trip_duration.io import s3

    if event_id is None:
        return work()
    logger = get_run_logger()
    bucket = get_settings().require_bucket()
    key = layout.handled_event_key(event_id)
    try:
        earlier = s3.get_json(bucket, key)  # one request: a missing key is the common case, not an error
    except DataNotFoundError:
        earlier = None
    if earlier is not None:
        reason = (f"event {event_id} was already handled by flow run {earlier['flow_run_name']} "
                  f"({earlier['flow_run_id']}): nothing to do (a replayed event)")
        logger.info(reason)
        return Completed(message=reason)
    result = work()
    done = outcome(result)
    s3.put_json(bucket, key, {"event_id": event_id, "flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name,
                              "outcome": done})
    logger.info("event %s handled: %s", event_id, done)
    return result
