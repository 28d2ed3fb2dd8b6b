"""Fetching a month from TLC (or any mirror with the same file names) into ``raw/``.

``TRIP_DURATION_SOURCE_URL`` is a pattern with ``{taxi}`` and ``{month}``
(default: TLC's CloudFront, ``.../trip-data/{taxi}_tripdata_{month}.parquet``). A month missing
from ``raw/`` is fetched once:

- streamed to a temporary file, never held twice in memory, never written to ``raw/`` until whole;
- size-checked: fewer (or more) bytes than the ``Content-Length`` is a broken transfer, and a body
  that is not a parquet file (``PAR1`` at both ends) is refused before it reaches the bucket;
- 403 and 404 mean "not published yet" (:class:`NotPublishedError`, which the scheduled runs treat as
  nothing to do); a dropped connection, a timeout or a 5xx is retried, :data:`ATTEMPTS` times in all,
  with a short backoff; anything else fails at once, naming the URL;
- then one PutObject: the raw key appears whole or not at all.
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from trip_duration.config import get_settings
from trip_duration.errors import DataNotFoundError, TripDurationError
from trip_duration.io import s3
from trip_duration.periods import Month

logger = logging.getLogger(__name__)

#: Attempts per fetch (the first included), and the wait before attempt n: BACKOFF_S * n.
ATTEMPTS = 3
BACKOFF_S = 2.0
#: Seconds without a byte before an attempt counts as failed (not the time for the whole file).
READ_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class NotPublishedError(DataNotFoundError):
    """The source answered 403/404 for the month: TLC has not published it (yet)."""


class FetchError(TripDurationError):
    """The source could not deliver the month after every attempt, or delivered something broken."""


def source_url(taxi: str, month: Month) -> str | None:
    """The month's URL under ``TRIP_DURATION_SOURCE_URL``, or None when fetching is off (empty)."""
    pattern = get_settings().source_url
    return pattern.format(taxi=taxi, month=month) if pattern else None


def published(url: str, timeout: float = 20.0) -> bool:
    """Whether the source has the file (HEAD). 403/404: not published yet. Unreachable: a warning, and no."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - configured https URL
            return True
    except urllib.error.HTTPError as err:
        if err.code in (403, 404):
            return False
        logger.warning("%s answered %s: treating the month as not published", url, err.code)
        return False
    except (urllib.error.URLError, OSError) as err:
        logger.warning("%s is unreachable (%s): treating the month as not published; set TRIP_DURATION_SOURCE_URL "
                       "to a reachable copy, or empty to use only what is in the bucket", url, err)
        return False


class _Transient(Exception):
    """One attempt failed in a way another attempt may not."""


def _download_once(url: str, target: Path) -> int:
    try:
        response = urllib.request.urlopen(url, timeout=READ_TIMEOUT_S)  # noqa: S310 - configured source URL
    except urllib.error.HTTPError as err:
        if err.code in (403, 404):
            raise NotPublishedError(f"{url} answered {err.code}: that month is not published (yet)") from err
        if err.code >= 500 or err.code == 429:
            raise _Transient(f"{url} answered {err.code}") from err
        raise FetchError(f"{url} answered {err.code} {err.reason}: check TRIP_DURATION_SOURCE_URL") from err
    except (urllib.error.URLError, OSError) as err:
        raise _Transient(f"{url}: {getattr(err, 'reason', err)}") from err
    with response:
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            with target.open("wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
        except (OSError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
            raise _Transient(f"{url}: the connection broke after {received} bytes ({err!r})") from err
    if expected is not None and int(expected) != received:
        raise _Transient(f"{url}: received {received} of {expected} bytes")
    return received


def download(url: str, folder: str | os.PathLike | None = None) -> bytes:
    """The whole object at ``url``, checked; retried on transient failures (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="tlc-", dir=folder) as tmp:
        target = Path(tmp) / "month.parquet"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                size = _download_once(url, target)
                break
            except _Transient as err:
                if attempt == ATTEMPTS:
                    raise FetchError(f"{err}; gave up after {ATTEMPTS} attempts: rerun later, or upload the file "
                                     "to raw/ yourself") from err
                logger.warning("%s (attempt %d of %d): retrying in %.0f s", err, attempt, ATTEMPTS, BACKOFF_S * attempt)
                time.sleep(BACKOFF_S * attempt)
        body = target.read_bytes()
    if size < 8 or body[:4] != b"PAR1" or body[-4:] != b"PAR1":
        raise FetchError(f"{url} sent {size} bytes that are not a parquet file (no PAR1 magic at both ends): "
                         "check TRIP_DURATION_SOURCE_URL points at TLC's parquet files")
    return body


def fetch_month(taxi: str, month: Month, bucket: str, key: str) -> bytes:
    """Download the month and put it under ``key`` in one PutObject; returns its bytes."""
    url = source_url(taxi, month)
    if not url:
        raise DataNotFoundError(
            f"s3://{bucket}/{key} does not exist and TRIP_DURATION_SOURCE_URL is empty: upload the month, "
            f"or generate one with `trip-duration generate --taxi {taxi} --month {month}`")
    logger.info("%s is not in the bucket yet: fetching %s", key, url)
    body = download(url)
    s3.put_bytes(bucket, key, body)
    return body
