"""`make demo`: the whole pipeline on the embedded local stack, through real Prefect workers.

Starts (or reuses) moto S3, MLflow and Prefect on 127.0.0.1, deploys prefect.yaml with
PREFECT_WORK_POOL=local (a process pool with gpu and cpu queues), writes two synthetic
months to raw/, runs `train` then `infer` and writes build/demo/summary.json.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

from infra.deployments import SCHEDULED
from infra.local.stack import DEFAULT_DIR, ROOT, VENV_BIN, Stack
from infra.progress import run_streamed

TRAIN_MONTH, VALID_MONTH = "2023-01", "2023-02"
SUMMARY = ROOT / "build" / "demo" / "summary.json"


#: how long no auto-scheduled run may appear after the pause (the scheduler's loop is 5 s here)
PAUSE_SETTLE_S = 10
DEPLOYMENTS = SCHEDULED
RESUME_HINT = "prefect deployment schedule resume --all"
TRIGGERS_HINT = "prefect automation resume '<name>' (prefect automation ls lists them)"


def deploy(stack: Stack, pool: str = "local") -> None:
    """`prefect --no-prompt deploy --all` of the one prefect.yaml, after our own checks; then the
    schedules and the deployments' event triggers are paused (see :func:`pause_schedules` and
    :func:`pause_triggers`)."""
    env = {**os.environ, **stack.env(), "PREFECT_WORK_POOL": pool, "TRIP_DURATION_IMAGE": "local-process"}
    for argv, what in (
        ([str(VENV_BIN / "python"), "-m", "infra.deployments", "check"], "checking prefect.yaml"),
        ([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"], "deploying"),
    ):
        code, output = run_streamed(argv, what, show=_deploy_progress, cwd=ROOT, env=env, indent="    ")
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{output[-8000:]}")
    pause_schedules()
    pause_triggers()


def _deploy_progress(line: str) -> str | None:
    """The lines of `prefect deploy` that say where it is: each deployment, step and result."""
    text = line.strip("│ ╭╮╰╯─").strip()
    if text.startswith(("Deploying ", "> Running ", "prefect.yaml:")) or "successfully created" in text:
        return text
    return None


def pause_schedules(deployments: tuple[str, ...] = DEPLOYMENTS) -> None:
    """Deactivate the deployments' schedules (Prefect then deletes the runs it had scheduled).

    The local stack holds two synthetic months of 2023: a scheduled `train` or `infer` would only complete
    saying there is nothing to do. Runs started by hand are unaffected; `RESUME_HINT` turns them back on.

    The server's scheduler for recently changed deployments (every 5 s) may have read a schedule while it
    was still active, right after `prefect deploy`, and insert its runs just after the pause deleted them:
    auto-scheduled runs of these deployments are deleted until ``PAUSE_SETTLE_S`` pass with none found.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        ids = []
        for name in deployments:
            deployment = client.read_deployment_by_name(name)
            ids.append(deployment.id)
            for schedule in deployment.schedules:
                client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < PAUSE_SETTLE_S:
            late = [run for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)), limit=200)
                if run.auto_scheduled and run.run_count == 0]
            for run in late:
                client.delete_flow_run(run.id)
            if late:
                quiet_since = time.monotonic()
            time.sleep(1)


def pause_triggers() -> list[str]:
    """Pause the automations `prefect deploy` made from the deployments' ``triggers:`` (prefect.yaml);
    returns their names. On the local stack runs are started by hand or by the tests, as with the schedules:
    a promotion would otherwise queue a rescoring run behind them. `TRIGGERS_HINT` turns one back on."""
    from prefect.client.orchestration import get_client

    paused = []
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            for automation in client.read_resource_related_automations(f"prefect.deployment.{deployment.id}"):
                if automation.enabled:
                    client.pause_automation(automation.id)
                paused.append(automation.name)
    return paused


def write_months(stack: Stack, rows: int = 100_000) -> list[str]:
    import pyarrow.parquet as pq

    from trip_duration import layout
    from trip_duration.io import s3
    from trip_duration.periods import Month
    from trip_duration.synth import generate_month

    keys = []
    for month in (TRAIN_MONTH, VALID_MONTH):
        buffer = io.BytesIO()
        pq.write_table(generate_month(month, rows=rows), buffer)
        key = layout.raw_key("yellow", Month.parse(month))
        s3.put_bytes(stack.bucket, key, buffer.getvalue())
        keys.append(f"s3://{stack.bucket}/{key}")
    return keys


def run_and_wait(
    deployment: str, parameters: dict, timeout: float = 900, job_variables: dict | None = None, quiet: bool = False
) -> tuple[str, dict | None, str]:
    """Start a deployment run and follow it, printing its progress unless ``quiet``;
    returns (state, result, run id)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, parameters=parameters, job_variables=job_variables, timeout=0)
    if not quiet:
        print(f"  {deployment}: flow run {run.name} ({run.id}) {parameters}", flush=True)
    started, last = time.monotonic(), None
    with get_client(sync_client=True) as client:
        while time.monotonic() - started < timeout:
            run = client.read_flow_run(run.id)
            if not quiet:
                tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                done = sorted(t.name for t in tasks if t.state and t.state.is_completed())
                line = f"{run.state.name}: {len(done)} task(s) done" + (f", last {done[-1]}" if done else "")
                if line != last:
                    print(f"    [{time.monotonic() - started:5.1f}s] {line}", flush=True)
                    last = line
            if run.state.is_final():
                result = None
                if run.state.is_completed():
                    try:
                        result = run.state.result(raise_on_failure=False)
                    except Exception:  # noqa: BLE001 - results are optional, artifacts carry them too
                        result = None
                return run.state.name, result, str(run.id)
            time.sleep(1)
    return "TimedOut", None, str(run.id)


def registry_facts(stack: Stack, run_id: str) -> dict:
    """What the train run recorded, read back from MLflow (the run tagged with this flow run)."""
    from mlflow.tracking import MlflowClient

    from trip_duration.config import get_settings

    client = MlflowClient(stack.mlflow_url)
    facts: dict = {}
    try:
        model = get_settings().model_for("yellow")
        facts["champion_version"] = int(client.get_model_version_by_alias(model, "champion").version)
    except Exception:  # noqa: BLE001 - no champion: the summary says null
        facts["champion_version"] = None
    runs = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.prefect_flow_run_id = '{run_id}'",
    )
    facts["experiment_id"] = runs[0].info.experiment_id if runs else None
    if runs:
        run = runs[0]
        facts.update(baseline_rmse=run.data.metrics.get("baseline_rmse"), model_rmse=run.data.metrics.get("model_rmse"),
                     mlflow_run_id=run.info.run_id)
        versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        if versions:
            facts["registered_version"] = int(versions[0].version)
            facts["promotion_decision"] = versions[0].tags.get("promotion.decision")
    return facts


def mlflow_urls(stack: Stack, experiment_id: str | None) -> dict[str, str]:
    """Deep links into MLflow's UI: the experiment's training runs and the registered model."""
    from trip_duration.config import get_settings

    urls = {"mlflow_model_url": f"{stack.mlflow_url}/#/models/{get_settings().model_for('yellow')}"}
    if experiment_id:
        urls["mlflow_runs_url"] = f"{stack.mlflow_url}/#/experiments/{experiment_id}/runs"
    return urls


def inference_facts(stack: Stack, batch_month: str, model_version: int | None) -> dict:
    """The batch summary the infer run wrote to S3."""
    from trip_duration import layout
    from trip_duration.io import s3
    from trip_duration.periods import DateRange, Month

    if model_version is None:
        return {}
    key = layout.inference_summary_key("yellow", DateRange.of_month(Month.parse(batch_month)), model_version)
    try:
        summary = s3.get_json(stack.bucket, key)
    except Exception:  # noqa: BLE001 - no summary: the run failed, the state says so
        return {}
    return {"predictions_uri": summary["predictions_uri"], "prediction_rows": summary["rows"],
            "summary_uri": f"s3://{stack.bucket}/{key}"}


def main() -> int:
    root = Path(os.environ.get("STACK_DIR", DEFAULT_DIR)).resolve()
    print(f"starting the local stack under {root} ...", flush=True)
    try:
        stack = Stack.for_user(root)
        stack.up()
    except RuntimeError as err:  # a taken port, a server that would not start: the message says which
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ.update(stack.env())
    print(f"  S3 {stack.s3_url} | MLflow {stack.mlflow_url} | Prefect {stack.prefect_url}", flush=True)
    print("writing two synthetic TLC months to raw/ ...", flush=True)
    raw = write_months(stack)
    print("deploying prefect.yaml (code pushed to S3) ...", flush=True)
    deploy(stack)
    print("running train on the cpu queue (its XGBoost fit: a run of fit on the gpu queue) ...", flush=True)
    train_state, _, train_id = run_and_wait("training/train", {"train_month": TRAIN_MONTH})
    print("running infer on the cpu queue ...", flush=True)
    infer_state, _, infer_id = run_and_wait("inference/infer", {"batch_month": VALID_MONTH})
    trained = registry_facts(stack, train_id)
    urls = mlflow_urls(stack, trained.get("experiment_id"))
    summary = {
        # the figures below are of our generator's trips (trip_duration.synth), never of real TLC data
        "data": f"synthetic: {TRAIN_MONTH} and {VALID_MONTH} made by trip_duration.synth, not real TLC trips",
        "train_flow_run_state": train_state,
        "infer_flow_run_state": infer_state,
        "train_flow_run_id": train_id,
        "infer_flow_run_id": infer_id,
        "baseline_rmse": trained.get("baseline_rmse"),
        "model_rmse": trained.get("model_rmse"),
        "registered_version": trained.get("registered_version"),
        "promotion_decision": trained.get("promotion_decision"),
        "champion_version": trained.get("champion_version"),
        "mlflow_run_id": trained.get("mlflow_run_id"),
        **inference_facts(stack, VALID_MONTH, trained.get("champion_version")),
        "raw_objects": raw,
        "prefect_ui": stack.prefect_url,
        "mlflow_ui": stack.mlflow_url,
        **urls,
        "s3_endpoint": stack.s3_url,
        "state_dir": str(root),
    }
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(
        f"\nPrefect UI     {stack.prefect_url}  (flow runs, a task per Kedro node, artifacts)\n"
        f"MLflow runs    {urls.get('mlflow_runs_url', stack.mlflow_url)}  (training runs: RMSE, params)\n"
        f"MLflow model   {urls['mlflow_model_url']}  (versions, @champion)\n"
        f"Shell          source {root / 'env'}   (then prefect, mlflow, kedro, aws s3 ls s3://{stack.bucket}/)\n"
        f"Schedules      paused on the local stack (its 2023 months are older than any scheduled run looks); "
        f"resume: {RESUME_HINT}\n"
        f"Triggers       paused on the local stack too (README, \"Event-driven runs\"); resume: {TRIGGERS_HINT}\n"
        f"Stop it        make down   (state is kept in {root}; make reset deletes it)\n"
        f"Summary        {SUMMARY.relative_to(ROOT)}"
    )
    ok = train_state == infer_state == "Completed"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
