"""Project pipelines: ``ingest`` (one month), ``training`` (months M, M+1), ``inference`` (a batch)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from trip_duration.pipelines import inference, ingest, training


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "ingest": ingest.create_pipeline(),
        "training": training.create_pipeline(),
        "inference": inference.create_pipeline(),
    }
    pipelines["__default__"] = pipelines["training"]
    return pipelines
