"""TLC trip record layouts, yellow and green, as TLC has published them 2019-2025.

Sources: TLC's data dictionaries (``data_dictionary_trip_records_yellow.pdf``, ``..._green.pdf``) and
the parquet files TLC shipped since it moved to parquet in May 2022 (every year re-exported then).
What changes between years, per :data:`LAYOUTS`:

- ids (``VendorID``, ``PULocationID``, ``DOLocationID``): int64, int32 from 2024;
- ``passenger_count`` / ``RatecodeID``: float (with nulls) until 2023, int64 from 2024;
- ``airport_fee`` (yellow): an all-null column until 2021, float after, spelled ``Airport_fee`` from 2023;
- ``ehail_fee`` (green): an all-null column (Arrow ``null``) or an all-null float;
- ``payment_type`` / ``trip_type`` (green): float;
- timestamps: microseconds, nanoseconds in the 2022 re-export;
- ``cbd_congestion_fee`` (both): new in 2025 (Manhattan congestion relief zone toll).

Ingest recognises a layout by its column names, checks each column's kind, and renames the columns
every layout has under different names to one vocabulary (:data:`PICKUP`, :data:`DROPOFF`,
``airport_fee``), so ``validated/`` has one schema whatever the type and the year. ``raw/`` keeps
TLC's file as published.
"""

from __future__ import annotations

import pyarrow as pa

from trip_duration.errors import ConfigError

#: The taxi types this project understands; TLC's file names start with them.
TAXI_TYPES = ("yellow", "green")
DEFAULT_TAXI = "yellow"

#: Validated (and predictions) column names of the trip's times, whatever the type.
PICKUP = "pickup_datetime"
DROPOFF = "dropoff_datetime"

#: TLC's own names of the trip's times: yellow (TPEP) and green (LPEP) meters.
RAW_TIMES = {
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime"),
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime"),
}


def parse_taxi(value: str | None, *, key: str = "taxi") -> str:
    """``yellow`` or ``green``; anything else is a ConfigError naming the value and the choices."""
    taxi = str(value).strip().lower() if value not in (None, "", "null") else None
    if taxi not in TAXI_TYPES:
        raise ConfigError(
            f"{key}={value!r} is not a taxi type: use one of {', '.join(TAXI_TYPES)} (e.g. {key}={DEFAULT_TAXI}); "
            "TLC's files are named <type>_tripdata_YYYY-MM.parquet")
    return taxi


_TS_US, _TS_NS = pa.timestamp("us"), pa.timestamp("ns")
_I64, _I32, _F64, _STR = pa.int64(), pa.int32(), pa.float64(), pa.string()
_FARES = ["fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount"]


def _yellow(ids=_I64, counts=_F64, ts=_TS_US, airport=("airport_fee", _F64), cbd=False) -> pa.Schema:
    pickup, dropoff = RAW_TIMES["yellow"]
    fields = [("VendorID", ids), (pickup, ts), (dropoff, ts), ("passenger_count", counts),
              ("trip_distance", _F64), ("RatecodeID", counts), ("store_and_fwd_flag", _STR),
              ("PULocationID", ids), ("DOLocationID", ids), ("payment_type", _I64),
              *[(name, _F64) for name in _FARES], ("improvement_surcharge", _F64), ("total_amount", _F64),
              ("congestion_surcharge", _F64), airport]
    return pa.schema(fields + ([("cbd_congestion_fee", _F64)] if cbd else []))


def _green(ids=_I64, counts=_F64, ts=_TS_US, ehail=_F64, cbd=False) -> pa.Schema:
    pickup, dropoff = RAW_TIMES["green"]
    fields = [("VendorID", ids), (pickup, ts), (dropoff, ts), ("store_and_fwd_flag", _STR),
              ("RatecodeID", counts), ("PULocationID", ids), ("DOLocationID", ids), ("passenger_count", counts),
              ("trip_distance", _F64), *[(name, _F64) for name in _FARES], ("ehail_fee", ehail),
              ("improvement_surcharge", _F64), ("total_amount", _F64), ("payment_type", _F64),
              ("trip_type", _F64), ("congestion_surcharge", _F64)]
    return pa.schema(fields + ([("cbd_congestion_fee", _F64)] if cbd else []))


#: Every layout TLC has published, by type and the year it started, as the generator writes it.
LAYOUTS: dict[str, dict[str, pa.Schema]] = {
    "yellow": {
        "2019": _yellow(airport=("airport_fee", pa.null())),
        "2022": _yellow(ts=_TS_NS),
        "2023": _yellow(airport=("Airport_fee", _F64)),
        "2024": _yellow(ids=_I32, counts=_I64, airport=("Airport_fee", _F64)),
        "2025": _yellow(ids=_I32, counts=_I64, airport=("Airport_fee", _F64), cbd=True),
    },
    "green": {
        "2019": _green(ehail=pa.null()),
        "2022": _green(ts=_TS_NS),
        "2023": _green(),
        "2024": _green(ids=_I32, counts=_I64),
        "2025": _green(ids=_I32, counts=_I64, cbd=True),
    },
}
DEFAULT_LAYOUT = "2023"

#: Columns with several spellings across layouts -> the name validated/ uses.
RENAMES = {
    **{raw: ours for pair in RAW_TIMES.values() for raw, ours in zip(pair, (PICKUP, DROPOFF), strict=True)},
    "Airport_fee": "airport_fee",
}

#: Kinds a column may have once renamed: "timestamp", "integer", "number" (int or float), "string".
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
    "payment_type": "number",
    **dict.fromkeys(_FARES, "number"),
    "ehail_fee": "number",
    "improvement_surcharge": "number",
    "total_amount": "number",
    "trip_type": "number",
    "congestion_surcharge": "number",
    "airport_fee": "number",
    "cbd_congestion_fee": "number",
}

#: The documented type of each (renamed) column: an all-null column (Arrow ``null``) gets it.
COLUMN_TYPES: dict[str, pa.DataType] = {
    RENAMES.get(field.name, field.name): field.type
    for layouts in LAYOUTS.values() for field in layouts[DEFAULT_LAYOUT]
} | {"cbd_congestion_fee": _F64}

#: Columns the model and the filters need (renamed): a file without them is rejected whole.
FEATURE_COLUMNS = (PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance")


def resolve_layout(taxi: str, year: str | int) -> str:
    """The layout TLC shipped in ``year`` (2019-2025): the newest one that started by then (2021 -> "2019")."""
    known = sorted(LAYOUTS[taxi])
    try:
        wanted = int(str(year))
    except ValueError:
        wanted = 0
    if not int(known[0]) <= wanted <= 2025:
        raise ConfigError(f"layout={year!r} is not a year TLC published {taxi} parquet files in: use one of "
                          f"{known[0]}..2025 (layouts change in {', '.join(known)})")
    return max(layout for layout in known if int(layout) <= wanted)


def column_names(taxi: str, layout: str) -> set[str]:
    return set(LAYOUTS[taxi][layout].names)


def taxi_of_columns(names: list[str]) -> str | None:
    """The type whose timestamp columns a file has, or None."""
    for taxi, (pickup, _) in RAW_TIMES.items():
        if pickup in names:
            return taxi
    return None


def match_layout(taxi: str, schema: pa.Schema) -> tuple[str | None, str | None]:
    """(the known layout of ``taxi`` with exactly these column names, the one with the same types too
    where several have these names; or None and why not, naming the columns that differ from the
    nearest known layout). Types are judged column by column afterwards, by kind."""
    have = set(schema.names)
    named = [layout for layout in LAYOUTS[taxi] if column_names(taxi, layout) == have]
    if named:
        exact = [layout for layout in named if {f.name: f.type for f in LAYOUTS[taxi][layout]} ==
                 {f.name: f.type for f in schema}]
        return (exact or named)[0], None
    nearest = min(LAYOUTS[taxi], key=lambda layout: len(column_names(taxi, layout) ^ have))
    expected = column_names(taxi, nearest)
    missing, unexpected = sorted(expected - have), sorted(have - expected)
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
    return None, (f"not a known {taxi} layout ({', '.join(LAYOUTS[taxi])}): against the nearest, {taxi} {nearest}, "
                  f"{'; '.join(parts)}")


class RawFile:
    """A raw object as read from the bucket: its key, its taxi type and its untouched bytes."""

    __slots__ = ("key", "uri", "body", "taxi")

    def __init__(self, key: str, uri: str, body: bytes, taxi: str = DEFAULT_TAXI):
        self.key, self.uri, self.body, self.taxi = key, uri, body, taxi

    def __repr__(self) -> str:
        return f"RawFile({self.uri!r}, {self.taxi}, {len(self.body)} bytes)"
