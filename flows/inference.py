"""Batch inference flow: score a month (or a date range) with the champion, publish a summary."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from flows.events import drift_event, once_per_event
from flows.kedro_tasks import record_usage, run_pipeline
from flows.parameters import DayParam, EventIdParam, MonthParam, TaxiParam
from flows.schedule import logical_month
from trip_duration import layout
from trip_duration.config import Settings, get_settings
from trip_duration import drift as drift_check
from trip_duration.io.availability import in_bucket, inference_month
from trip_duration.io import s3
from trip_duration.io.datasets import is_ingested, resolve_batch
from trip_duration.io.profiles import month_profile, version_facts
from trip_duration.io.registry import champion_version
from trip_duration.params import DriftParams, drift_params
from trip_duration.periods import DateRange, Month
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
    taxi = parse_taxi(taxi)
    return once_per_event(
        event_id, lambda: _score(batch_month, batch_start, batch_end, reingest, taxi),
        lambda result: result.message if isinstance(result, State) else
        f"scored {result['batch']} with v{result['model_version']}")


def _score(batch_month: str | None, batch_start: str | None, batch_end: str | None, reingest: bool,
           taxi: str) -> dict | State:
    logger = get_run_logger()
    settings = get_settings().for_taxi(taxi)
    drift_settings = drift_params()  # a bad TRIP_DURATION_DRIFT_* fails the run here, before any work
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
    drift = check_drift(settings, taxi, batch, summary, drift_settings)
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
            + f"- predictions: `{summary['predictions_uri']}`\n"
            + (f"- drift against the champion's training month: {drift}\n" if drift else "") + "\n"
            "## Resources\n\n" + usage
        ),
    )
    return {
        "taxi": taxi,
        "batch": batch.label,
        "rows": summary["rows"],
        "model_version": summary["model_version"],
        "predictions_uri": summary["predictions_uri"],
    }


def check_drift(settings: Settings, taxi: str, batch: DateRange, summary: dict, params: DriftParams) -> str:
    """The batch against its model's training month (trip_duration.drift): writes drift.json beside the
    summary, logs one line and returns it; above a threshold, emits ``trip-duration.model.drifted`` naming
    the months to retrain on, unless the model was already trained on the batch's month or a later one
    (a new champion rescoring its own validation month must not retrain in a loop). A failure of the
    check itself only warns: the predictions are written and stay."""
    logger = get_run_logger()
    if not params.enabled:
        return ""
    try:
        return _check_drift(settings, taxi, batch, summary, params)
    except Exception as err:  # noqa: BLE001 - reported, never fatal (see the docstring)
        line = f"not checked: {type(err).__name__}: {err}"
        logger.warning("drift of %s %s: %s", taxi, batch.label, line)
        return line


def _check_drift(settings: Settings, taxi: str, batch: DateRange, summary: dict, params: DriftParams) -> str:
    logger = get_run_logger()
    bucket = settings.require_bucket()
    version = summary["model_version"]
    if summary.get("profile") is None:
        line = "not judged: the batch is empty"
        report = {"drifted": False, "line": line}
    else:
        facts = version_facts(settings, version)
        trained = Month.parse(facts["train_month"])
        reference = month_profile(bucket, taxi, trained)
        report = drift_check.compare(reference, summary["profile"], summary["rmse_vs_actual"], facts["model_rmse"],
                                     params.psi_threshold, params.rmse_ratio_threshold, params.min_rows)
        report.update(model=settings.model_name, model_version=version, batch=batch.label,
                      train_month=facts["train_month"], valid_month=facts["valid_month"])
        line = f"{report['line']} (against {trained})"
        month = batch.as_month()
        seen = Month.parse(facts["valid_month"] or str(trained.next()))
        if report["drifted"] and not params.emit_event:
            line += "; no event (drift.emitEvent is false)"
        elif report["drifted"] and (month is None or month <= seen):
            line += (f"; no retraining: v{version} was trained up to {seen}" if month else
                     "; no retraining for a date range (score whole months to retrain on drift)")
        elif report["drifted"]:
            from prefect.events import emit_event

            train, valid = drift_check.retrain_months(month, lambda m: in_bucket(bucket, m, taxi) is not None)
            event = drift_event(report, settings.model_name, taxi, version, str(month), str(train), str(valid))
            emit_event(**event)
            report["event"] = {"name": event["event"], "id": str(event["id"]), "train_month": str(train),
                               "valid_month": str(valid)}
            line += f"; emitted {event['event']} (event id {event['id']}): retrain on {train}, validate on {valid}"
    report["line"] = line
    s3.put_json(bucket, layout.drift_report_key(taxi, batch, version), report)
    logger.info("drift of %s %s against the champion's training month: %s", taxi, batch.label, line)
    return line
