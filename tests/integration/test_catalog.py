"""The catalog's kedro-datasets entries (pandas.ParquetDataset, json.JSONDataset over s3fs) on a real moto
S3 server over HTTP: they read what ingest committed and nothing else, in a run a write into validated/
through them is refused, and their failures are classified as transient or not like every other S3 call.

Nothing here trains or registers a model (the MLflow server is shared with test_ml_pipelines)."""

from __future__ import annotations

import io
import json
import time

import boto3
import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner

from infra.local.stack import free_port
from tests.conftest import ROOT, kedro_run, put_month
from tests.faults import FlakyS3Proxy
from trip_duration.errors import ConfigError, DataNotFoundError
from trip_duration.io.transient import is_transient

pytestmark = pytest.mark.integration

TRAIN, VALID = "2024-01", "2024-02"  # months no other test module ingests
PART = "taxi=yellow/year=2024/month=01"


def _s3(stack):
    return boto3.client("s3", endpoint_url=stack.s3_url)


def _get(stack, key) -> bytes:
    return _s3(stack).get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def _put(stack, key, body: bytes) -> None:
    _s3(stack).put_object(Bucket=stack.bucket, Key=key, Body=body)


@pytest.fixture(scope="module")
def ingested(ml_stack):
    for seed, month in enumerate((TRAIN, VALID)):
        put_month(ml_stack, month, rows=4_000, seed=30 + seed)
        kedro_run("ingest", month=month)
    return ml_stack


def _session(**params):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(ROOT)
    return KedroSession.create(project_path=ROOT, runtime_params=params)


def _run(nodes, **params) -> None:
    """Run ``nodes`` as Kedro runs a pipeline: the project's catalog and hooks (CommittedReadsHooks)."""
    with _session(**params) as session:
        catalog = session.load_context().catalog
        SequentialRunner().run(Pipeline(nodes), catalog, session._hook_manager)  # noqa: SLF001


def _read(dataset: str, **params) -> pd.DataFrame:
    """What a node gets when it takes ``dataset`` as input."""
    got = []
    _run([node(got.append, dataset, None, name="read")], **params)
    return got[0]


def _causes(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _raised(info, kind) -> BaseException:
    found = [e for e in _causes(info.value) if isinstance(e, kind)]
    assert found, f"no {kind.__name__} in {info.value!r}"
    return found[0]


def test_the_training_inputs_are_kedro_datasets_parquet_at_the_months_validated_key(ingested):
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.pandas import ParquetDataset

    with _session(train_month=TRAIN, taxi="yellow") as session:
        catalog = session.load_context().catalog
        paths = {name: catalog.config_resolver.resolve_pattern(name)["filepath"]
                 for name in ("train_trips", "valid_trips", f"validated_yellow_{TRAIN}",
                              f"ingest_report_yellow_{TRAIN}_outcome", f"rejected_rows_yellow_{TRAIN}")}
        kinds = {name: type(catalog.get(name)) for name in paths}
    bucket = ingested.bucket
    assert paths == {
        "train_trips": f"s3://{bucket}/validated/{PART}/trips.parquet",
        "valid_trips": f"s3://{bucket}/validated/taxi=yellow/year=2024/month=02/trips.parquet",
        f"validated_yellow_{TRAIN}": f"s3://{bucket}/validated/{PART}/trips.parquet",
        f"ingest_report_yellow_{TRAIN}_outcome": f"s3://{bucket}/reports/ingest/{PART}/outcome.json",
        f"rejected_rows_yellow_{TRAIN}": f"s3://{bucket}/quarantine/rows/{PART}.parquet",
    }
    assert kinds[f"ingest_report_yellow_{TRAIN}_outcome"] is JSONDataset
    assert {kinds[n] for n in paths if not n.startswith("ingest_report")} == {ParquetDataset}


def test_the_factories_read_what_ingest_committed(ingested):
    """Any month of any type by name: the validated trips, the ingest reports, the rejected rows."""
    with _session() as session:
        catalog = session.load_context().catalog
        validated = catalog.load(f"validated_yellow_{TRAIN}")
        outcome = catalog.load(f"ingest_report_yellow_{TRAIN}_outcome")
        rows = catalog.load(f"ingest_report_yellow_{TRAIN}_rows")
        rejected = catalog.load(f"rejected_rows_yellow_{TRAIN}")
    assert validated.equals(pd.read_parquet(io.BytesIO(_get(ingested, f"validated/{PART}/trips.parquet"))))
    assert outcome == json.loads(_get(ingested, f"reports/ingest/{PART}/outcome.json"))
    assert outcome["status"] == "accepted" and len(validated) == outcome["rows_out"] == rows["rows_out"]
    assert len(rejected) == rows["rows_rejected"] > 0 and rejected["rejection_reason"].notna().all()


def test_a_run_reads_a_month_only_as_its_ingest_committed_it(ingested):
    """train_trips in a run: read when committed; refused, naming the fix, when the object is not the one
    the outcome committed or there is no committed outcome; an outcome from before ETags were recorded
    is checked by its SHA-256 instead."""
    key, outcome_key = f"validated/{PART}/trips.parquet", f"reports/ingest/{PART}/outcome.json"
    committed, outcome = _get(ingested, key), _get(ingested, outcome_key)
    assert len(_read("train_trips", train_month=TRAIN)) == json.loads(outcome)["rows_out"]
    try:
        # another object under the key (an ingest running, or one interrupted before its commit)
        other = pd.read_parquet(io.BytesIO(committed)).head(10)
        buffer = io.BytesIO()
        other.to_parquet(buffer, index=False)
        _put(ingested, key, buffer.getvalue())
        with pytest.raises(Exception) as info:
            _read("train_trips", train_month=TRAIN)
        assert "is not the one" in str(_raised(info, DataNotFoundError)) and "ingest the month again" in str(info.value)

        # an outcome without validated_etag: the SHA-256 decides (the wrong object still refused)
        legacy = {k: v for k, v in json.loads(outcome).items() if k != "validated_etag"}
        _put(ingested, outcome_key, json.dumps(legacy).encode())
        with pytest.raises(Exception) as info:
            _read("train_trips", train_month=TRAIN)
        _raised(info, DataNotFoundError)
        _put(ingested, key, committed)
        assert len(_read("train_trips", train_month=TRAIN)) == legacy["rows_out"]

        # no committed outcome (an ingest interrupted before writing it last)
        _s3(ingested).delete_object(Bucket=ingested.bucket, Key=outcome_key)
        with pytest.raises(Exception) as info:
            _read("train_trips", train_month=TRAIN)
        message = str(_raised(info, DataNotFoundError))
        assert "no committed ingest outcome" in message and f"month={TRAIN},taxi=yellow" in message
    finally:
        _put(ingested, key, committed)
        _put(ingested, outcome_key, outcome)
    assert len(_read(f"validated_yellow_{VALID}")) > 0  # a factory's month in a run: checked the same way


def test_a_month_parameter_not_set_fails_in_one_line_naming_it(ingested):
    with pytest.raises(Exception) as info:
        _read("train_trips")
    assert "parameter train_month is not set: set train_month=YYYY-MM" in str(_raised(info, ConfigError))
    with pytest.raises(Exception) as info:
        _read("valid_trips", valid_month="2024-13")
    assert "2024-13" in str(_raised(info, ConfigError))


def test_a_month_replaced_while_it_is_read_fails_the_read(ingested):
    """Between the check and s3fs's open: check_unchanged sees the new ETag. After s3fs's open: s3fs reads
    every range with If-Match on the ETag it opened, so the new object is never mixed into the read."""
    import s3fs

    from trip_duration.io.datasets import check_committed, check_unchanged
    from trip_duration.periods import Month

    key = f"validated/{PART}/trips.parquet"
    committed = _get(ingested, key)
    try:
        expected = check_committed(ingested.bucket, "yellow", Month.parse(TRAIN))
        _put(ingested, key, committed + b"\0")  # replaced by another ingest meanwhile
        with pytest.raises(DataNotFoundError, match="is not the one"):
            check_unchanged(ingested.bucket, "yellow", Month.parse(TRAIN), expected)

        _put(ingested, key, committed)
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        with fs.open(f"{ingested.bucket}/{key}", "rb", block_size=1024, cache_type="none") as handle:
            handle.read(100)
            _put(ingested, key, committed[::-1])
            with pytest.raises(OSError):  # s3fs's FileExpired: the object changed under the open file
                handle.read(100)
    finally:
        _put(ingested, key, committed)


def test_a_write_into_validated_through_the_catalog_is_refused_in_a_run(ingested):
    key = f"validated/{PART}/trips.parquet"
    committed = _get(ingested, key)
    with pytest.raises(DatasetError, match="written by the ingest pipeline only"):
        _run([node(lambda: pd.DataFrame({"x": [1]}), None, f"validated_yellow_{TRAIN}", name="write")])
    assert _get(ingested, key) == committed


@pytest.fixture
def proxied(ingested, monkeypatch):
    """s3fs (created after this) reaches S3 through a proxy that can cut it off; boto3 goes direct."""
    proxy = FlakyS3Proxy(upstream_port=ingested.s3_port, port=free_port()).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
    yield proxy
    proxy.end_outage()
    proxy.stop()


def test_s3_going_away_during_a_read_is_a_transient_error_and_the_retry_reads_it(ingested, proxied):
    with _session() as session:
        catalog = session.load_context().catalog
        proxied.arm(f"/{ingested.bucket}/validated/".encode())
        with pytest.raises(DatasetError) as info:
            catalog.load(f"validated_yellow_{TRAIN}")
        assert proxied.triggered.is_set(), "the outage never happened"
        assert is_transient(info.value), repr(info.value)
        assert proxied.restored.wait(30)
        assert len(catalog.load(f"validated_yellow_{TRAIN}")) > 0


def test_an_s3_that_never_answers_a_read_gives_up_within_the_budget_as_a_transient_error(ingested, proxied):
    """s3fs's own retries (2 attempts, settings.py; one botocore attempt each, 15 s read timeout), then the node's."""
    proxied.down_seconds = 400
    with _session() as session:
        catalog = session.load_context().catalog
        proxied.arm(f"/{ingested.bucket}/validated/".encode(), hang=True)
        started = time.monotonic()
        with pytest.raises(DatasetError) as info:
            catalog.load(f"validated_yellow_{TRAIN}")
        waited = time.monotonic() - started
    print(f"hanging S3: an s3fs read gave up after {waited:.1f} s")
    assert is_transient(info.value), repr(info.value)
    assert waited < 60, waited  # a bound on the behaviour (2 x 15 s; s3fs's default 5 took 77 s), not a speed figure


def test_why_our_writers_stay_ours_an_s3fs_file_commits_what_it_has_when_a_write_fails(ingested):
    """kedro-datasets' ParquetDataset.save writes into ``fs.open(path, "wb")``: fsspec's file commits on
    ``__exit__`` even when the body raised, so a write that fails half-way leaves half an object visible.
    Our writers serialise first and send one PutObject (whole or absent): this is the evidence."""
    import s3fs

    key = "scratch/half-written.parquet"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    with pytest.raises(RuntimeError), fs.open(f"{ingested.bucket}/{key}", "wb") as handle:
        handle.write(b"PAR1 and the first row groups")
        raise RuntimeError("the write failed half-way (a timeout, a killed task, a bug)")
    assert _get(ingested, key) == b"PAR1 and the first row groups"
    _s3(ingested).delete_object(Bucket=ingested.bucket, Key=key)
