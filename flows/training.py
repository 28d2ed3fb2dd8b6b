"""Training flow: ingest months M and M+1, train, gate promotion, publish a report."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from flows.kedro_tasks import run_pipeline
from flows.parameters import DeviceParam, MonthParam
from flows.schedule import logical_month
from trip_duration.config import get_settings
from trip_duration.errors import ConfigError
from trip_duration.io.availability import training_months
from trip_duration.periods import Month


@flow(name="training", description="Train on month M, validate on M+1, promote past the champion gate.")
def training(
    train_month: MonthParam | None = None,
    valid_month: MonthParam | None = None,
    device: DeviceParam = "auto",
) -> dict | State:
    """Without ``train_month`` (a scheduled run), trains on the newest month that has data for itself and
    the next one and no model yet, looking back from two months before the scheduled time; with none,
    completes saying why (trip_duration.io.availability). ``valid_month`` defaults to the month after."""
    logger = get_run_logger()
    if train_month:
        train = Month.parse(train_month, key="train_month")
    elif valid_month:
        raise ConfigError(f"valid_month={valid_month} is set but train_month is not: set train_month=YYYY-MM too")
    else:
        pick = training_months(get_settings().require_bucket(), logical_month().previous().previous())
        logger.info(pick.reason)
        if pick.month is None:
            return Completed(message=pick.reason)
        train = pick.month
    valid = Month.parse(valid_month, key="valid_month") if valid_month else train.next()
    logger.info("training on %s, validating on %s", train, valid)
    for month in (train, valid):
        run_pipeline("ingest", {"month": str(month)}, label=f"ingest-{month}")
    catalog = run_pipeline(
        "training",
        {"train_month": str(train), "valid_month": str(valid), "training.device": device},
    )
    report = catalog.load("promotion_report")
    create_markdown_artifact(
        key="training-report",
        description=f"training {train} -> {valid}",
        markdown=(
            f"# Training {train} (validated on {valid})\n\n"
            "| model | RMSE | MAE |\n|---|---|---|\n"
            f"| course baseline (DictVectorizer + LinearRegression) | {report['baseline_rmse']:.3f} "
            f"| {report['baseline_mae']:.3f} |\n"
            f"| XGBoost | {report['model_rmse']:.3f} | {report['model_mae']:.3f} |\n\n"
            f"**Decision:** {'promoted to champion' if report['promoted'] else 'not promoted'} — "
            f"{report['reason']}\n\n"
            f"Registered version **{report['version']}**; champion is now **v{report['champion_version']}**. "
            f"MLflow run `{report['run_id']}` (experiment {report['experiment_id']}). "
            f"Report: `{report['report_uri']}`\n"
        ),
    )
    return {
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
