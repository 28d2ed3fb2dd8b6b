"""Project pipelines: ``ingest`` (one month), ``training`` (months M, M+1), ``inference`` (a batch), and
``training`` in two parts for two pods: ``fit`` (XGBoost, on the GPU) and ``evaluation`` (the rest).

Only the requested pipelines are imported: ``kedro run --pipelines inference`` (and our
flows, through ``pipelines.set_requested``) never import pandera or the training code.
"""

from __future__ import annotations

import pkgutil

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from trip_duration import pipelines as _pipelines_package


def pipeline_names() -> set[str]:
    """Every pipeline this project has (``__default__`` too), without importing any of them."""
    return {module.name for module in pkgutil.iter_modules(_pipelines_package.__path__) if module.ispkg} | {
        "__default__"
    }


def register_pipelines() -> dict[str, Pipeline]:
    found = find_pipelines(raise_errors=True)  # honours Kedro's requested-pipelines filter
    if "training" in found:
        found["__default__"] = found["training"]
    return found
