"""Evaluation: training without its fit. The course baseline, the comparison on month M+1, the champion's
score, registration and the gate, with the XGBoost model read from ``fitted_model`` (what the ``fit``
pipeline wrote in its own pod). ``fit`` + ``evaluation`` = ``training`` node for node."""

from kedro.pipeline import Pipeline, pipeline

from trip_duration.pipelines.training.pipeline import create_pipeline as training_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    full = training_pipeline()
    return pipeline(full - full.only_nodes("train_model"), inputs={"candidate_model": "fitted_model"})
