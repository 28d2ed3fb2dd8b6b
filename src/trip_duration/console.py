"""``trip-duration``: project commands that are not pipelines.

    trip-duration generate --month 2023-01 [--months 2] [--taxi yellow|green] [--layout 2023]
                           [--rows 100000] [--seed 42] [--out DEST]

DEST is a folder or ``s3://bucket[/prefix]``; by default ``s3://$TRIP_DURATION_BUCKET/raw``.
Files are named like TLC's: ``<taxi>_tripdata_YYYY-MM.parquet``; ``--layout`` is the year whose
columns and types the file has, 2019-2025 (trip_duration.schema.LAYOUTS: they change in 2019, 2022, 2023,
2024 and 2025).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pyarrow.parquet as pq

from trip_duration.config import get_settings
from trip_duration.errors import TripDurationError
from trip_duration.periods import Month
from trip_duration.schema import DEFAULT_LAYOUT, DEFAULT_TAXI, LAYOUTS, TAXI_TYPES, parse_taxi


def _generate(args: argparse.Namespace) -> int:
    from trip_duration.synth import generate_month

    dest = args.out or f"s3://{get_settings().require_bucket()}/raw"
    month, taxi = Month.parse(args.month, key="--month"), parse_taxi(args.taxi, key="--taxi")
    for _ in range(args.months):
        table = generate_month(month, rows=args.rows, seed=args.seed, taxi=taxi, layout=args.layout)
        name = f"{taxi}_tripdata_{month}.parquet"
        if dest.startswith("s3://"):
            from trip_duration.io import s3

            bucket, _, prefix = dest.removeprefix("s3://").partition("/")
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            s3.ensure_bucket(bucket)
            where = s3.put_bytes(bucket, f"{prefix.strip('/')}/{name}".lstrip("/"), buffer.getvalue())
        else:
            Path(dest).mkdir(parents=True, exist_ok=True)
            where = str(Path(dest) / name)
            pq.write_table(table, where)
        print(f"{taxi} {month} (synthetic, layout of {args.layout}): {table.num_rows} trips -> {where}")
        month = month.next()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trip-duration", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write synthetic TLC months (yellow or green taxis)")
    gen.add_argument("--month", required=True, help="first month, YYYY-MM")
    gen.add_argument("--months", type=int, default=1, help="how many consecutive months (default 1)")
    gen.add_argument("--taxi", default=DEFAULT_TAXI, help=f"{' or '.join(TAXI_TYPES)} (default {DEFAULT_TAXI})")
    gen.add_argument("--layout", default=DEFAULT_LAYOUT,
                     help=f"the layout TLC shipped in this year, 2019-2025 (default {DEFAULT_LAYOUT}; layouts change "
                          f"in {', '.join(LAYOUTS['yellow'])})")
    gen.add_argument("--rows", type=int, default=100_000, help="trips per month (default 100000)")
    gen.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    gen.add_argument("--out", help="folder or s3://bucket/prefix (default s3://$TRIP_DURATION_BUCKET/raw)")
    args = parser.parse_args(argv)
    try:
        return _generate(args)
    except TripDurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
