"""S3 through boto3's default chain: ``AWS_ENDPOINT_URL_S3`` for MinIO/moto, IRSA or keys for auth."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from trip_duration.errors import DataNotFoundError

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def client():
    """One S3 client per process; short timeouts so an outage surfaces fast and retries can work.

    Part of the retry budget (README, "Retry budget"): a server that accepts and never answers costs
    2 attempts x 15 s a node attempt, 4 node attempts (flows/kedro_tasks.py): under 3 minutes. The
    read timeout is the wait for the next byte, not for a whole object. ``total_max_attempts`` counts
    the first attempt (botocore's ``max_attempts`` does not: 3 there made 4 attempts of 60 s)."""
    config = Config(
        connect_timeout=5,
        read_timeout=15,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("s3", config=config)


def _missing(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def get_bytes(bucket: str, key: str) -> bytes:
    try:
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if _missing(err):
            raise DataNotFoundError(f"s3://{bucket}/{key} does not exist") from err
        raise


def put(bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
    """One PutObject: the object appears whole or not at all, and replaces any older one. Returns the
    ETag S3 gave it (what a reader compares to know it reads this object, not a later one)."""
    tag = client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)["ETag"]
    logger.info("wrote s3://%s/%s (%d bytes)", bucket, key, len(body))
    return tag


def put_bytes(bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
    """:func:`put`, returning the object's URI."""
    put(bucket, key, body, content_type)
    return f"s3://{bucket}/{key}"


def etag(bucket: str, key: str) -> str | None:
    """The object's ETag, or None when there is no such object."""
    try:
        return client().head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError as err:
        if _missing(err):
            return None
        raise


def exists(bucket: str, key: str) -> bool:
    return etag(bucket, key) is not None


def get_json(bucket: str, key: str) -> Any:
    return json.loads(get_bytes(bucket, key))


def put_json(bucket: str, key: str, payload: Any) -> str:
    body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
    return put_bytes(bucket, key, body, "application/json")


def copy(bucket: str, source_key: str, target_key: str) -> str:
    """Server-side copy; the source object is left exactly as it was."""
    client().copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key})
    return f"s3://{bucket}/{target_key}"


def delete(bucket: str, key: str) -> bool:
    """Remove one object; True when it was there (S3's DeleteObject succeeds on a missing key too)."""
    there = exists(bucket, key)
    if there:
        client().delete_object(Bucket=bucket, Key=key)
        logger.info("deleted s3://%s/%s", bucket, key)
    return there


def ensure_bucket(bucket: str) -> None:
    try:
        client().head_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        client().create_bucket(Bucket=bucket)
        logger.info("created bucket %s", bucket)


def list_objects(bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
    """(key, ETag) of every object under ``prefix``, page by page."""
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"], item["ETag"].strip('"')
