"""New raw months (flows/arrivals.py; README, "New months train themselves"), with S3 replaced."""

from __future__ import annotations

import pytest
import yaml

import flows.arrivals as arrivals
from infra.deployments import PREFECT_YAML, SCHEDULED, TRIGGERED
from trip_duration.periods import Month

RAW = [
    ("raw/yellow_tripdata_2024-12.parquet", "e1"),   # ingested (its outcome is listed)
    ("raw/yellow_tripdata_2025-01.parquet", "e2"),   # new
    ("raw/green_tripdata_2025-01.parquet", "e3"),    # new, the other type
    ("raw/fhv_tripdata_2025-01.parquet", "e4"),      # not ours
    ("raw/yellow_tripdata_2025-01.parquet.tmp", "e5"),
    ("raw/notes.txt", "e6"),
    ("raw/yellow_tripdata_2023-06.parquet", "e7"),   # new, but older than `since` below
]
REPORTS = [
    ("reports/ingest/taxi=yellow/year=2024/month=12/outcome.json", "x"),
    ("reports/ingest/taxi=yellow/year=2024/month=12/rows.json", "x"),
    ("reports/ingest/taxi=green/year=2023/month=06/outcome.json", "x"),  # green, not yellow's 2023-06
]


@pytest.fixture
def listed(monkeypatch):
    calls = []

    def list_objects(bucket, prefix):
        calls.append(prefix)
        return iter({"raw/": RAW, "reports/ingest/": REPORTS}[prefix])

    monkeypatch.setattr(arrivals.s3, "list_objects", list_objects)
    return calls


def test_an_arrival_is_a_tlc_month_file_without_an_ingest_outcome(listed):
    found = arrivals.raw_arrivals("b")
    assert [(a["taxi"], a["month"], a["etag"]) for a in found] == [
        ("yellow", "2023-06", "e7"), ("green", "2025-01", "e3"), ("yellow", "2025-01", "e2")]
    assert sorted(listed) == ["raw/", "reports/ingest/"]  # two listings, no request per month
    assert [a["month"] for a in arrivals.raw_arrivals("b", since=Month.parse("2024-01"))] == ["2025-01", "2025-01"]


def test_an_arrivals_id_is_its_key_and_etag(listed):
    (first, *_) = arrivals.raw_arrivals("b", since=Month.parse("2025-01"))
    event = arrivals.arrival_event(first)
    assert event["id"] == arrivals.arrival_event(dict(first))["id"]  # found again by the next poll: the same event
    assert event["id"] != arrivals.arrival_event({**first, "etag": "replaced"})["id"]
    assert event["resource"]["trip-duration.taxi"] == first["taxi"] and event["payload"]["month"] == "2025-01"


@pytest.mark.parametrize(
    ("has_data", "newest", "pair"),
    [
        ({"2025-02"}, None, ("2025-01", "2025-02")),          # the month after: the month trains
        ({"2024-12"}, None, ("2024-12", "2025-01")),          # else the month before trains, validated on it
        ({"2024-12", "2025-02"}, None, ("2025-01", "2025-02")),
        (set(), None, None),                                   # alone: nothing to train yet
        ({"2024-12"}, "2024-12", None),                        # a model was trained on 2024-12 already
        ({"2024-12"}, "2025-03", None),                        # or on a newer month: an older model is no use
        ({"2024-12"}, "2024-11", ("2024-12", "2025-01")),
    ],
)
def test_the_pair_a_month_completes(monkeypatch, has_data, newest, pair):
    monkeypatch.setattr(arrivals, "in_bucket", lambda bucket, month, taxi: "raw" if str(month) in has_data else None)
    monkeypatch.setattr(arrivals, "newest_trained", lambda bucket, taxi: newest and Month.parse(newest))
    got = arrivals.trainable_pair("b", "yellow", Month.parse("2025-01"))
    assert (got and tuple(map(str, got))) == pair


def test_a_trainable_pairs_id_is_derived_from_taxi_and_months():
    one = arrivals.trainable_event("yellow", Month.parse("2025-01"), Month.parse("2025-02"), Month.parse("2025-02"))
    again = arrivals.trainable_event("yellow", Month.parse("2025-01"), Month.parse("2025-02"), Month.parse("2025-01"))
    assert one["id"] == again["id"]  # whichever month completed it, one pair is one event
    assert one["id"] != arrivals.trainable_event("green", Month.parse("2025-01"), Month.parse("2025-02"),
                                                 Month.parse("2025-02"))["id"]
    assert one["payload"] == {"taxi": "yellow", "train_month": "2025-01", "valid_month": "2025-02", "ingested": "2025-02"}


def _deployments():
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_the_scheduled_and_triggered_lists_are_prefect_yamls():
    deployments = _deployments()
    flows = {"training.py": "training", "inference.py": "inference", "arrivals.py:watch_raw": "arrivals",
             "arrivals.py:ingest_month": "ingest", "fit.py": "training-fit"}

    def full(d):
        entry = d["entrypoint"].split("/")[-1]
        return f"{next(v for k, v in flows.items() if entry.startswith(k))}/{d['name']}"

    assert set(SCHEDULED) == {full(d) for d in deployments.values() if d.get("schedules")}
    assert set(TRIGGERED) == {full(d) for d in deployments.values() if d.get("triggers")}


def test_the_chain_is_wired_arrival_to_ingest_to_train():
    deployments = _deployments()
    (ingest,) = deployments["ingest"]["triggers"]
    assert ingest["expect"] == [arrivals.ARRIVED] and ingest["parameters"]["month"] == "{{ event.payload.month }}"
    for name, taxi in (("train", "yellow"), ("train-green", "green")):
        (trainable,) = [t for t in deployments[name]["triggers"] if t["expect"] == [arrivals.TRAINABLE]]
        assert trainable["match"]["trip-duration.taxi"] == taxi
        assert trainable["parameters"]["train_month"] == "{{ event.payload.train_month }}"
    assert [s["interval"] for s in deployments["watch-raw"]["schedules"]] == [3600]
