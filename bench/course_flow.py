"""Batch scoring written the course's way (seed notes): one flow of tasks, the model loaded
from the registry on every run, features via to_dict. The orchestration benchmark's baseline."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import boto3
import mlflow
import pandas as pd
from prefect import flow, task

# Deployed on a cluster, the project's bundle is unpacked beside this file: the registered model
# unpickles trip_duration's classes, so its src/ must be importable (locally it is installed).
if Path("src/trip_duration").is_dir() and str(Path("src").resolve()) not in sys.path:
    sys.path.insert(0, str(Path("src").resolve()))


@task(name="read_batch", retries=3, retry_delay_seconds=5)
def read_batch(bucket: str, month: str) -> pd.DataFrame:
    year, mon = month.split("-")
    key = f"validated/taxi=yellow/year={year}/month={mon}/trips.parquet"
    return pd.read_parquet(io.BytesIO(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))


@task(name="load_model")
def load_model():
    return mlflow.pyfunc.load_model("models:/trip-duration-yellow@champion")


@task(name="predict")
def predict(model, df: pd.DataFrame) -> pd.DataFrame:
    out = df[["pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]].copy()
    out["predicted_duration"] = model.predict(out)
    return out


@task(name="write")
def write(bucket: str, month: str, predictions: pd.DataFrame) -> str:
    buffer = io.BytesIO()
    predictions.to_parquet(buffer)
    key = f"bench/course/{month}/predictions.parquet"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return key


@flow(name="course-inference")
def course_inference(month: str = "2023-02") -> str:
    bucket = os.environ["TRIP_DURATION_BUCKET"]
    df = read_batch(bucket, month)
    model = load_model()
    return write(bucket, month, predict(model, df))
