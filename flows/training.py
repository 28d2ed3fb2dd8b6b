"""Training flow: ingest months M and M+1, train, gate promotion, publish a report.

It runs on the cpu queue; its one GPU step, XGBoost's fit, is a run of the ``fit`` deployment
(flows/fit.py) on the gpu queue, started as a subflow once both months are ingested. Meanwhile this run
evaluates the course baseline and the champion; it waits for the fit's model only before ``evaluate``
(README, "Only the fit on the GPU"). ``fit_on=this-pod`` fits here instead (one pod, as before).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling, Completed, State, StateType

from flows.events import emit_decision, once_per_event
from flows.fit import FIT_DEPLOYMENT
from flows.kedro_tasks import COMPUTE_TIMEOUT_S, record_usage, run_pipeline
from flows.parameters import DeviceParam, EventIdParam, MonthParam, TaxiParam
from flows.schedule import logical_month
from trip_duration import layout
from trip_duration.config import get_settings
from trip_duration.cost import PodCost
from trip_duration.errors import ConfigError, DataNotFoundError, FitFailedError
from trip_duration.io import s3
from trip_duration.io.availability import training_months
from trip_duration.periods import Month
from trip_duration.schema import parse_taxi

#: How long a training run waits for its fit: the fit's own time limit (a compute node's), plus an hour to
#: be scheduled (a GPU node to scale up); then it cancels the fit and fails, saying so.
FIT_WAIT_S = COMPUTE_TIMEOUT_S + 60 * 60
FIT_POLL_S = 2.0
FIT_LOG_EVERY_S = 60.0
#: Fits a training run may start: a run that failed or was cancelled is replaced by a new one (a new key),
#: a running or completed one is found again by its key (a rescheduled training run re-attaches to it)
MAX_FITS = 5
FitOn = Literal["gpu-queue", "this-pod"]


@flow(name="training", description="Train on month M, validate on M+1, promote past the champion gate.")
def training(
    train_month: MonthParam | None = None,
    valid_month: MonthParam | None = None,
    device: DeviceParam = "auto",
    taxi: TaxiParam = "yellow",
    fit_on: FitOn = "gpu-queue",
    fit_job_variables: dict[str, Any] | None = None,
    event_id: EventIdParam | None = None,
) -> dict | State:
    """Without ``train_month`` (a scheduled run), trains on the newest month that has data for itself and
    the next one and no model yet, looking back from two months before the scheduled time; with none,
    completes saying why (trip_duration.io.availability). ``valid_month`` defaults to the month after.
    ``taxi`` picks the TLC files and the registered model (trip-duration-<taxi>): each type has its own
    champion.
    ``fit_on``: ``gpu-queue`` (the default) fits in a run of the ``fit`` deployment, with
    ``fit_job_variables`` on top of that deployment's (e.g. another node selector); ``this-pod`` fits here.
    ``event_id``: the event a trigger started this run for (prefect.yaml: drift, a new trainable month); acted
    on once (flows/events.once_per_event)."""
    taxi = parse_taxi(taxi)
    return once_per_event(
        event_id, lambda: _train(train_month, valid_month, device, taxi, fit_on, fit_job_variables),
        lambda result: result.message if isinstance(result, State) else
        f"trained v{result['version']} on {result['train_month']}, validated on {result['valid_month']}: "
        + ("promoted" if result["promoted"] else "not promoted"))


def _train(train_month: str | None, valid_month: str | None, device: str, taxi: str, fit_on: FitOn,
           fit_job_variables: dict[str, Any] | None) -> dict | State:
    logger = get_run_logger()
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
    params = {"train_month": str(train), "valid_month": str(valid), "training.device": device, "taxi": taxi}
    others: list[PodCost] = []
    unknown: dict[str, str] = {}
    tags: dict[str, str] = {}
    if fit_on == "this-pod":
        catalog = run_pipeline("training", params)
    else:
        fit = _start_fit(train, taxi, device, fit_job_variables)
        try:
            catalog = run_pipeline("evaluation", {**params, "fit_run": str(fit.id)},
                                   before={"evaluate": lambda: _wait_for_fit(fit)})
        except Exception:  # not a SIGTERM: a rescheduled run of this flow finds its fit again (MAX_FITS)
            _cancel(fit, "its training run failed")
            raise
        bucket = get_settings().require_bucket()
        pod = _fit_pod(bucket, taxi, train, fit)
        others, unknown = ([pod], {}) if isinstance(pod, PodCost) else ([], {_fit_label(fit): pod})
        tags = {"trip_duration.fit_run": str(fit.id),
                "trip_duration.fitted_model": layout.s3_uri(bucket, layout.candidate_key(taxi, train, str(fit.id)))}
    report = catalog.load("promotion_report")
    # the gate's event: a promotion triggers the rescoring (prefect.yaml), a rejection a notification (chart)
    logger.info("emitted %s", emit_decision(report, get_settings().model_for(taxi), taxi, str(train), str(valid)))
    # MLflow metrics of the training run: pod seconds, requests, cost, of this pod and its fit's
    usage = record_usage(report["run_id"], others, unknown, tags)
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


def _fit_label(fit: FlowRun) -> str:
    return f"GPU fit run {fit.name} ({fit.id})"


def _start_fit(train: Month, taxi: str, device: str, job_variables: dict[str, Any] | None) -> FlowRun:
    """This run's fit on the gpu queue, as a subflow. Its idempotency key is this flow run's id and a
    number: a rescheduled run (same id) finds its fit again instead of starting a second one; a fit that
    ended Failed, Crashed or Cancelled is replaced by the next number."""
    logger = get_run_logger()
    parent = flow_run.id
    for number in range(1, MAX_FITS + 1):
        fit = run_deployment(
            FIT_DEPLOYMENT,
            parameters={"train_month": str(train), "taxi": taxi, "device": device},
            job_variables=job_variables or None,
            timeout=0,
            as_subflow=True,
            idempotency_key=f"{parent}:fit:{number}",
        )
        if fit.state is None or not fit.state.is_final() or fit.state.is_completed():
            logger.info("XGBoost fits in %s on the gpu queue (%s); this run evaluates meanwhile; its logs: "
                        "kubectl logs -l prefect.io/flow-run-id=%s", _fit_label(fit),
                        fit.state.name if fit.state else "new", fit.id)
            return fit
        logger.warning("%s ended %s: starting another", _fit_label(fit), fit.state.name)
    raise FitFailedError(f"{MAX_FITS} GPU fits of this run ended without a model (the last: {_fit_label(fit)}, "
                         f"{fit.state.name}); see their logs: kubectl logs -l prefect.io/flow-run-id=<id>")


def _wait_for_fit(fit: FlowRun, limit_s: float = FIT_WAIT_S, poll_s: float = FIT_POLL_S) -> None:
    """Until the fit has Completed; fails naming it if it ends otherwise or is not done within ``limit_s``
    (then it is cancelled: no GPU pod outlives the run that wanted it)."""
    logger = get_run_logger()
    started = last_log = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(fit.id).state
            if state is not None and state.is_completed():
                logger.info("%s Completed after %.0f s of waiting", _fit_label(fit), time.monotonic() - started)
                return
            if state is not None and state.is_final():
                raise FitFailedError(f"{_fit_label(fit)} ended {state.name}: {state.message or 'no message'}; "
                                     f"its logs: kubectl logs -l prefect.io/flow-run-id={fit.id}")
            waited = time.monotonic() - started
            if waited > limit_s:
                _cancel(fit, f"its training run waited {waited:.0f} s for it")
                raise FitFailedError(
                    f"{_fit_label(fit)} was not done after {waited:.0f} s ({state.name if state else 'no state'}): "
                    "cancelled. A fit Pending that long found no GPU node (kubectl get pods -l "
                    f"prefect.io/flow-run-id={fit.id}; kubectl describe pod says why)")
            if time.monotonic() - last_log >= FIT_LOG_EVERY_S:
                last_log = time.monotonic()
                logger.info("waiting for %s: %s, %.0f s so far", _fit_label(fit),
                            state.name if state else "no state", waited)
            time.sleep(poll_s)


def _cancel(fit: FlowRun, why: str) -> None:
    """Cancel the fit unless it has ended or is being cancelled: Cancelling when it runs (its worker then
    stops the pod), Cancelled when it has not started."""
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(fit.id).state
        if state is None or state.is_final() or state.type == StateType.CANCELLING:
            return
        new = Cancelling if state.type == StateType.RUNNING else Cancelled
        client.set_flow_run_state(fit.id, new(message=f"cancelled: {why}"), force=True)
    get_run_logger().warning("%s cancelled: %s", _fit_label(fit), why)


def _fit_pod(bucket: str, taxi: str, train: Month, fit: FlowRun) -> PodCost | str:
    """The fit pod's usage (its usage.json), or why it is not known."""
    key = layout.candidate_key(taxi, train, str(fit.id), "usage.json")
    try:
        return PodCost.from_json(s3.get_json(bucket, key), _fit_label(fit))
    except (DataNotFoundError, ConfigError) as err:
        return f"{layout.s3_uri(bucket, key)}: {err}"
