"""ingest -> training -> inference on a real moto S3 server (over HTTP) and a real MLflow server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import kedro_run, put_month
from trip_duration.errors import SchemaValidationError
from trip_duration.synth import generate_month, generate_trips

pytestmark = pytest.mark.integration


def _s3(stack):
    return boto3.client("s3", endpoint_url=stack.s3_url)


def _keys(stack, prefix):
    listing = _s3(stack).list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    return {o["Key"]: o for o in listing.get("Contents", [])}


@pytest.fixture(scope="module")
def trained(ml_stack):
    put_month(ml_stack, "2023-01")
    put_month(ml_stack, "2023-02")
    kedro_run("ingest", month="2023-01")
    kedro_run("ingest", month="2023-02")
    kedro_run("training", train_month="2023-01")
    return ml_stack


def test_ingest_writes_validated_data_and_reports(trained):
    s3 = _s3(trained)
    rows = json.loads(s3.get_object(Bucket=trained.bucket, Key="reports/ingest/taxi=yellow/year=2023/month=01/rows.json")["Body"].read())
    assert rows["rows_in"] == 20_000 and rows["rows_out"] + rows["rows_rejected"] == 20_000
    validated = pd.read_parquet(io.BytesIO(s3.get_object(
        Bucket=trained.bucket, Key="validated/taxi=yellow/year=2023/month=01/trips.parquet")["Body"].read()))
    assert len(validated) == rows["rows_out"]


def test_first_training_registers_a_champion(trained):
    client = MlflowClient()
    champion = client.get_model_version_by_alias("trip-duration-yellow", "champion")
    assert champion.version == "1"
    assert champion.tags["promotion.decision"] == "promoted"
    run = client.get_run(champion.run_id)
    assert run.data.metrics["model_rmse"] < 0.9 * run.data.metrics["baseline_rmse"]
    assert {"baseline_mae", "model_mae"} <= set(run.data.metrics)
    assert run.data.tags["data.train_rows"] and run.data.params["train_month"] == "2023-01"
    # MLflow's UI opens the experiment on its model-training view, not the GenAI one
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert "reports/promotion/taxi=yellow/train=2023-01/version=1.json" in _keys(trained, "reports/promotion/")


def test_a_version_carries_explicit_requirements_and_no_lock_file(trained, tmp_path):
    """Requirements are given to MLflow (no inference subprocess), and no 1.2 MB uv.lock per version."""
    import mlflow

    from trip_duration.io.registry import MODEL_REQUIREMENTS

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/trip-duration-yellow/1", dst_path=str(tmp_path)))
    assert not (local / "uv.lock").exists() and not (local / "pyproject.toml").exists()
    pinned = (local / "requirements.txt").read_text().split()
    assert sorted(line.split("==")[0] for line in pinned) == sorted(MODEL_REQUIREMENTS)
    assert all("==" in line for line in pinned)
    loaded = mlflow.pyfunc.load_model(str(local))  # what any MLflow consumer does with it
    from trip_duration.synth import generate_trips

    sample = generate_trips("2023-01", rows=50, seed=3)
    assert len(loaded.predict(sample)) == 50


def test_a_worse_model_never_becomes_champion(trained):
    kedro_run("training", train_month="2023-01", **{"training.model.n_estimators": 1, "training.model.max_depth": 1})
    client = MlflowClient()
    assert client.get_model_version_by_alias("trip-duration-yellow", "champion").version == "1"
    worse = client.get_model_version("trip-duration-yellow", "2")
    assert worse.tags["promotion.decision"] == "rejected" and worse.tags["promotion.compared_to"] == "1"
    report = json.loads(_s3(trained).get_object(
        Bucket=trained.bucket, Key="reports/promotion/taxi=yellow/train=2023-01/version=2.json")["Body"].read())
    assert report["promoted"] is False and report["champion_version"] == 1


def _versions(client) -> set[int]:
    return {int(v.version) for v in client.search_model_versions("name = 'trip-duration-yellow'")}


def test_a_retried_training_run_registers_one_version_and_finds_it_again(trained, monkeypatch):
    """A retry (Prefect keeps the flow run id across task and flow retries) finds the version its
    training run registered instead of registering a second one: one version, one MLflow run."""
    from trip_duration.io.registry import TRAINING_RUN_TAG

    client = MlflowClient()
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "5a0c3f0e-0000-4000-8000-retriedrun01")
    worse = {"training.model.n_estimators": 1, "training.model.max_depth": 1}
    before = _versions(client)
    kedro_run("training", train_month="2023-01", **worse)
    added = _versions(client) - before
    assert len(added) == 1
    (version,) = added
    kedro_run("training", train_month="2023-01", **worse)  # the retry
    assert _versions(client) - before == {version}
    key = "prefect-flow-run:5a0c3f0e-0000-4000-8000-retriedrun01"
    assert client.get_model_version("trip-duration-yellow", str(version)).tags[TRAINING_RUN_TAG] == key
    runs = client.search_runs([client.get_experiment_by_name("trip-duration").experiment_id],
                              f"tags.`{TRAINING_RUN_TAG}` = '{key}'")
    assert len(runs) == 1
    report = _json(trained, f"reports/promotion/taxi=yellow/train=2023-01/version={version}.json")
    assert report["training_run"] == key and report["promoted"] is False and report["registration_reused"] is True


def test_fit_then_evaluation_is_training_split_across_two_pods(trained, monkeypatch):
    """README, "Only the fit on the GPU": `fit` writes the model to candidates/ as JSON, `evaluation` reads it;
    together they give exactly the one-pod training's model (same data, same seed: same RMSE)."""
    client = MlflowClient()
    first = client.get_run(client.get_model_version("trip-duration-yellow", "1").run_id).data.metrics["model_rmse"]
    kedro_run("fit", train_month="2023-01", fit_run="fit-run-1")
    key = "candidates/taxi=yellow/train=2023-01/fit=fit-run-1/model.json"
    body = _s3(trained).get_object(Bucket=trained.bucket, Key=key)["Body"].read()
    assert json.loads(body)["format"] == "trip-duration-model/1"
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "5a0c3f0e-0000-4000-8000-splitrun0001")
    before = _versions(client)
    kedro_run("evaluation", train_month="2023-01", fit_run="fit-run-1")
    (version,) = _versions(client) - before
    run = client.get_run(client.get_model_version("trip-duration-yellow", str(version)).run_id)
    assert run.data.metrics["model_rmse"] == first
    report = _json(trained, f"reports/promotion/taxi=yellow/train=2023-01/version={version}.json")
    assert report["promoted"] is False and report["model_rmse"] == first  # not better than itself: gated


def test_an_evaluation_without_its_fits_model_fails_naming_the_fit_and_registers_nothing(trained):
    from trip_duration.errors import DataNotFoundError
    from trip_duration.logs import project_error

    client = MlflowClient()
    before = _versions(client)
    with pytest.raises(Exception) as failed:  # Kedro wraps a dataset's error in its DatasetError
        kedro_run("evaluation", train_month="2023-01", fit_run="never-ran")
    assert isinstance(project_error(failed.value), DataNotFoundError)
    assert str(project_error(failed.value)) == (
        f"s3://{trained.bucket}/candidates/taxi=yellow/train=2023-01/fit=never-ran/model.json does not exist: fit run "
        "never-ran has not written its model (it failed, or has not finished); kubectl logs -l "
        "prefect.io/flow-run-id=never-ran")
    assert _versions(client) == before


def test_the_gate_moves_the_alias_only_from_the_champion_it_compared_and_is_idempotent(trained):
    """The gate re-reads @champion: a stale comparison never promotes; a retry after the move reports it."""
    from trip_duration.io.registry import Registration, apply_promotion

    client = MlflowClient()
    champion = int(client.get_model_version_by_alias("trip-duration-yellow", "champion").version)
    others = sorted(_versions(client) - {champion})
    if not others:
        kedro_run("training", train_month="2023-01", **{"training.model.n_estimators": 1})
        others = sorted(_versions(client) - {champion})
    candidate = Registration("run", "0", others[-1], "pipeline-run:gate-test", reused=False)

    def decision(compared):
        return {"promote": True, "champion_version": compared, "reason": "candidate beats the champion",
                "candidate_rmse": 1.0, "champion_rmse": 2.0}

    try:
        stale = apply_promotion(candidate, decision(champion + 100))
        assert not stale.promoted and stale.champion_version == champion
        assert f"champion moved from v{champion + 100} to v{champion} while this run was training" in stale.reason
        assert int(client.get_model_version_by_alias("trip-duration-yellow", "champion").version) == champion

        moved = apply_promotion(candidate, decision(champion))
        assert moved.promoted and moved.champion_version == candidate.version
        tags = client.get_model_version("trip-duration-yellow", str(candidate.version)).tags
        assert tags["promotion.decision"] == "promoted" and tags["promotion.compared_to"] == str(champion)

        retried = apply_promotion(candidate, decision(champion))  # e.g. the tag writes failed after the move
        assert retried.promoted and "already @champion" in retried.reason
        assert int(client.get_model_version_by_alias("trip-duration-yellow", "champion").version) == candidate.version
    finally:
        client.set_registered_model_alias("trip-duration-yellow", "champion", str(champion))


def test_inference_writes_one_key_per_batch_and_version(trained):
    kedro_run("inference", batch_month="2023-02")
    key = "predictions/taxi=yellow/year=2023/month=02/model_version=1/predictions.parquet"
    first = _keys(trained, "predictions/")
    assert list(first) == [key]
    predictions = pd.read_parquet(io.BytesIO(_s3(trained).get_object(Bucket=trained.bucket, Key=key)["Body"].read()))
    validated_rows = json.loads(_s3(trained).get_object(
        Bucket=trained.bucket, Key="reports/ingest/taxi=yellow/year=2023/month=02/rows.json")["Body"].read())["rows_out"]
    assert len(predictions) == validated_rows
    kedro_run("inference", batch_month="2023-02")  # a rerun replaces, never duplicates
    assert list(_keys(trained, "predictions/")) == [key]
    summary = json.loads(_s3(trained).get_object(
        Bucket=trained.bucket, Key="reports/inference/taxi=yellow/year=2023/month=02/model_version=1/summary.json")["Body"].read())
    assert summary["rows"] == validated_rows and summary["predictions_uri"].endswith(key)


def test_inference_on_a_date_range(trained):
    kedro_run("inference", batch_start="2023-02-01", batch_end="2023-02-08")
    key = "predictions/taxi=yellow/range=2023-02-01_2023-02-08/model_version=1/predictions.parquet"
    predictions = pd.read_parquet(io.BytesIO(_s3(trained).get_object(Bucket=trained.bucket, Key=key)["Body"].read()))
    assert predictions["pickup_datetime"].between("2023-02-01", "2023-02-08", inclusive="left").all()
    assert 0 < len(predictions) < 10_000


def test_a_batch_without_trips_writes_an_empty_valid_result_and_says_so(trained):
    """A date range with no trips in it (here: a month whose trips all fall in its first ten days)."""
    import pyarrow.compute as pc

    from trip_duration import layout
    from trip_duration.periods import Month

    table = generate_month("2023-06", rows=5_000, seed=5)
    early = table.filter(pc.less(table["tpep_pickup_datetime"], pd.Timestamp("2023-06-11")))
    buffer = io.BytesIO()
    pq.write_table(early, buffer)
    _s3(trained).put_object(Bucket=trained.bucket, Key=layout.raw_key("yellow", Month.parse("2023-06")), Body=buffer.getvalue())
    kedro_run("ingest", month="2023-06")
    kedro_run("inference", batch_start="2023-06-20", batch_end="2023-06-25")
    prefix = "taxi=yellow/range=2023-06-20_2023-06-25/model_version=1"
    body = _s3(trained).get_object(Bucket=trained.bucket, Key=f"predictions/{prefix}/predictions.parquet")["Body"]
    predictions = pd.read_parquet(io.BytesIO(body.read()))
    assert len(predictions) == 0 and {"predicted_duration", "model_version", "pickup_datetime"} <= set(predictions)
    assert str(predictions["predicted_duration"].dtype) == "float32"
    summary = json.loads(_s3(trained).get_object(
        Bucket=trained.bucket, Key=f"reports/inference/{prefix}/summary.json")["Body"].read())
    assert summary["rows"] == 0 and summary["empty"] is True and summary["model_version"] == 1
    assert "no validated trips" in summary["note"]


def test_the_model_cache_is_keyed_by_the_versions_run_not_its_number(trained, tmp_path, monkeypatch, caplog):
    """A cache that outlives its MLflow database (a new server, a restored backup) holds another "v1":
    it must never be served for this server's v1."""
    import logging
    import shutil

    from tests.conftest import reset_clients
    from trip_duration.io import registry

    client = MlflowClient()
    champion = client.get_model_version_by_alias("trip-duration-yellow", "champion")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRIP_DURATION_MODEL_CACHE_DIR", str(cache))
    reset_clients()
    stale = cache / "trip-duration-yellow"
    for name in (champion.version, f"{champion.version}-0123456789abcdef0123456789abcdef"):  # old layout, other run
        shutil.copytree(Path(__file__).parent, stale / name)  # not a model at all
        (stale / name / "MLmodel").write_text("from another MLflow database\n")
    registry._memo.clear()
    try:
        with caplog.at_level(logging.INFO, logger="trip_duration"):
            kedro_run("inference", batch_month="2023-02")
            first = caplog.text
            caplog.clear()
            registry._memo.clear()  # a new process, same disk
            kedro_run("inference", batch_month="2023-02")
    finally:
        registry._memo.clear()
        monkeypatch.undo()
        reset_clients()
    assert f"downloaded trip-duration-yellow v{champion.version} (run {champion.run_id})" in first
    assert f"using cached trip-duration-yellow v{champion.version} (run {champion.run_id})" in caplog.text
    assert (stale / f"{champion.version}-{champion.run_id}" / "MLmodel").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB filesystem (tmpfs): writes past it fail with ENOSPC, as on a full disk."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs of its own and mounting one was refused here "
                    f"({done.stderr.strip() or done.returncode}); the ENOSPC message is unit-tested on /dev/full")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_model_cache_fails_in_one_line_and_caches_nothing(trained, tiny_disk, monkeypatch):
    """The model (~1 MB) cannot fit in a 256 KiB cache: the run fails at once (not retried: a disk does not
    empty itself), with the folder, its free space and the setting to change, and no half-model is cached."""
    from tests.conftest import reset_clients
    from trip_duration.errors import DiskFullError
    from trip_duration.io import registry

    monkeypatch.setenv("TRIP_DURATION_MODEL_CACHE_DIR", str(tiny_disk))
    reset_clients()
    registry._memo.clear()
    try:
        with pytest.raises(Exception) as failed:
            kedro_run("inference", batch_month="2023-02")
    finally:
        registry._memo.clear()
        monkeypatch.undo()
        reset_clients()
    ours = failed.value
    while ours is not None and not isinstance(ours, DiskFullError):
        ours = ours.__cause__ or ours.__context__
    assert ours is not None, failed.value
    message = str(ours)
    assert f"no room for trip-duration-yellow v1 in {tiny_disk}/trip-duration-yellow: it needs " in message, message
    assert "KiB is free" in message, message
    assert "TRIP_DURATION_MODEL_CACHE_DIR" in message and "flowRun.sizeLimits.cache" in message
    assert not any(p.name != "trip-duration-yellow" for p in tiny_disk.iterdir())
    assert list((tiny_disk / "trip-duration-yellow").iterdir()) == []  # the half-downloaded staging folder is gone


@pytest.fixture
def memory_cgroup():
    """A real memory cgroup (v1 or v2) limited to 700 MiB, as a pod's memory limit is; yields a preexec_fn
    that moves a child process into it."""
    import os
    import uuid

    limit = 700 << 20
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":", 2)[1].split(",")]
    if v1:
        group, limit_file = Path("/sys/fs/cgroup/memory", v1[0].lstrip("/")), "memory.limit_in_bytes"
    else:
        group, limit_file = Path("/sys/fs/cgroup", lines[0].split(":", 2)[2].lstrip("/")), "memory.max"
    group = group / f"trip-duration-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / limit_file).write_text(str(limit))
    except OSError as err:
        pytest.skip(f"a memory limit needs a cgroup of its own and creating one was refused here ({err}); "
                    "the check itself is unit-tested in tests/unit/test_resources.py")
    try:
        yield lambda: (group / "cgroup.procs").write_text(str(os.getpid()))
    finally:
        group.rmdir()


def test_a_batch_larger_than_the_runs_memory_is_refused_in_one_line_not_oom_killed(trained, memory_cgroup):
    """`kedro run` of a 1M-trip month in a process limited to 700 MiB: scoring it peaks above the limit (an
    OOM kill says nothing: SIGKILL, exit -9), so the batch is refused before it is read, with its size,
    the limit and parts that fit; nothing is written under predictions/."""
    import os
    import subprocess

    from tests.conftest import ROOT

    put_month(trained, "2023-08", rows=1_000_000, seed=8)
    kedro_run("ingest", month="2023-08")
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "kedro"), "run", "--pipelines", "inference",
                           "--params", "batch_month=2023-08"], cwd=ROOT, env=os.environ, capture_output=True,
                          text=True, preexec_fn=memory_cgroup, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])  # our one-line error, not -9
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert "batch year=2023/month=08 holds ~9" in line and "to score" in line, line
    assert "memory limit 700.0 MiB" in line and "batch_start=2023-08-01 batch_end=2023-08-" in line, line
    assert "Traceback" not in done.stderr
    assert not _keys(trained, "predictions/taxi=yellow/year=2023/month=08/")


def test_broken_file_is_quarantined_and_raw_is_intact(trained):
    table = generate_month("2023-05", rows=500, seed=1).drop_columns(["tpep_dropoff_datetime"])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    raw_key = "raw/yellow_tripdata_2023-05.parquet"
    s3 = _s3(trained)
    s3.put_object(Bucket=trained.bucket, Key=raw_key, Body=buffer.getvalue())
    etag = s3.head_object(Bucket=trained.bucket, Key=raw_key)["ETag"]
    with pytest.raises(SchemaValidationError) as info:
        kedro_run("ingest", month="2023-05")
    assert "not a known yellow layout" in str(info.value) and "missing tpep_dropoff_datetime" in str(info.value)
    reason = json.loads(s3.get_object(Bucket=trained.bucket, Key=f"quarantine/{raw_key}.reason.json")["Body"].read())
    assert reason["ok"] is False and "missing tpep_dropoff_datetime" in reason["problems"][0]["problem"]
    assert s3.head_object(Bucket=trained.bucket, Key=f"quarantine/{raw_key}")["ContentLength"] == len(buffer.getvalue())
    assert s3.head_object(Bucket=trained.bucket, Key=raw_key)["ETag"] == etag
    assert "validated/taxi=yellow/year=2023/month=05/trips.parquet" not in _keys(trained, "validated/")
    assert _json(trained, "reports/ingest/taxi=yellow/year=2023/month=05/outcome.json")["status"] == "refused"


def _put_raw(stack, month: str, table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    _s3(stack).put_object(Bucket=stack.bucket, Key=f"raw/yellow_tripdata_{month}.parquet", Body=buffer.getvalue())
    return buffer.getvalue()


def _json(stack, key):
    return json.loads(_s3(stack).get_object(Bucket=stack.bucket, Key=key)["Body"].read())


def test_one_outcome_per_month_replaced_as_a_whole(trained):
    """A good month, then a bad file for it, then a good one again: each outcome replaces the last
    whole (outcome.json written last, old data removed), and readers follow the committed outcome."""
    from trip_duration.errors import DataNotFoundError

    month, part = "2023-07", "taxi=yellow/year=2023/month=07"
    good = generate_month(month, rows=2_000, seed=11)
    _put_raw(trained, month, good)
    kedro_run("ingest", month=month)
    outcome = _json(trained, f"reports/ingest/{part}/outcome.json")
    assert outcome["status"] == "accepted" and outcome["rows_out"] == _json(trained, f"reports/ingest/{part}/rows.json")["rows_out"]
    kedro_run("inference", batch_month=month)  # scores the committed month

    # every row of the new file breaks a rule: refused, every row kept with its reason, the old month gone
    bad = good.set_column(good.schema.get_field_index("trip_distance"), "trip_distance",
                          pa.array([0.0] * len(good), pa.float64()))
    body = _put_raw(trained, month, bad)
    with pytest.raises(SchemaValidationError, match="no row passed the row rules"):
        kedro_run("ingest", month=month)
    outcome = _json(trained, f"reports/ingest/{part}/outcome.json")
    assert outcome["status"] == "refused" and "no row passed" in outcome["reason"]
    assert _json(trained, f"reports/ingest/{part}/schema.json")["ok"] is False  # not "ok: true" beside a refusal
    assert f"validated/{part}/trips.parquet" not in _keys(trained, "validated/")
    rejected = pd.read_parquet(io.BytesIO(_s3(trained).get_object(
        Bucket=trained.bucket, Key=f"quarantine/rows/{part}.parquet")["Body"].read()))
    assert len(rejected) == len(bad) and set(rejected["rejection_reason"]) == {"non_positive_distance"}
    raw_key = f"raw/yellow_tripdata_{month}.parquet"
    assert _s3(trained).get_object(Bucket=trained.bucket, Key=f"quarantine/{raw_key}")["Body"].read() == body
    with pytest.raises(Exception, match=f"{month} was refused at ingest"):  # no stale month scored
        kedro_run("inference", batch_month=month)

    # good again: accepted, the old refusal marked superseded (kept as evidence), not left as current
    _put_raw(trained, month, good)
    kedro_run("ingest", month=month)
    assert _json(trained, f"reports/ingest/{part}/outcome.json")["status"] == "accepted"
    assert "superseded" in _json(trained, f"quarantine/{raw_key}.reason.json")
    assert _json(trained, f"reports/ingest/{part}/schema.json")["ok"] is True

    # an ingest interrupted before its commit: the month reads as not ingested, never half of one
    _s3(trained).delete_object(Bucket=trained.bucket, Key=f"reports/ingest/{part}/outcome.json")
    with pytest.raises(Exception, match="no committed ingest outcome") as info:
        kedro_run("inference", batch_month=month)
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, DataNotFoundError) for e in chain)


def test_a_registered_model_loads_where_the_project_is_not_importable(trained, tmp_path):
    """code_paths: the package the pickle refers to travels with the version (a consumer without our code)."""
    import subprocess
    import sys

    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/trip-duration-yellow/1", dst_path=str(tmp_path)))
    assert (local / "code" / "trip_duration" / "models.py").is_file()
    assert not list(local.rglob("__pycache__"))
    sample = tmp_path / "sample.parquet"
    generate_trips("2023-01", rows=40, seed=5).to_parquet(sample)
    script = (
        "import sys, importlib.util\n"
        "sys.path = [p for p in sys.path if p not in ('', '.') and not p.rstrip('/').endswith('/src')]\n"
        "assert importlib.util.find_spec('trip_duration') is None, 'the project is importable: the test proves nothing'\n"
        "import mlflow.pyfunc, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print('predictions', len(model.predict(pd.read_parquet(sys.argv[2]))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(local), str(sample)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "predictions 40" in done.stdout


def test_inference_refuses_a_version_the_training_flow_did_not_register(trained, tmp_path):
    """A version registered by hand (or one whose files changed) never gets unpickled by inference."""
    import mlflow

    from trip_duration.errors import UntrustedModelError
    from trip_duration.io import registry

    client = MlflowClient()
    champion = client.get_model_version_by_alias("trip-duration-yellow", "champion").version
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/trip-duration-yellow/{champion}",
                                                     dst_path=str(tmp_path)))
    assert client.get_model_version("trip-duration-yellow", champion).tags[registry.DIGEST_TAG] == registry.model_digest(local)
    # someone with registry access registers the same files by hand, without the training flow's tags
    with mlflow.start_run(run_name="by-hand"):
        info = mlflow.pyfunc.log_model(name="model", python_model=mlflow.pyfunc.load_model(str(local)).unwrap_python_model(),
                                       registered_model_name="trip-duration-yellow", pip_requirements=registry.model_requirements())
    by_hand = str(info.registered_model_version)
    registry._memo.clear()
    try:
        client.set_registered_model_alias("trip-duration-yellow", "champion", by_hand)
        with pytest.raises(Exception) as refused:
            kedro_run("inference", batch_month="2023-02")
        chain, err = [], refused.value
        while err is not None:  # Kedro wraps a dataset's error in DatasetError (twice)
            chain.append(err)
            err = err.__cause__ or err.__context__
        assert any(isinstance(e, UntrustedModelError) for e in chain), chain
        assert f"trip-duration-yellow v{by_hand} was not registered by the training flow" in str(refused.value)
        # tags copied by hand, files changed: the digest no longer matches
        client.set_model_version_tag("trip-duration-yellow", by_hand, registry.REGISTERED_BY_TAG, registry.REGISTERED_BY)
        client.set_model_version_tag("trip-duration-yellow", by_hand, registry.DIGEST_TAG, "0" * 64)
        registry._memo.clear()
        with pytest.raises(Exception, match=f"v{by_hand}: its files .* are not the ones the training flow registered"):
            kedro_run("inference", batch_month="2023-02")
    finally:
        client.set_registered_model_alias("trip-duration-yellow", "champion", champion)
        registry._memo.clear()
    assert not [k for k in _keys(trained, "predictions/") if f"model_version={by_hand}" in k]  # nothing scored


def test_green_taxis_have_their_own_keys_model_and_champion_and_never_gate_yellow(trained):
    """A green month (2019 layout: ehail_fee all-null, float payment_type) and the next (2025 layout:
    int32 ids, cbd_congestion_fee) through ingest, training and inference, beside yellow's."""
    client = MlflowClient()
    yellow_champion = client.get_model_version_by_alias("trip-duration-yellow", "champion").version
    put_month(trained, "2023-01", taxi="green", layout_year="2019", rows=8_000)
    put_month(trained, "2023-02", taxi="green", layout_year="2025", rows=8_000)
    for month in ("2023-01", "2023-02"):
        kedro_run("ingest", month=month, taxi="green")
    assert _json(trained, "reports/ingest/taxi=green/year=2023/month=01/schema.json")["layout"] == "green 2019"
    assert _json(trained, "reports/ingest/taxi=green/year=2023/month=02/outcome.json")["layout"] == "green 2025"
    kedro_run("training", train_month="2023-01", taxi="green")
    green = client.get_model_version_by_alias("trip-duration-green", "champion")
    assert green.version == "1" and green.tags["promotion.decision"] == "promoted"  # its first: no yellow gate
    run = client.get_run(green.run_id)
    assert run.data.tags["taxi"] == "green" and run.data.params["taxi"] == "green"
    assert run.data.metrics["model_rmse"] < run.data.metrics["baseline_rmse"]  # synthetic green months
    assert client.get_model_version_by_alias("trip-duration-yellow", "champion").version == yellow_champion
    assert "reports/promotion/taxi=green/train=2023-01/version=1.json" in _keys(trained, "reports/promotion/taxi=green/")
    kedro_run("inference", batch_month="2023-02", taxi="green")
    summary = _json(trained, "reports/inference/taxi=green/year=2023/month=02/model_version=1/summary.json")
    assert summary["taxi"] == "green" and summary["rows"] == _json(
        trained, "reports/ingest/taxi=green/year=2023/month=02/rows.json")["rows_out"]
    assert "predictions/taxi=green/year=2023/month=02/model_version=1/predictions.parquet" in _keys(trained, "predictions/")


def _kedro_cli(*args: str):
    import os
    import subprocess

    from tests.conftest import ROOT

    return subprocess.run([str(ROOT / ".venv" / "bin" / "kedro"), "run", *args], cwd=ROOT, env=os.environ,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("pipeline", "params", "message"), [
    ("ingest", "month=2023-01,taxi=purple", "taxi='purple' is not a taxi type: use one of yellow, green (e.g. taxi=yellow)"),
    ("ingest", "month=2023-3,taxi=green", "month='2023-3' is not a month: use the form YYYY-MM, e.g. month=2023-01"),
    ("training", "train_month=2023-3", "train_month='2023-3' is not a month: use the form YYYY-MM, e.g. train_month=2023-01"),
    ("training", "train_month=2023-01,taxi=purple", "taxi='purple' is not a taxi type"),
])
def test_a_bad_taxi_or_month_fails_at_once_in_one_line_naming_the_value_and_the_fix(trained, pipeline, params, message):
    done = _kedro_cli("--pipelines", pipeline, "--params", params)
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert message in line and "Traceback" not in done.stderr, line


def test_green_columns_under_a_yellow_key_are_refused_naming_the_right_key_and_parameter(trained):
    put_month(trained, "2023-09", taxi="green", rows=2_000)
    s3 = _s3(trained)
    s3.copy_object(Bucket=trained.bucket, Key="raw/yellow_tripdata_2023-09.parquet",
                   CopySource={"Bucket": trained.bucket, "Key": "raw/green_tripdata_2023-09.parquet"})
    with pytest.raises(SchemaValidationError, match=r"a green taxi file \(lpep_pickup_datetime, lpep_dropoff_datetime\) "
                       r"under the yellow key raw/yellow_tripdata_2023-09.parquet: move it to "
                       r"raw/green_tripdata_2023-09.parquet, or ingest it with taxi=green"):
        kedro_run("ingest", month="2023-09")
    assert "quarantine/raw/yellow_tripdata_2023-09.parquet" in _keys(trained, "quarantine/raw/")
    assert _json(trained, "reports/ingest/taxi=yellow/year=2023/month=09/outcome.json")["status"] == "refused"
