"""Both deployments run by real process workers against the real local servers, code pulled from S3."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from infra.local.demo import run_and_wait
from tests.conftest import fit_runs, put_month

pytestmark = pytest.mark.integration


def _task_runs(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _logs(flow_run_id, until=lambda logs: True, timeout: float = 60) -> list:
    """The run's log records, every page (a run has more lines than one page; the server's own text search
    answers 500 on SQLite), read again until ``until(records)`` holds or ``timeout`` s have passed: a flow
    run's last lines reach the API in batches, after its final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found, offset = [], 0
            while page := client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                           offset=offset):
                found += page
                offset += len(page)
            if until(found) or time.monotonic() > deadline:
                return found
            time.sleep(2)


def _log_messages(flow_run_id, text: str, at_least: int = 1) -> list[str]:
    """The run's log messages containing ``text``, once there are ``at_least`` of them (or after 60 s)."""
    logs = _logs(flow_run_id, lambda found: sum(text in log.message for log in found) >= at_least)
    return [log.message for log in logs if text in log.message]


def test_train_then_infer_through_the_workers(deployed):
    state, _, run_id = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
    assert state == "Completed"
    task_runs = _task_runs(run_id)
    names = {t.name for t in task_runs}
    # untagged: a tagged task run first takes a tag-concurrency lease (a server write) to start
    assert not [t.name for t in task_runs if t.tags]
    assert {"ingest-yellow-2023-01.check_schema", "ingest-yellow-2023-02.filter_rows", "evaluation.train_baseline",
            "evaluation.evaluate", "evaluation.register_model", "evaluation.apply_gate"} <= names  # a task per Kedro node
    # README, "Only the fit on the GPU": train runs on the cpu queue, its one fit on the gpu queue, as a subflow
    (fit,) = fit_runs(run_id)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        train_run = prefect.read_flow_run(run_id)
        fit_deployment = prefect.read_deployment(fit.deployment_id)
    assert (train_run.work_queue_name, fit.work_queue_name, fit_deployment.name) == ("cpu", "gpu", "fit")
    assert fit.state.is_completed() and fit.parameters == {"train_month": "2023-01", "taxi": "yellow", "device": "auto"}
    assert {t.name for t in _task_runs(fit.id)} == {"fit-yellow-2023-01.train_model"} and "training.train_model" not in names
    by_name = {t.name: t for t in task_runs}
    # the baseline ran while the GPU fitted; evaluate waited for the fit's model
    assert by_name["evaluation.train_baseline"].start_time < fit.end_time <= by_name["evaluation.evaluate"].start_time
    client = MlflowClient()
    (mlflow_run,) = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.prefect_flow_run_id = '{run_id}'",
    )  # the MLflow run is linked to the Prefect run that made it
    (version,) = client.search_model_versions(f"run_id = '{mlflow_run.info.run_id}'")
    assert version.tags["promotion.decision"] in {"promoted", "rejected"}
    # one version per training run, keyed by the Prefect flow run a retry keeps
    assert version.tags["trip_duration.training_run"] == f"prefect-flow-run:{run_id}"
    assert mlflow_run.data.tags["trip_duration.fit_run"] == str(fit.id)
    assert mlflow_run.data.tags["trip_duration.fitted_model"] == (
        f"s3://{deployed.bucket}/candidates/taxi=yellow/train=2023-01/fit={fit.id}/model.json")
    champion = client.get_model_version_by_alias("trip-duration-yellow", "champion")
    # the training's kedro-datasets readers went through the committed-read check (hooks.py)
    checked = _log_messages(run_id, "the object its ingest committed", at_least=2)
    assert {m.split(":")[0] for m in checked} == {"valid_trips", "train_trips"}, checked
    assert [m.split(":")[0] for m in _log_messages(fit.id, "the object its ingest committed")] == ["train_trips"]
    # both pods' usage on the training run (process workers: no pod, so nothing requested and no cost)
    metrics = client.get_run(mlflow_run.info.run_id).data.metrics
    assert metrics["pod_seconds_cpu"] > 0 and metrics["pod_seconds_gpu"] == 0 and metrics["requested_gpus"] == 0
    assert "cost_usd" not in metrics and not [k for k in metrics if k.startswith("requested_cpus")]
    usage = _log_messages(run_id, "pod usage: ", at_least=2)
    assert len(usage) == 2 and f"(GPU fit run {fit.name} ({fit.id}))" in usage[1], usage
    assert usage[0].endswith("(this run's pod)") and "requested nothing" in usage[0], usage
    assert _log_messages(run_id, "run cost: unknown (not known for: this run's pod, GPU fit run")

    state, _, run_id = run_and_wait("inference/infer", {"batch_month": "2023-02"}, timeout=600)
    assert state == "Completed"
    key = f"predictions/taxi=yellow/year=2023/month=02/model_version={champion.version}/predictions.parquet"
    body = boto3.client("s3").get_object(Bucket=deployed.bucket, Key=key)["Body"].read()
    assert len(pd.read_parquet(io.BytesIO(body))) > 15_000
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        artifact = prefect.read_latest_artifacts()
    reports = {a.key: a.data for a in artifact}
    assert {"training-report-yellow", "inference-summary-yellow"} <= set(reports)
    for key in ("training-report-yellow", "inference-summary-yellow"):
        assert "## Resources" in reports[key] and "this run's pod: **CPU** pod" in reports[key], reports[key]
        assert "cost unknown, missing the pod's CPU request" in reports[key], reports[key]
    assert "GPU fit run " in reports["training-report-yellow"] and "GPU fit run" not in reports["inference-summary-yellow"]
    for queue in ("gpu", "cpu"):  # both runs were forked by the warm-start server, none started cold
        log = (deployed.root / "logs" / f"worker-{queue}.log").read_text()
        assert "warm start: pid" in log and "warm start unavailable" not in log, log[-3000:]


def test_green_taxis_through_the_workers_train_and_score_with_their_own_model(deployed):
    """The train-green deployment, then infer-green: green's own keys,
    registered model and artifacts; yellow's champion is untouched."""
    client = MlflowClient()
    yellow = client.get_model_version_by_alias("trip-duration-yellow", "champion").version
    for month in ("2023-01", "2023-02"):
        put_month(deployed, month, rows=6_000, taxi="green", layout_year="2024")
    state, _, run_id = run_and_wait("training/train-green", {"train_month": "2023-01"}, timeout=600)
    assert state == "Completed"
    assert "ingest-green-2023-01.check_schema" in {t.name for t in _task_runs(run_id)}
    green = client.get_model_version_by_alias("trip-duration-green", "champion")
    assert client.get_run(green.run_id).data.tags["prefect_flow_run_id"] == run_id
    assert client.get_model_version_by_alias("trip-duration-yellow", "champion").version == yellow
    state, _, _ = run_and_wait("inference/infer-green", {"batch_month": "2023-02"}, timeout=600)
    assert state == "Completed"
    key = f"reports/inference/taxi=green/year=2023/month=02/model_version={green.version}/summary.json"
    summary = json.loads(boto3.client("s3").get_object(Bucket=deployed.bucket, Key=key)["Body"].read())
    assert summary["taxi"] == "green" and summary["rows"] > 3_000
    assert summary["predictions_uri"].endswith(
        f"predictions/taxi=green/year=2023/month=02/model_version={green.version}/predictions.parquet")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        keys = {a.key for a in prefect.read_latest_artifacts()}
    assert {"training-report-green", "inference-summary-green"} <= keys


def test_s3_outage_during_inference_is_retried_and_leaves_no_partial_object(deployed):
    proxy = deployed.proxy
    proxy.arm(f"PUT /{deployed.bucket}/predictions/".encode())  # cut the write of the predictions
    state, _, run_id = run_and_wait("inference/infer", {"batch_month": "2023-03"}, timeout=600)
    assert proxy.triggered.is_set() and proxy.restored.is_set(), "the outage never happened"
    assert state == "Completed"
    score = [t for t in _task_runs(run_id) if t.name == "inference.score_batch"]
    assert score and score[0].run_count >= 2, "score_batch should have been retried after the outage"
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=deployed.bucket, Prefix="predictions/taxi=yellow/year=2023/month=03/")["Contents"]
    assert len(listing) == 1
    frame = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=deployed.bucket, Key=listing[0]["Key"])["Body"].read()))
    rows = s3.get_object(Bucket=deployed.bucket, Key="reports/ingest/taxi=yellow/year=2023/month=03/rows.json")["Body"].read()
    assert len(frame) == pd.read_json(io.BytesIO(rows), typ="series")["rows_out"]
    assert not s3.list_multipart_uploads(Bucket=deployed.bucket).get("Uploads")


def test_local_deploys_leave_schedules_paused_and_nothing_scheduled(deployed):
    """The local stack has two synthetic months of 2023: its schedules stay paused, nothing is scheduled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType

    with get_client(sync_client=True) as client:
        for name in ("training/train", "training/train-green", "inference/infer", "inference/infer-green"):
            schedules = client.read_deployment_by_name(name).schedules
            assert schedules and not [s for s in schedules if s.active], name
        # the type survives a pause: it is the deployment's parameter (Prefect 3.8 resets a schedule's own
        # parameters to {} on every pause or resume)
        assert client.read_deployment_by_name("training/train-green").parameters["taxi"] == "green"
        scheduled = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train", "train-green", "infer", "infer-green"])),
        )
        assert not [r for r in scheduled if r.auto_scheduled]


def test_a_users_error_is_one_line_in_the_runs_logs_without_a_traceback(deployed):
    """A month that is not in the bucket: the run fails with one line saying what to do, in the run's
    logs (Prefect UI) and in the process output (what `kubectl logs` shows); tracebacks only at DEBUG."""
    worker_log = deployed.root / "logs" / "worker-cpu.log"
    offset = worker_log.stat().st_size
    state, _, run_id = run_and_wait("inference/infer", {"batch_month": "2019-01"}, timeout=600)
    assert state == "Failed"
    messages = [log.message for log in _logs(run_id, lambda logs: any("DataNotFoundError" in log.message
                                                                          for log in logs))]
    errors = [m for m in messages if "DataNotFoundError" in m]
    assert errors, messages
    assert all("\n" not in m for m in errors)
    assert "raw/yellow_tripdata_2019-01.parquet does not exist" in errors[0]
    assert "trip-duration generate --taxi yellow --month 2019-01" in errors[0]  # the fix
    assert not [m for m in messages if "Traceback" in m], messages
    printed = worker_log.read_text()[offset:]
    assert "does not exist" in printed and "Traceback" not in printed, printed[-4000:]


def test_scheduled_runs_without_data_complete_saying_why(deployed):
    """A run without months (as the schedules start them) looks for data from its scheduled month back;
    the stack's synthetic months are years old, so both complete, doing nothing, with the reason."""
    from prefect.client.orchestration import get_client

    for name, says in (("training/train", "nothing to train"), ("inference/infer", "nothing to score")):
        state, _, run_id = run_and_wait(name, {}, timeout=600)
        with get_client(sync_client=True) as client:
            message = client.read_flow_run(run_id).state.message or ""
        assert state == "Completed", (name, message)
        assert message.startswith(says), message
        assert "next run looks again" in message or "no @champion yet" in message, message


def _pids_of_flow_run(run_id: str) -> list[int]:
    """Processes whose environment carries this flow run (the worker's child and the forked run)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_run_killed_with_its_worker_is_marked_crashed_and_frees_the_slot(deployed):
    """SIGKILL of the flow-run process and of its worker mid-training: nothing reports the death, the
    heartbeats stop, and the automation (helm/trip-duration/files/automations.json) marks the run
    Crashed within a bounded time; the deployment's one slot is free again, a rerun completes, and the
    MLflow run a killed training left RUNNING is ended FAILED by that rerun. (Training runs on the cpu
    queue; its fit, on the gpu queue, is left to finish: the rerun starts its own.)"""
    import mlflow
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = _caught_running(client, "training/train", {"train_month": "2023-01"})
        worker = int((deployed.root / "pids" / "worker-cpu.pid").read_text())
        victims = [worker, *_pids_of_flow_run(str(run.id))]
        assert len(victims) >= 2, victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # what a killed registration leaves: an MLflow run RUNNING, tagged with its flow run
        experiment = mlflow.set_experiment("trip-duration")
        orphan = MlflowClient().create_run(experiment.experiment_id, tags={"prefect_flow_run_id": str(run.id)})
        while time.monotonic() - killed < 240:
            state = client.read_flow_run(run.id).state
            if state.is_final():
                break
            time.sleep(2)
        crashed_after = time.monotonic() - killed
    assert state.type.value == "CRASHED", (state.name, state.message)
    assert "No heartbeat for 90 s" in (state.message or "")
    assert crashed_after < 150, crashed_after  # 90 s without heartbeats + the server's evaluation period
    deployed.start_workers()  # a new worker; the dead run no longer holds the queue's slot
    rerun_state, _, _ = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
    assert rerun_state == "Completed"
    ended = MlflowClient().get_run(orphan.info.run_id)
    assert ended.info.status == "FAILED" and ended.data.tags["trip_duration.ended_by"].startswith("prefect-flow-run:")


def test_a_fit_that_fails_fails_its_training_run_naming_it_and_registers_nothing(deployed):
    """README, "Only the fit on the GPU": device=cuda on a machine without one fails the fit (on the gpu queue);
    its training run fails with one line naming the fit run and how to read its logs; no version."""
    from prefect.client.orchestration import get_client

    _ensure_champion()
    mlflow_client = MlflowClient()
    versions = {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")}
    state, _, run_id = run_and_wait("training/train", {"train_month": "2023-01", "device": "cuda"}, timeout=600)
    assert state == "Failed"
    (fit,) = fit_runs(run_id)
    assert fit.state.is_failed() and fit.work_queue_name == "gpu" and fit.parameters["device"] == "cuda"
    expected = (f"GPU fit run {fit.name} ({fit.id}) ended Failed: ")
    errors = _log_messages(run_id, expected)
    assert errors and f"its logs: kubectl logs -l prefect.io/flow-run-id={fit.id}" in errors[0], errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    assert _log_messages(fit.id, "training.device='cuda' but XGBoost sees no usable GPU")
    with get_client(sync_client=True) as client:
        assert expected in (client.read_flow_run(run_id).state.message or "")
    assert {t.name for t in _task_runs(run_id) if t.state and t.state.is_completed()} >= {
        "evaluation.train_baseline", "evaluation.score_champion"}  # what needed no model ran while the fit did
    assert "evaluation.evaluate" not in {t.name for t in _task_runs(run_id)}
    assert {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")} == versions


def _caught_running(client, deployment: str, parameters: dict, after_s: float = 3.0, tries: int = 3):
    """A run of ``deployment`` caught while Running, at least ``after_s`` after it started (its first
    heartbeat has gone out). A whole training takes ~6 s here: a run that ends first is replaced."""
    from datetime import datetime, timezone

    from prefect.deployments import run_deployment

    for _ in range(tries):
        run = run_deployment(deployment, parameters=parameters, timeout=0)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            current = client.read_flow_run(run.id)
            if current.state.is_final():
                break
            started = current.start_time
            if current.state.is_running() and started and (datetime.now(timezone.utc) - started).total_seconds() >= after_s:
                return current
            time.sleep(0.2)
    pytest.fail(f"no run of {deployment} could be caught running {after_s} s after its start in {tries} tries")


def test_mlflow_down_during_training_fails_within_the_retry_budget_and_a_rerun_is_clean(deployed):
    """MLflow down while a training runs (stopped before it starts, so the timing cannot race a
    0.3 s training): the first node that needs MLflow fails after 3 retries, each a WARNING in the
    run's own logs, in under 3 minutes (not ~20 behind MLflow's own retries); no version and no
    alias move; with MLflow back, a rerun registers exactly one version. The gpu worker is stopped too:
    the training run's fit is still queued when the run fails, and the run cancels it (no GPU pod is left
    to a run that no longer wants it)."""
    from flows.kedro_tasks import IO_RETRIES

    _ensure_champion()
    mlflow_client = MlflowClient()
    versions = {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")}
    champion = mlflow_client.get_model_version_by_alias("trip-duration-yellow", "champion").version
    deployed.stop("mlflow")
    deployed.stop("worker-gpu")
    try:
        state, _, run_id = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
    finally:
        deployed.start_mlflow()
        deployed.start_workers()
    (failed,) = [t for t in _task_runs(run_id) if t.state and t.state.is_failed()]
    logs = _logs(run_id, lambda found: sum(log.level == 30 and "transient error" in log.message
                                           for log in found) >= IO_RETRIES)
    assert state == "Failed"
    assert failed.name in {"evaluation.score_champion", "evaluation.register_model"}, failed.name  # the MLflow nodes
    (fit,) = fit_runs(run_id)
    assert fit.state.type.value == "CANCELLED" and fit.state.message == "cancelled: its training run failed"
    assert failed.run_count == IO_RETRIES + 1
    budget = (failed.end_time - failed.start_time).total_seconds()
    assert budget < 180, budget  # the documented bound, not a speed figure: MLflow's defaults took ~20 min
    warnings = [log.message for log in logs if log.level == 30 and "transient error" in log.message]
    assert len(warnings) == IO_RETRIES and all(failed.name in w for w in warnings), warnings
    assert {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")} == versions
    assert mlflow_client.get_model_version_by_alias("trip-duration-yellow", "champion").version == champion
    rerun_state, _, _ = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
    assert rerun_state == "Completed"
    assert len({v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")} - versions) == 1


def test_a_backfill_is_queued_not_cancelled_while_the_daily_infer_runs(deployed):
    """The daily infer cancels a colliding run (CANCEL_NEW); backfill runs have their own deployment and
    limit (ENQUEUE): started while an infer run is active, every one of them completes, in order."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from infra import backfill

    _ensure_champion()
    daily = run_deployment("inference/infer", parameters={"batch_month": "2023-02"}, timeout=0)
    queued = backfill.queue(backfill.months("2023-02", "2023-03"), again=True)  # new runs, whatever ran before
    assert [q.how for q in queued] == ["queued", "queued"]
    runs = [daily.id, *(q.run.id for q in queued)]
    deadline = time.monotonic() + 900
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            states = [client.read_flow_run(run_id).state for run_id in runs]
            if all(s.is_final() for s in states):
                break
            time.sleep(2)
        finished = [client.read_flow_run(run_id) for run_id in runs]
    assert [r.state.name for r in finished] == ["Completed"] * 3, [(r.name, r.state.name, r.state.message) for r in finished]
    first, second = finished[1], finished[2]
    assert first.end_time <= second.start_time  # one at a time, in the order queued
    assert set(finished[1].tags) >= {"backfill"}


def _ensure_champion() -> None:
    if not MlflowClient().search_model_versions("name = 'trip-duration-yellow'"):  # a test run alone: train first
        assert run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)[0] == "Completed"


def test_s3_down_during_ingest_leaves_no_half_written_month_and_a_rerun_commits_it(deployed):
    """S3 goes away when the ingest writes validated/ and stays away past the retry budget: the run
    fails, the month has no committed outcome (readers refuse it, nothing half-written is used), the
    raw object is untouched; with S3 back, a rerun commits the month whole."""
    _ensure_champion()
    s3 = boto3.client("s3")
    outcome_key = "reports/ingest/taxi=yellow/year=2023/month=03/outcome.json"
    raw_before = s3.get_object(Bucket=deployed.bucket, Key="raw/yellow_tripdata_2023-03.parquet")["Body"].read()
    proxy = deployed.proxy
    proxy.down_seconds = 75
    try:
        proxy.arm(f"PUT /{deployed.bucket}/validated/".encode())  # keys are URL-encoded (year%3D...)
        state, _, _ = run_and_wait("inference/infer", {"batch_month": "2023-03", "reingest": True}, timeout=600)
        assert proxy.triggered.is_set(), "the outage never happened"
        assert state == "Failed"
        assert proxy.restored.wait(120)
    finally:
        proxy.down_seconds = 6.0
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=deployed.bucket, Key=outcome_key)  # deleted first, written last: not committed
    assert s3.get_object(Bucket=deployed.bucket, Key="raw/yellow_tripdata_2023-03.parquet")["Body"].read() == raw_before
    state, _, _ = run_and_wait("inference/infer", {"batch_month": "2023-03", "reingest": True}, timeout=600)
    assert state == "Completed"
    outcome = pd.read_json(io.BytesIO(s3.get_object(Bucket=deployed.bucket, Key=outcome_key)["Body"].read()), typ="series")
    assert outcome["status"] == "accepted"


def test_an_s3_that_hangs_fails_the_run_within_the_retry_budget_and_writes_nothing(deployed):
    """S3 accepts connections and reads requests but never answers (the worst case for timeouts), from
    the write of predictions on, for longer than the budget: the node fails after its 3 retries, each a
    WARNING, in under 3 minutes (measured, not computed: 2 S3 attempts x 15 s each node attempt), and
    no prediction object exists; with S3 answering again a rerun completes."""
    from flows.kedro_tasks import IO_RETRIES

    _ensure_champion()
    proxy = deployed.proxy
    proxy.down_seconds = 400  # longer than any budget: the run must give up on its own
    s3 = boto3.client("s3")
    batch = {"batch_start": "2023-03-10", "batch_end": "2023-03-12"}  # a batch no other test scores
    try:
        proxy.arm(f"PUT /{deployed.bucket}/predictions/".encode(), hang=True)
        state, _, run_id = run_and_wait("inference/infer", batch, timeout=600)
        assert proxy.triggered.is_set(), "the outage never happened"
    finally:
        proxy.end_outage()
        assert proxy.restored.wait(30)
        proxy.down_seconds = 6.0
    (failed,) = [t for t in _task_runs(run_id) if t.state and t.state.is_failed()]
    logs = _logs(run_id, lambda found: sum(log.level == 30 and "transient error" in log.message
                                           for log in found) >= IO_RETRIES)
    budget = (failed.end_time - failed.start_time).total_seconds()
    print(f"hanging S3: {failed.name} failed after {failed.run_count} attempts in {budget:.1f} s")
    assert state == "Failed" and failed.run_count == IO_RETRIES + 1, (state, failed.name, failed.run_count)
    assert budget < 180, budget
    warnings = [log.message for log in logs if log.level == 30 and "transient error" in log.message]
    assert len(warnings) == IO_RETRIES, warnings
    listing = s3.list_objects_v2(Bucket=deployed.bucket, Prefix="predictions/taxi=yellow/range=2023-03-10_2023-03-12/")
    assert not listing.get("Contents"), listing.get("Contents")
    assert not s3.list_multipart_uploads(Bucket=deployed.bucket).get("Uploads")
    assert run_and_wait("inference/infer", batch, timeout=600)[0] == "Completed"


def test_s3_down_during_registration_leaves_no_version_and_a_rerun_registers_one(deployed):
    """The MLflow server cannot reach its artifact store (S3) when the model is logged, and not for
    the whole retry budget: the run fails on register_model after its retries, no version is registered
    (each attempt's MLflow run ends FAILED, none left RUNNING), the champion is untouched; with S3
    back, a rerun registers exactly one version."""
    from flows.kedro_tasks import IO_RETRIES

    _ensure_champion()
    mlflow_client = MlflowClient()
    versions = {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")}
    champion = mlflow_client.get_model_version_by_alias("trip-duration-yellow", "champion").version
    proxy = deployed.mlflow_proxy
    proxy.down_seconds = 400  # longer than any budget: the run must give up on its own
    try:
        proxy.arm(f"PUT /{deployed.bucket}/mlflow/".encode())  # the model's files, written by the MLflow server
        state, _, run_id = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
        assert proxy.triggered.is_set(), "the outage never happened"
        (failed,) = [t for t in _task_runs(run_id) if t.state and t.state.is_failed()]
    finally:
        proxy.end_outage()
        assert proxy.restored.wait(30)
        proxy.down_seconds = 6.0
    assert state == "Failed"
    assert failed.name == "evaluation.register_model" and failed.run_count == IO_RETRIES + 1, (failed.name, failed.run_count)
    assert (failed.end_time - failed.start_time).total_seconds() < 180  # the documented budget
    assert {v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")} == versions
    assert mlflow_client.get_model_version_by_alias("trip-duration-yellow", "champion").version == champion
    experiment = mlflow_client.get_experiment_by_name("trip-duration")
    attempts = mlflow_client.search_runs([experiment.experiment_id], f"tags.prefect_flow_run_id = '{run_id}'")
    assert len(attempts) == IO_RETRIES + 1 and {r.info.status for r in attempts} == {"FAILED"}
    rerun_state, _, _ = run_and_wait("training/train", {"train_month": "2023-01"}, timeout=600)
    assert rerun_state == "Completed"
    assert len({v.version for v in mlflow_client.search_model_versions("name = 'trip-duration-yellow'")} - versions) == 1


def _scheduled_infer_runs(client) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType

    return [r for r in client.read_flow_runs(
        flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))),
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["infer"])), limit=200) if r.auto_scheduled]


def _wait_for_scheduled(client, at_least: int, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _scheduled_infer_runs(client)
        if len(runs) >= at_least:
            return runs
        time.sleep(1)
    pytest.fail(f"the scheduler made fewer than {at_least} runs of inference/infer in {timeout} s")


def test_a_prefect_server_restart_loses_nothing_schedules_nothing_twice_and_the_workers_reconnect(deployed):
    """The server restarted (its database kept) with the daily infer's schedule active: deployments and
    past runs are there, the restarted server's scheduler (every 5 s here) keeps the runs it had made and
    adds no second run for any scheduled time, and the same workers pick up the next run without being
    restarted."""
    from prefect.client.orchestration import get_client

    from infra.local.demo import pause_schedules

    _ensure_champion()
    with get_client(sync_client=True) as client:
        before = {r.id for r in client.read_flow_runs()}
        infer = client.read_deployment_by_name("inference/infer")
    try:
        with get_client(sync_client=True) as client:
            for schedule in infer.schedules:
                client.update_deployment_schedule(infer.id, schedule.id, active=True)
            scheduled = _wait_for_scheduled(client, at_least=3)
            time.sleep(10)  # the recent-deployments scheduler (every 5 s) has had its turn
            scheduled = _scheduled_infer_runs(client)
        workers = {q: int((deployed.root / "pids" / f"worker-{q}.pid").read_text()) for q in ("gpu", "cpu")}
        deployed.stop("prefect")
        os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"  # the restarted server's scheduler
        try:
            deployed.start_prefect()
        finally:
            del os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"]
        with get_client(sync_client=True) as client:
            assert before <= {r.id for r in client.read_flow_runs()}
            for name in ("training/train", "inference/infer", "inference/backfill"):
                client.read_deployment_by_name(name)
            time.sleep(20)  # the scheduler has gone over the active schedule at least three times
            after = _scheduled_infer_runs(client)
        times = [r.expected_start_time for r in after]
        assert len(times) == len(set(times)), "two runs for one scheduled time"
        assert {r.id for r in scheduled} <= {r.id for r in after}  # the same runs, kept, not made again
        state, _, _ = run_and_wait("inference/infer", {"batch_month": "2023-02"}, timeout=600)
        assert state == "Completed"
        assert workers == {q: int((deployed.root / "pids" / f"worker-{q}.pid").read_text()) for q in ("gpu", "cpu")}
    finally:
        pause_schedules(("inference/infer",))
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 60
        while _scheduled_infer_runs(client) and time.monotonic() < deadline:
            time.sleep(1)  # pausing deletes the runs it had scheduled
        assert not _scheduled_infer_runs(client)
