"""Which failures are worth a retry: network and server hiccups, never bad data, bad config or a timeout of ours.

One policy, on named exception types (no message matching):

- transient: connection refused/reset/closed, a socket or HTTP timeout *of a request*, an S3 5xx or
  throttling code, an MLflow call whose HTTP request failed with one of those, and any exception
  explicitly raised ``from`` one of those;
- never transient: our own time limits (Prefect's task or flow run timeout, which subclass
  ``TimeoutError``: a 4-hour training that hit its limit must not run four more times), and an
  exception merely raised *while handling* a transient one (its ``__context__``): that is a bug or
  bad data on the error path, and retrying hides it.
"""

from __future__ import annotations

import socket

import requests
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # includes ConnectionRefusedError/ResetError/AbortedError
    TimeoutError,
    socket.timeout,
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    requests.exceptions.ConnectionError,  # what MLflow's REST client fails with when the server is gone
    requests.exceptions.Timeout,
    requests.exceptions.RetryError,  # urllib3 gave up on 429/5xx answers (MLflow's retry codes)
)
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"}
_TRANSIENT_HTTP = {500, 502, 503, 504}


def _own_time_limits() -> tuple[type[BaseException], ...]:
    """Prefect's run timeouts (imported lazily: this module is also used where Prefect is not)."""
    found: list[type[BaseException]] = []
    try:
        from prefect.task_engine import TaskRunTimeoutError

        found.append(TaskRunTimeoutError)
    except ImportError:  # pragma: no cover - Prefect is locked in this project
        pass
    try:
        from prefect.flow_engine import FlowRunTimeoutError

        found.append(FlowRunTimeoutError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def _mlflow_wrapper(exc: BaseException) -> BaseException | None:
    """What MLflow's REST client wrapped: it raises MlflowException in its ``except`` block, without ``from``."""
    if type(exc).__name__ in {"MlflowException", "RestException"} and type(exc).__module__.startswith("mlflow"):
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, requests.exceptions.RequestException):
            return inner
    return None


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` is a transient I/O failure, or was explicitly raised from one."""
    own = _own_time_limits()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if own and isinstance(exc, own):
            return False
        if isinstance(exc, TRANSIENT_TYPES):
            return True
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES:
            return True
        if isinstance(exc, requests.exceptions.HTTPError) and getattr(exc.response, "status_code", None) in _TRANSIENT_HTTP:
            return True
        if type(exc).__name__ == "RestException" and getattr(exc, "json", {}).get("error_code") in {
                "TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"}:
            return True
        exc = _mlflow_wrapper(exc) or exc.__cause__
    return False
