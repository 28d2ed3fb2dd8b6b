"""The TLC yellow-taxi trip record schema (data dictionary, 2023 parquet files).

The synthetic generator writes exactly this schema; validation accepts the variations
TLC itself has published (int32 vs int64 ids since 2024, timestamp units).
"""

from __future__ import annotations

import pyarrow as pa

PICKUP = "tpep_pickup_datetime"
DROPOFF = "tpep_dropoff_datetime"

#: Column order and types of a 2023 TLC yellow trip parquet file.
TLC_YELLOW_SCHEMA = pa.schema(
    [
        ("VendorID", pa.int64()),
        (PICKUP, pa.timestamp("us")),
        (DROPOFF, pa.timestamp("us")),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("RatecodeID", pa.float64()),
        ("store_and_fwd_flag", pa.string()),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("payment_type", pa.int64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("congestion_surcharge", pa.float64()),
        ("airport_fee", pa.float64()),
    ]
)

#: Kinds a column may have: "timestamp", "integer", "float", "number", "string".
COLUMN_KINDS: dict[str, str] = {
    "VendorID": "integer",
    PICKUP: "timestamp",
    DROPOFF: "timestamp",
    "passenger_count": "number",
    "trip_distance": "number",
    "RatecodeID": "number",
    "store_and_fwd_flag": "string",
    "PULocationID": "integer",
    "DOLocationID": "integer",
    "payment_type": "integer",
    "fare_amount": "number",
    "extra": "number",
    "mta_tax": "number",
    "tip_amount": "number",
    "tolls_amount": "number",
    "improvement_surcharge": "number",
    "total_amount": "number",
    "congestion_surcharge": "number",
    "airport_fee": "number",
}

#: Columns the model and the filters need: a file without them is rejected whole.
FEATURE_COLUMNS = (PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance")


class RawFile:
    """A raw object as read from the bucket: its key and its untouched bytes."""

    __slots__ = ("key", "uri", "body")

    def __init__(self, key: str, uri: str, body: bytes):
        self.key, self.uri, self.body = key, uri, body

    def __repr__(self) -> str:
        return f"RawFile({self.uri!r}, {len(self.body)} bytes)"
