"""Training flow: ingest months M and M+1, train, gate promotion, publish a report."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from flows.kedro_tasks import record_usage, run_pipeline
from flows.parameters import DeviceParam, MonthParam, TaxiParam
from flows.schedule import logical_month
from trip_duration.config import get_settings
from trip_duration.errors import ConfigError
from trip_duration.io.availability import training_months
from trip_duration.periods import Month
from trip_duration.schema import parse_taxi


@flow(name="training", description="Train on month M, validate on M+1, promote past the champion gate.")
def training(
    train_month: MonthParam | None = None,
    valid_month: MonthParam | None = None,
    device: DeviceParam = "auto",
    taxi: TaxiParam = "yellow",
) -> dict | State:
    """Without ``train_month`` (a scheduled run), trains on the newest month that has data for itself and
    the next one and no model yet, looking back from two months before the scheduled time; with none,
    completes saying why (trip_duration.io.availability). ``valid_month`` defaults to the month after.
    ``taxi`` picks the TLC files and the registered model (trip-duration-<taxi>): each type has its own
    champion."""
    logger = get_run_logger()
    taxi = parse_taxi(taxi)
    if train_month:
        train = Month.parse(train_month, key="train_month")
    elif valid_month:
        raise ConfigError(f"valid_month={valid_month} is set but train_month is not: set train_month=YYYY-MM too")
    else:
        pick = training_months(get_settings().require_bucket(), logical_month().previous().previous(), taxi=taxi)
        logger.info(pick.reason)
        if pick.month is None:
            return Completed(message=pick.reason)
        train = pick.month
    valid = Month.parse(valid_month, key="valid_month") if valid_month else train.next()
    logger.info("%s taxis: training on %s, validating on %s", taxi, train, valid)
    for month in (train, valid):
        run_pipeline("ingest", {"month": str(month), "taxi": taxi}, label=f"ingest-{taxi}-{month}")
    catalog = run_pipeline(
        "training",
        {"train_month": str(train), "valid_month": str(valid), "training.device": device, "taxi": taxi},
    )
    report = catalog.load("promotion_report")
    usage = record_usage(report["run_id"])  # MLflow metrics of the training run: pod seconds, requests, cost
    create_markdown_artifact(
        key=f"training-report-{taxi}",
        description=f"{taxi} taxis: training {train} -> {valid}",
        markdown=(
            f"# Training {taxi} taxis {train} (validated on {valid})\n\n"
            "| model | RMSE | MAE |\n|---|---|---|\n"
            f"| course baseline (DictVectorizer + LinearRegression) | {report['baseline_rmse']:.3f} "
            f"| {report['baseline_mae']:.3f} |\n"
            f"| XGBoost | {report['model_rmse']:.3f} | {report['model_mae']:.3f} |\n\n"
            f"**Decision:** {'promoted to champion' if report['promoted'] else 'not promoted'} — "
            f"{report['reason']}\n\n"
            f"Registered {get_settings().model_for(taxi)} version **{report['version']}**; champion is now "
            f"**v{report['champion_version']}**. "
            f"MLflow run `{report['run_id']}` (experiment {report['experiment_id']}). "
            f"Report: `{report['report_uri']}`\n\n"
            f"## Resources\n\n{usage}"
        ),
    )
    return {
        "taxi": taxi,
        "train_month": str(train),
        "valid_month": str(valid),
        "version": report["version"],
        "promoted": report["promoted"],
        "champion_version": report["champion_version"],
        "baseline_rmse": report["baseline_rmse"],
        "model_rmse": report["model_rmse"],
        "run_id": report["run_id"],
        "report_uri": report["report_uri"],
    }
