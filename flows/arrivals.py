"""A new raw month → ingest → train (README, "New months train themselves").

``watch_raw`` (deployment ``watch-raw``, hourly) lists ``raw/`` once and emits ``trip-duration.raw.arrived``
for every TLC month file there without an ingest outcome. The ``ingest`` deployment's trigger runs
:func:`ingest_month` for it; when the month completes a (training, validation) pair newer than any month a
model was trained on, that run emits ``trip-duration.month.trainable``, which ``train``'s trigger turns into a
training run on the pair.

Why a poller and not bucket notifications: the OSS Prefect server has no webhook endpoint, and S3 event
notifications need a queue and a relay per store (AWS SQS, MinIO's targets, none in moto). One LIST an hour
works on every S3-compatible store and cannot lose a month: a month is found again until its ingest outcome
exists.

Event ids are derived, never random: an arrival's from its key and ETag (the same file found by the next
poll is the same event; a replaced file is a new one), a trainable pair's from (taxi, training, validation).
Prefect's trigger skips an id it has seen, and both flows record the ids they handled
(flows/events.once_per_event).
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.events import decision_event_id, once_per_event
from flows.kedro_tasks import run_pipeline
from flows.parameters import EventIdParam, MonthParam, TaxiParam
from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.io import s3
from trip_duration.io.availability import in_bucket, newest_trained
from trip_duration.periods import Month
from trip_duration.schema import TAXI_TYPES, parse_taxi

ARRIVED = "trip-duration.raw.arrived"
TRAINABLE = "trip-duration.month.trainable"
#: TLC's own file names (trip_duration.layout.raw_key); other files in raw/ (fhv, notes) are not ours
RAW_NAME = re.compile(r"^raw/(?P<taxi>" + "|".join(TAXI_TYPES) + r")_tripdata_(?P<month>\d{4}-\d{2})\.parquet$")
OUTCOME = re.compile(r"^reports/ingest/taxi=(?P<taxi>\w+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/outcome\.json$")


def raw_arrivals(bucket: str, since: Month | None = None) -> list[dict[str, Any]]:
    """The TLC month files in raw/ without an ingest outcome (accepted or refused), ``since`` on: one listing
    of raw/ and one of reports/ingest/, whatever the bucket's history."""
    ingested = set()
    for key, _ in s3.list_objects(bucket, "reports/ingest/"):
        if found := OUTCOME.match(key):
            ingested.add((found["taxi"], f"{found['year']}-{found['month']}"))
    arrivals = []
    for key, etag in s3.list_objects(bucket, "raw/"):
        found = RAW_NAME.match(key)
        if not found or (found["taxi"], found["month"]) in ingested:
            continue
        month = Month.parse(found["month"])
        if since is None or month >= since:
            arrivals.append({"taxi": found["taxi"], "month": str(month), "key": key, "etag": etag})
    return sorted(arrivals, key=lambda a: (a["month"], a["taxi"]))


def arrival_event(arrival: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`prefect.events.emit_event` for a raw file found (id: key and ETag)."""
    return {
        "event": ARRIVED,
        "id": decision_event_id(ARRIVED, arrival["key"], arrival["etag"]),
        "resource": {"prefect.resource.id": f"trip-duration.raw.{arrival['taxi']}.{arrival['month']}",
                     "trip-duration.taxi": arrival["taxi"]},
        "payload": dict(arrival),
    }


def trainable_pair(bucket: str, taxi: str, month: Month) -> tuple[Month, Month] | None:
    """The (training, validation) pair an ingested ``month`` completes: with the month after when that has
    data, else with the month before; None when neither has data or the pair's training month is no newer
    than the newest month a model was trained on (that would only make an older model)."""
    if in_bucket(bucket, month.next(), taxi):
        pair = (month, month.next())
    elif in_bucket(bucket, month.previous(), taxi):
        pair = (month.previous(), month)
    else:
        return None
    newest = newest_trained(bucket, taxi)
    return pair if newest is None or pair[0] > newest else None


def trainable_event(taxi: str, train: Month, valid: Month, month: Month) -> dict[str, Any]:
    return {
        "event": TRAINABLE,
        "id": decision_event_id(TRAINABLE, taxi, f"{train}/{valid}"),
        "resource": {"prefect.resource.id": f"trip-duration.month.{taxi}.{train}", "trip-duration.taxi": taxi},
        "payload": {"taxi": taxi, "train_month": str(train), "valid_month": str(valid), "ingested": str(month)},
    }


@flow(name="arrivals", description="Find new TLC months in raw/ and emit an event for each.")
def watch_raw(since: MonthParam | None = None) -> list[str]:
    """Emits ``trip-duration.raw.arrived`` for each TLC file in raw/ without an ingest outcome (``since``:
    ignore older months); returns the keys."""
    from prefect.events import emit_event

    logger = get_run_logger()
    bucket = get_settings().require_bucket()
    arrivals = raw_arrivals(bucket, Month.parse(since, key="since") if since else None)
    for arrival in arrivals:
        event = arrival_event(arrival)
        emit_event(**event)
        logger.info("%s %s: %s not ingested yet: emitted %s (event id %s)", arrival["taxi"], arrival["month"],
                    layout.s3_uri(bucket, arrival["key"]), ARRIVED, event["id"])
    if not arrivals:
        logger.info("no new month in s3://%s/raw/%s", bucket, f" since {since}" if since else "")
    return [a["key"] for a in arrivals]


@flow(name="ingest", description="Ingest one TLC month; emit an event when it completes a pair to train on.")
def ingest_month(month: MonthParam, taxi: TaxiParam = "yellow", event_id: EventIdParam | None = None) -> dict | State:
    """The ingest pipeline for ``month`` (validated/, quarantine/, reports/ingest/); then, when the month
    completes a (training, validation) pair newer than any trained month, emits ``trip-duration.month.trainable``
    (``train``'s trigger). ``event_id``: the arrival a trigger started this run for, acted on once."""
    taxi = parse_taxi(taxi)
    parsed = Month.parse(month)
    return once_per_event(event_id, lambda: _ingest(parsed, taxi),
                          lambda result: result.message if isinstance(result, State) else result["outcome"])


def _ingest(month: Month, taxi: str) -> dict | State:
    from prefect.events import emit_event

    logger = get_run_logger()
    bucket = get_settings().require_bucket()
    run_pipeline("ingest", {"month": str(month), "taxi": taxi}, label=f"ingest-{taxi}-{month}")
    pair = trainable_pair(bucket, taxi, month)
    if pair is None:
        outcome = (f"ingested {taxi} {month}; no pair to train on: neither {month.previous()} nor {month.next()} "
                   f"has data, or a model was trained on a month as new")
        logger.info(outcome)
        return Completed(message=outcome)
    event = trainable_event(taxi, *pair, month)
    emit_event(**event)
    outcome = (f"ingested {taxi} {month}; {pair[0]} and {pair[1]} can train: emitted {TRAINABLE} "
               f"(event id {event['id']})")
    logger.info(outcome)
    return {"taxi": taxi, "month": str(month), "train_month": str(pair[0]), "valid_month": str(pair[1]),
            "event_id": str(event["id"]), "outcome": outcome}
