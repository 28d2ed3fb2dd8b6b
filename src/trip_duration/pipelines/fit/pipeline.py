"""Fit: the one step of training that uses a GPU, XGBoost on month M, as its own pipeline so that it can run
in its own pod (the ``fit`` deployment, on the gpu queue). Its model goes to ``fitted_model`` in S3, where
the ``evaluation`` pipeline of the training run reads it (README, "Only the fit on the GPU")."""

from kedro.pipeline import Pipeline, pipeline

from trip_duration.pipelines.training.pipeline import create_pipeline as training_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    # training's own train_model node (same function, inputs and name), its output renamed
    return pipeline(training_pipeline().only_nodes("train_model"), outputs={"candidate_model": "fitted_model"})
