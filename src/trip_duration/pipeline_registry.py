"""Project pipelines: ``ingest`` (one month), ``training`` (months M, M+1), ``inference`` (a batch).

Only the requested pipelines are imported: ``kedro run --pipeline inference`` (and our
flows, through ``pipelines.set_requested``) never import pandera or the training code.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    found = find_pipelines(raise_errors=True)  # honours Kedro's requested-pipelines filter
    if "training" in found:
        found["__default__"] = found["training"]
    return found
