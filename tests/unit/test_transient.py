"""The one retry policy (trip_duration.io.transient): named exception types, real errors from real clients."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from trip_duration.io.transient import is_transient


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raised(fn):
    try:
        fn()
    except BaseException as err:  # noqa: BLE001 - the test classifies it
        return err
    raise AssertionError("expected an exception")


def test_mlflow_and_s3_calls_to_a_server_that_is_gone_are_transient(monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow_err = _raised(lambda: MlflowClient(f"http://127.0.0.1:{_closed_port()}").get_registered_model("m"))
    assert type(mlflow_err).__name__ == "MlflowException" and is_transient(mlflow_err)
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{_closed_port()}", aws_access_key_id="k",
                      aws_secret_access_key="s", region_name="us-east-1",
                      config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    assert is_transient(_raised(lambda: s3.list_buckets()))


def test_bad_requests_and_bad_data_are_not_transient():
    no_key = ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
    slow = ClientError({"Error": {"Code": "SlowDown", "Message": "later"}}, "PutObject")
    assert not is_transient(no_key) and is_transient(slow)
    assert not is_transient(ValueError("PULocationID: must be an integer"))
    from mlflow.exceptions import MlflowException

    assert not is_transient(MlflowException("no such model", error_code="RESOURCE_DOES_NOT_EXIST"))
    # no message matching: a text that looks like a network error is still just a text
    assert not is_transient(MlflowException("Max retries exceeded with url: /api (a user's string)"))


def test_our_own_run_timeouts_are_never_transient_though_they_subclass_timeout_error():
    from prefect.flow_engine import FlowRunTimeoutError
    from prefect.task_engine import TaskRunTimeoutError

    assert issubclass(TaskRunTimeoutError, TimeoutError)
    assert not is_transient(TaskRunTimeoutError("Task run exceeded timeout of 14400.0 second(s)"))
    assert not is_transient(FlowRunTimeoutError("Flow run exceeded timeout"))
    assert is_transient(TimeoutError("read timed out"))


def test_only_an_explicit_cause_counts_not_an_error_raised_while_handling_one():
    def while_handling():
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError:
            raise KeyError("bug in the error path")  # noqa: B904 - the point of the test

    def wrapped():
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as err:
            raise RuntimeError("upload failed") from err

    assert not is_transient(_raised(while_handling))
    assert is_transient(_raised(wrapped))


@pytest.mark.parametrize("status", [500, 503])
def test_an_http_5xx_is_transient_and_a_4xx_is_not(status):
    import requests

    def http_error(code: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = code
        return requests.HTTPError(f"{code}", response=response)

    assert is_transient(http_error(status)) and not is_transient(http_error(403))
