"""Batch inference flow: score a month (or a date range) with the champion, publish a summary."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from flows.kedro_tasks import record_usage, run_pipeline
from flows.parameters import DayParam, EventIdParam, MonthParam, TaxiParam
from flows.schedule import logical_month
from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.io.availability import inference_month
from trip_duration.io import s3
from trip_duration.io.datasets import is_ingested, resolve_batch
from trip_duration.io.registry import champion_version
from trip_duration.schema import parse_taxi


@flow(name="inference", description="Score a batch of trips with the champion model.")
def inference(
    batch_month: MonthParam | None = None,
    batch_start: DayParam | None = None,
    batch_end: DayParam | None = None,
    reingest: bool = False,
    taxi: TaxiParam = "yellow",
    event_id: EventIdParam | None = None,
) -> dict | State:
    """Without a batch (a scheduled run), scores the newest month that has data and no predictions of
    the current champion yet, looking back from the month before the scheduled time; with none,
    completes saying why (trip_duration.io.availability). Months not yet validated (or all, with
    ``reingest``) go through the ingest pipeline first. ``taxi`` picks the TLC files and the model
    (trip-duration-<taxi>'s champion).
    ``event_id``: the event a trigger started this run for (prefect.yaml). The run that completes records
    it at ``events/handled/<id>.json``; a later run for the same id (a replay) completes doing nothing."""
    logger = get_run_logger()
    taxi = parse_taxi(taxi)
    if event_id is None:
        return _score(batch_month, batch_start, batch_end, reingest, taxi)
    bucket = get_settings().require_bucket()
    key = layout.handled_event_key(event_id)
    if s3.exists(bucket, key):
        earlier = s3.get_json(bucket, key)
        reason = (f"event {event_id} was already handled by flow run {earlier['flow_run_name']} "
                  f"({earlier['flow_run_id']}): nothing to do (a replayed event)")
        logger.info(reason)
        return Completed(message=reason)
    result = _score(batch_month, batch_start, batch_end, reingest, taxi)
    outcome = result.message if isinstance(result, State) else f"scored {result['batch']} with v{result['model_version']}"
    s3.put_json(bucket, key, {"event_id": event_id, "flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name,
                              "outcome": outcome})
    logger.info("event %s handled: %s", event_id, outcome)
    return result


def _score(batch_month: str | None, batch_start: str | None, batch_end: str | None, reingest: bool,
           taxi: str) -> dict | State:
    logger = get_run_logger()
    settings = get_settings().for_taxi(taxi)
    if not (batch_month or batch_start or batch_end):
        champion = champion_version(settings)
        if champion is None:
            reason = (f"nothing to score: {settings.model_name!r} has no @{settings.champion_alias} yet "
                      f"(run the training deployment: prefect deployment run training/train -p taxi={taxi})")
            logger.warning(reason)
            return Completed(message=reason)
        pick = inference_month(settings.require_bucket(), logical_month().previous(), champion, taxi=taxi)
        logger.info(pick.reason)
        if pick.month is None:
            return Completed(message=pick.reason)
        batch_month = str(pick.month)
    batch = resolve_batch(batch_month, batch_start, batch_end)
    bucket = settings.require_bucket()
    for month in batch.months():
        if reingest or not is_ingested(bucket, month, taxi):
            run_pipeline("ingest", {"month": str(month), "taxi": taxi}, label=f"ingest-{taxi}-{month}")
    params = {"batch_month": batch_month, "batch_start": batch_start, "batch_end": batch_end, "taxi": taxi}
    catalog = run_pipeline("inference", {k: v for k, v in params.items() if v})
    summary = catalog.load("inference_summary")
    logger.info("scored %d %s trips of %s with model v%s", summary["rows"], taxi, batch.label,
                summary["model_version"])
    usage = record_usage()
    create_markdown_artifact(
        key=f"inference-summary-{taxi}",
        description=f"{taxi} taxis, batch {batch.label}",
        markdown=(
            f"# {taxi.capitalize()} taxis, batch {batch.label}\n\n"
            f"- rows scored: **{summary['rows']}**\n"
            f"- model: **{settings.model_name} v{summary['model_version']}**\n"
            + (f"- {summary['note']}\n" if summary.get("empty") else
               f"- predicted minutes: mean {summary['prediction_mean']}, p50 {summary['prediction_p50']}, "
               f"p95 {summary['prediction_p95']}\n"
               f"- RMSE vs actual: {summary['rmse_vs_actual']}\n")
            + f"- predictions: `{summary['predictions_uri']}`\n\n"
            f"## Resources\n\n{usage}"
        ),
    )
    return {
        "taxi": taxi,
        "batch": batch.label,
        "rows": summary["rows"],
        "model_version": summary["model_version"],
        "predictions_uri": summary["predictions_uri"],
    }
