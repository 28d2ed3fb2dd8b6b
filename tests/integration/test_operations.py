"""Event-driven runs and notifications on the real local servers (README, "Event-driven runs" and
"Notifications"): prefect.yaml's trigger as `prefect deploy` made it, the chart's notification
automations as its hook Job makes them (the same automations.py and JSON), a real training run's event,
and the messages the Prefect server POSTs to a local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.tracking import MlflowClient

from flows.arrivals import ARRIVED, TRAINABLE
from flows.events import DRIFTED, PROMOTED, REJECTED, decision_event_id
from infra.local.demo import registry_facts, run_and_wait
from infra.local.stack import ROOT, VENV_BIN

pytestmark = pytest.mark.integration

FILES = ROOT / "helm" / "trip-duration" / "files"
TRIGGER = "trip-duration: rescore with a new champion"
DRIFT_TRIGGER = "trip-duration: retrain yellow on drift"
TRAINABLE_TRIGGER = "trip-duration: train yellow on a new month"
INGEST_TRIGGER = "trip-duration: ingest a new raw month"
PENDING_S = 15


class Receiver:
    """A webhook on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, *texts: str, timeout: float = 90) -> str:
        """The first message's text containing every one of ``texts``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if all(t in body["text"] for t in texts):
                    return body["text"]
            time.sleep(1)
        raise AssertionError(f"no message with {texts} in {timeout} s; received: {self.bodies}")


def _automations(env: dict, url: str | None) -> str:
    """What the chart's hook Job runs (notifications on with ``url``, off without)."""
    env = {**os.environ, **env, "TRIP_DURATION_PENDING_ALERT_S": str(PENDING_S)}
    env.pop("TRIP_DURATION_NOTIFY_URL", None)
    if url:
        env["TRIP_DURATION_NOTIFY_URL"] = url
    done = subprocess.run([str(VENV_BIN / "python"), str(FILES / "automations.py"), str(FILES / "automations.json"),
                           str(FILES / "notifications.json")], env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def receiver(deployed):
    hook = Receiver()
    out = _automations(deployed.env(), hook.url)
    assert "notifications on" in out and hook.url not in out  # the URL is a secret: never printed
    yield hook
    assert "deleted (notifications are off)" in _automations(deployed.env(), None)
    hook.server.shutdown()


def _trigger(deployment: str = "inference/backfill", name: str = TRIGGER):
    """The automation `prefect deploy` made from the deployment's trigger ``name`` (prefect.yaml)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        (automation,) = [a for a in client.read_resource_related_automations(f"prefect.deployment.{found.id}")
                         if a.name == name]
        return automation


def _runs_since(since: datetime, deployment: str = "backfill") -> list:
    """The runs of ``deployment`` (its name alone) created since ``since``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                     limit=200)
    return [r for r in runs if r.created and r.created >= since]


def _events(name: str, resource_id: str) -> list[dict]:
    import httpx

    response = httpx.post(f"{os.environ['PREFECT_API_URL']}/events/filter", timeout=30, json={
        "filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]},
                   "occurred": {"since": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}},
        "limit": 50})
    response.raise_for_status()
    return response.json()["events"]


def _wait_for_events(name: str, resource_id: str, event_id: str | None = None, timeout: float = 60) -> list[dict]:
    """The events (of id ``event_id``) once the server has them: a run's events are sent as its process exits
    and stored in batches, after its final state."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:  # the local server's SQLite can be locked for a while under load: ask again until the deadline
            found = [e for e in _events(name, resource_id) if event_id in (None, e["id"])]
        except httpx.TimeoutException:
            found = []
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name} event {event_id or ''} about {resource_id} in {timeout} s")
        time.sleep(1)


def _automation_events() -> list[tuple[str, dict]]:
    """What the server's automations did (triggered, actions fired or failed): the assertion's context."""
    import httpx

    response = httpx.post(f"{os.environ['PREFECT_API_URL']}/events/filter", timeout=30, json={
        "filter": {"event": {"prefix": ["prefect.automation"]},
                   "occurred": {"since": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}},
        "limit": 50})
    response.raise_for_status()
    return [(e["event"], e["payload"]) for e in response.json()["events"]]


def _replay(event: dict) -> None:
    """Send ``event`` again, same id: what a client's retry or a relay's redelivery does."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def send():
        async with get_events_client() as client:
            await client.emit(Event.model_validate({k: event[k] for k in
                                                    ("occurred", "event", "resource", "related", "payload", "id")}))

    asyncio.run(send())


def _wait_final(run_id, timeout: float = 300):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} not final in {timeout} s")


def test_local_deploys_leave_the_triggers_made_from_prefect_yaml_paused(deployed):
    automation = _trigger()
    assert automation.name == TRIGGER and not automation.enabled
    assert automation.trigger.expect == {PROMOTED}
    for deployment, taxi in (("training/train", "yellow"), ("training/train-green", "green")):
        for name, expect in ((f"trip-duration: retrain {taxi} on drift", DRIFTED),
                             (f"trip-duration: train {taxi} on a new month", TRAINABLE)):
            automation = _trigger(deployment, name)
            assert not automation.enabled and automation.trigger.expect == {expect}
            assert automation.trigger.match.model_dump()["trip-duration.taxi"] == taxi
    assert not _trigger("ingest/ingest", INGEST_TRIGGER).enabled


def test_a_new_champion_rescores_once_and_a_replay_starts_nothing(deployed, receiver):
    from prefect.client.orchestration import get_client

    model = "trip-duration-yellow"
    mlflow = MlflowClient(deployed.mlflow_url)
    try:  # no champion: this run's gate promotes whatever it trains
        mlflow.delete_registered_model_alias(model, "champion")
    except Exception:  # noqa: BLE001 - first run of the model (this module alone)
        pass
    with get_client(sync_client=True) as client:
        client.resume_automation(_trigger().id)
    try:
        since = datetime.now(timezone.utc)
        state, _, train_id = run_and_wait("training/train", {"train_month": "2023-01"}, quiet=True)
        facts = registry_facts(deployed, train_id)
        assert state == "Completed" and facts["promotion_decision"] == "promoted", facts
        version = facts["registered_version"]
        assert facts["champion_version"] == version
        event_id = str(decision_event_id(PROMOTED, model, version))
        # the run emitted its gate's event, with the id derived from the version
        (event,) = _wait_for_events(PROMOTED, f"trip-duration.model.{model}", event_id)
        assert event["payload"]["version"] == str(version) and event["payload"]["taxi"] == "yellow"
        assert event["resource"]["trip-duration.model.version"] == str(version)

        deadline = time.monotonic() + 90
        while not (runs := _runs_since(since)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(runs) == 1, (_trigger(), _automation_events())
        (run,) = runs
        assert run.parameters == {"reingest": False, "taxi": "yellow", "batch_month": "2023-02", "event_id": event_id}
        run = _wait_final(run.id)
        assert run.state.is_completed(), run.state
        handled = json.loads(deployed_s3_get(deployed, f"events/handled/{event_id}.json"))
        assert handled["flow_run_id"] == str(run.id) and handled["outcome"] == f"scored year=2023/month=02 with v{version}"

        _replay(event)  # the same event again: the server has seen its id
        time.sleep(20)
        assert [r.id for r in _runs_since(since)] == [run.id]

        # a replay later than the server remembers ids (15 min; or after a restart) still creates a run:
        # that run finds the event handled in S3 and does nothing
        state, _, late_id = run_and_wait("inference/backfill", {"taxi": "yellow", "batch_month": "2023-02",
                                                                "event_id": event_id}, quiet=True)
        with get_client(sync_client=True) as client:
            late = client.read_flow_run(late_id)
        assert state == "Completed" and f"already handled by flow run {run.name}" in late.state.message

        # the same data again does not beat the champion by the margin: rejected, a message, no rescoring
        since = datetime.now(timezone.utc)
        state, _, again_id = run_and_wait("training/train", {"train_month": "2023-01"}, quiet=True)
        again = registry_facts(deployed, again_id)
        assert state == "Completed" and again["promotion_decision"] == "rejected", again
        text = receiver.wait_for(f"{model} v{again['registered_version']} not promoted", "does not beat champion",
                                 f"stays v{version}")
        assert "trained on 2023-01, validated on 2023-02" in text
        assert _wait_for_events(REJECTED, f"trip-duration.model.{model}")
        time.sleep(10)
        assert _runs_since(since) == []
    finally:
        with get_client(sync_client=True) as client:
            client.pause_automation(_trigger().id)


def deployed_s3_get(stack, key: str) -> bytes:
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.s3_url, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    return s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def test_a_failed_run_sends_a_message_naming_it_and_its_logs(deployed, receiver):
    state, _, run_id = run_and_wait("training/train", {"train_month": "2031-01"}, quiet=True)
    assert state == "Failed"
    text = receiver.wait_for(f"({run_id})", "ended Failed")
    assert text.startswith("trip-duration: training/") and "2031-01" in text
    assert f"kubectl logs -l prefect.io/flow-run-id={run_id}" in text


def test_a_run_pending_longer_than_the_bound_sends_a_message(deployed, receiver):
    """A run whose pod never starts stays Pending (Unschedulable: no GPU node, a quota): here a run put in
    Pending by hand, scheduled far ahead so no worker takes it."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Scheduled

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("inference/backfill")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"batch_month": "2023-01"},
            state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=30)))
        client.set_flow_run_state(run.id, Pending(), force=True)
        try:
            text = receiver.wait_for(f"({run.id})", f"Pending for over {PENDING_S} s", timeout=PENDING_S + 90)
            assert f"kubectl get pods -l prefect.io/flow-run-id={run.id}" in text
        finally:
            client.delete_flow_run(run.id)


def _backfill(capsys, *args: str) -> tuple[int, str]:
    import re

    from infra import backfill

    code = backfill.main(list(args))
    # what make backfill prints (the flows' imports may log through Kedro's console handler too)
    ours = [line for line in capsys.readouterr().out.splitlines() if re.match(r"(\d{4}-\d{2}: |\[\d|backfill |follow )", line)]
    return code, "\n".join(ours) + "\n"


def _runs_of(deployment_name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=[deployment_name.split("/")[1]])))


def test_make_backfill_shows_progress_and_never_queues_a_month_twice(deployed, capsys):
    """README, "Backfills": WATCH=1 follows the runs with a line per change and a done count; the same
    range again queues nothing (one run Completed per month); AGAIN=1 queues anew, and an identical call
    while that run is active follows it instead of queueing a second one. (REINGEST=1 throughout: the
    promotion above rescored 2023-02 without it, so these parameters have no run yet.)"""
    before = len(_runs_of("inference/backfill"))
    code, out = _backfill(capsys, "--from", "2023-02", "--to", "2023-03", "--reingest", "--watch")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("2023-02: flow run ") and lines[0].endswith(" queued on inference/backfill"), out
    assert lines[1].startswith("2023-03: flow run ") and lines[1].endswith(" queued on inference/backfill"), out
    progress = [line for line in lines if line.startswith("[")]
    assert " 2023-02: " in progress[0] and " new -> " in progress[0], out  # (a fast run may be Completed already)
    counts = [int(line[1:].split("/", 1)[0]) for line in progress]
    assert counts == sorted(counts) and counts[-1] == 2, out  # the done count only grows, to all of them
    assert [line.split("] ")[0] for line in progress if line.endswith("-> Completed")][-1] == "[2/2 done", out
    assert lines[-1] == "backfill done: 2 Completed", out
    assert len(_runs_of("inference/backfill")) == before + 2

    code, out = _backfill(capsys, "--from", "2023-02", "--to", "2023-03", "--reingest")
    assert code == 0 and out.count("already completed, not queued again (AGAIN=1)") == 2, out
    assert len(_runs_of("inference/backfill")) == before + 2  # nothing queued

    code, out = _backfill(capsys, "--from", "2023-03", "--to", "2023-03", "--reingest", "--again")
    assert code == 0 and out.startswith("2023-03: flow run ") and " queued on " in out, out
    code, again = _backfill(capsys, "--from", "2023-03", "--to", "2023-03", "--reingest", "--again", "--watch")
    run_name = out.split("flow run ", 1)[1].split(" ", 1)[0]
    assert again.startswith(f"2023-03: flow run {run_name} ") and "already queued, not queued again on" in again, again
    assert code == 0 and again.splitlines()[-1] == "backfill done: 1 Completed", again
    assert len(_runs_of("inference/backfill")) == before + 3


def test_a_training_backfill_fits_through_the_gpu_queue_and_reports_a_failed_month(deployed, capsys):
    """TRAIN=1: one training run per month on training/train, its fit a run of `fit` on the gpu queue (the
    queue's concurrency limit holds); a month without its validation month fails, and WATCH=1 exits 1
    naming it."""
    code, out = _backfill(capsys, "--from", "2023-02", "--to", "2023-03", "--train", "--watch")
    assert code == 1, out
    assert " queued on training/train" in out.splitlines()[0]
    assert out.splitlines()[-1] == "backfill ended: 1 Completed, 1 Failed", out
    failed = [line for line in out.splitlines() if line.startswith("[") and "2023-03: " in line and "-> Failed" in line]
    assert len(failed) == 1 and "2023-04" in failed[0], out  # the missing validation month, named
    assert "2023-02: " in next(line for line in out.splitlines() if line.endswith("-> Completed")), out
    fits = [run for run in _runs_of("training/fit") if run.parameters.get("train_month") == "2023-02"]
    assert fits and all(run.work_queue_name == "gpu" for run in fits), [(r.name, r.work_queue_name) for r in fits]


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.startswith("trip_duration_")}


def test_the_metrics_exporter_serves_queue_depth_waits_runs_by_state_and_gpu_seconds(deployed):
    """README, "Metrics": the chart's exporter (helm/trip-duration/files/exporter.py) against the real server
    that ran this module's runs: a run due and not started counts in its queue's depth with its wait; the
    backfills above count as Completed; the fits as the gpu queue's runs with their seconds."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending

    from infra.local.stack import POOL, free_port

    port = free_port()
    env = {**os.environ, **deployed.env(), "TRIP_DURATION_WORK_POOL": POOL, "TRIP_DURATION_METRICS_PORT": str(port),
           "TRIP_DURATION_METRICS_ADDR": "127.0.0.1"}
    exporter = subprocess.Popen([str(VENV_BIN / "python"), str(FILES / "exporter.py")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "serving /metrics on port" in exporter.stdout.readline()
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("inference/backfill")
            run = client.create_flow_run_from_deployment(  # Pending at once: a pod that never starts
                deployment.id, parameters={"batch_month": "2023-01"}, state=Pending())
            try:
                time.sleep(3)
                series = _scrape(f"http://127.0.0.1:{port}/metrics")
            finally:
                client.delete_flow_run(run.id)
        assert series[("trip_duration_prefect_api_up", ())] == 1
        # every queue of the pool has its series; the Pending run is the cpu queue's depth, waiting for >= 3 s
        assert series[("trip_duration_work_queue_waiting_runs", (("queue", "gpu"),))] == 0
        assert series[("trip_duration_work_queue_waiting_runs", (("queue", "cpu"),))] == 1
        assert 3 <= series[("trip_duration_work_queue_oldest_wait_seconds", (("queue", "cpu"),))] < 120
        assert series[("trip_duration_flow_runs", (("deployment", "inference/backfill"), ("state", "Completed")))] >= 3
        fits = {labels: v for (name, labels), v in series.items() if name == "trip_duration_gpu_queue_runs"}
        assert fits and all(dict(labels)["deployment"].endswith("/fit") for labels in fits) and sum(fits.values()) >= 1
        seconds = sum(v for (name, _), v in series.items() if name == "trip_duration_gpu_queue_run_seconds")
        assert 0 < seconds < 3600 * sum(fits.values()), seconds
        for stat in ("mean", "max"):
            assert 0 <= series[("trip_duration_work_queue_wait_to_start_seconds", (("queue", "cpu"), ("stat", stat)))] < 3600
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)


def _put_drifted_month(stack, month: str) -> None:
    """A synthetic month (the same city as put_month's) whose trips are twice as long in miles: the
    distance drifts, and the champion's minutes per mile no longer hold."""
    import io

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from trip_duration import layout
    from trip_duration.io import s3
    from trip_duration.periods import Month
    from trip_duration.synth import generate_month

    table = generate_month(month, rows=20_000, seed=7)
    index = table.schema.get_field_index("trip_distance")
    table = table.set_column(index, "trip_distance", pc.multiply(table["trip_distance"], 2.0))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_bytes(stack.bucket, layout.raw_key("yellow", Month.parse(month)), buffer.getvalue())


def test_a_drifted_batch_retrains_once_and_a_replay_starts_nothing(deployed):
    """README, "Drift retrains" (last in the module: it adds months the backfill tests above must not see).
    Against the champion the tests above made: the month after its validation month, like its training
    month, is no drift and starts nothing; the month after that, with trips twice as long, emits one
    trip-duration.model.drifted and exactly one `train` run on the months it names, which completes and
    records the event; the same event again starts nothing, and a later run for it does nothing."""
    from prefect.client.orchestration import get_client

    from tests.conftest import put_month
    from trip_duration.periods import Month

    model = "trip-duration-yellow"
    mlflow = MlflowClient(deployed.mlflow_url)
    champion = mlflow.get_model_version_by_alias(model, "champion")
    params = mlflow.get_run(champion.run_id).data.params
    calm, drifted = Month.parse(params["valid_month"]).next(), Month.parse(params["valid_month"]).next().next()
    put_month(deployed, str(calm))
    _put_drifted_month(deployed, str(drifted))

    with get_client(sync_client=True) as client:
        client.resume_automation(_trigger("training/train", DRIFT_TRIGGER).id)
    try:
        since = datetime.now(timezone.utc)
        state, _, calm_id = run_and_wait("inference/infer", {"batch_month": str(calm)}, quiet=True)
        assert state == "Completed"
        report = json.loads(deployed_s3_get(deployed, f"reports/inference/taxi=yellow/year={calm.year}/"
                                                      f"month={calm.month:02d}/model_version={champion.version}/drift.json"))
        assert not report["drifted"] and report["line"].startswith("no drift: max PSI"), report
        assert report["train_month"] == params["train_month"]

        state, _, drifted_id = run_and_wait("inference/infer", {"batch_month": str(drifted)}, quiet=True)
        assert state == "Completed"
        report = json.loads(deployed_s3_get(deployed, f"reports/inference/taxi=yellow/year={drifted.year}/"
                                                      f"month={drifted.month:02d}/model_version={champion.version}/drift.json"))
        assert report["drifted"] and report["psi"]["trip_distance"] > 0.2 and report["rmse_ratio"] > 1.3, report
        event_id = str(decision_event_id(DRIFTED, model, f"{champion.version}/{drifted}"))
        assert report["event"] == {"name": DRIFTED, "id": event_id, "train_month": str(calm),
                                   "valid_month": str(drifted)}
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(limit=50)
        assert any(a.flow_run_id is not None and str(a.flow_run_id) == str(drifted_id) and "emitted " + DRIFTED in (a.data or "")
                   for a in artifacts), "the infer run's artifact does not carry the drift line"
        (event,) = _wait_for_events(DRIFTED, f"trip-duration.model.{model}", event_id, timeout=240)
        assert event["payload"]["batch"] == str(drifted) and event["resource"]["trip-duration.taxi"] == "yellow"

        deadline = time.monotonic() + 240
        while not (runs := _runs_since(since, "train")) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(runs) == 1, (_trigger("training/train", DRIFT_TRIGGER), _automation_events())
        (run,) = runs
        assert run.parameters == {"device": "auto", "taxi": "yellow", "train_month": str(calm),
                                  "valid_month": str(drifted), "event_id": event_id}
        run = _wait_final(run.id, timeout=600)
        assert run.state.is_completed(), run.state
        handled = json.loads(deployed_s3_get(deployed, f"events/handled/{event_id}.json"))
        assert handled["flow_run_id"] == str(run.id) and handled["outcome"].startswith("trained v")
        assert f"on {calm}, validated on {drifted}" in handled["outcome"]

        _replay(event)
        time.sleep(20)
        assert [r.id for r in _runs_since(since, "train")] == [run.id]
        state, _, late_id = run_and_wait("training/train", {"train_month": str(calm), "valid_month": str(drifted),
                                                            "event_id": event_id}, quiet=True)
        with get_client(sync_client=True) as client:
            late = client.read_flow_run(late_id)
        assert state == "Completed" and f"already handled by flow run {run.name}" in late.state.message
    finally:
        with get_client(sync_client=True) as client:
            client.pause_automation(_trigger("training/train", DRIFT_TRIGGER).id)


def test_a_new_raw_month_is_ingested_once_and_the_pair_it_completes_trains_once(deployed):
    """README, "New months train themselves" (after the drift test: months far after any trained one). A raw
    month alone is ingested once and trains nothing; the next month is ingested once (the first is not found
    again) and its pair starts exactly one `train` run, which completes; a third poll and replays of both
    events start nothing."""
    from prefect.client.orchestration import get_client

    from tests.conftest import put_month

    first, second = "2025-01", "2025-02"
    automations = [_trigger("ingest/ingest", INGEST_TRIGGER), _trigger("training/train", TRAINABLE_TRIGGER)]
    with get_client(sync_client=True) as client:
        for automation in automations:
            client.resume_automation(automation.id)

    def poll_and_ingest(month: str, since: datetime):
        state, _, _ = run_and_wait("arrivals/watch-raw", {"since": first}, quiet=True)
        assert state == "Completed"
        deadline = time.monotonic() + 240
        while not (runs := _runs_since(since, "ingest")) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(runs) == 1, (runs, _automation_events())
        (run,) = runs
        (event,) = _wait_for_events(ARRIVED, f"trip-duration.raw.yellow.{month}", run.parameters["event_id"], timeout=240)
        assert run.parameters == {"month": month, "taxi": "yellow", "event_id": event["id"]}
        run = _wait_final(run.id, timeout=600)
        assert run.state.is_completed(), run.state
        return run, event

    try:
        put_month(deployed, first)
        since = datetime.now(timezone.utc)
        run, arrived = poll_and_ingest(first, since)
        assert "no pair to train on" in run.state.message
        assert json.loads(deployed_s3_get(deployed, f"events/handled/{arrived['id']}.json"))["flow_run_id"] == str(run.id)

        put_month(deployed, second)
        since = datetime.now(timezone.utc)
        run, _ = poll_and_ingest(second, since)  # the first month has its outcome now: not found again
        trainable = _wait_for_events(TRAINABLE, f"trip-duration.month.yellow.{first}", timeout=240)
        assert len(trainable) == 1 and trainable[0]["payload"]["valid_month"] == second
        deadline = time.monotonic() + 240
        while not (trains := _runs_since(since, "train")) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(trains) == 1, (trains, _automation_events())
        (train,) = trains
        assert train.parameters == {"device": "auto", "taxi": "yellow", "train_month": first, "valid_month": second,
                                    "event_id": trainable[0]["id"]}
        train = _wait_final(train.id, timeout=600)
        assert train.state.is_completed(), train.state

        since = datetime.now(timezone.utc)
        state, _, _ = run_and_wait("arrivals/watch-raw", {"since": first}, quiet=True)
        assert state == "Completed"
        _replay(arrived)
        _replay(trainable[0])
        time.sleep(20)
        assert _runs_since(since, "ingest") == [] and _runs_since(since, "train") == []
    finally:
        with get_client(sync_client=True) as client:
            for automation in automations:
                client.pause_automation(automation.id)
