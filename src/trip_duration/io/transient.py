"""Which failures are worth a retry: network and server hiccups, never bad data or bad config."""

from __future__ import annotations

import socket

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ClientError

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,  # includes ConnectionRefusedError/ResetError
    TimeoutError,
    socket.timeout,
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)
_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"}


def is_transient(exc: BaseException | None) -> bool:
    """True when the exception, or any exception it was raised from, is a transient I/O failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TRANSIENT_TYPES):
            return True
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES:
            return True
        name = type(exc).__name__
        if name in {"MlflowException", "RestException"} and "Max retries exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
