"""``trip-duration``: project commands that are not pipelines.

    trip-duration generate --month 2023-01 [--months 2] [--taxi yellow|green] [--layout 2023]
                           [--rows 100000] [--seed 42] [--out DEST]

    trip-duration logs <flow-run-id> [--deployment FLOW/DEPLOYMENT]

``logs`` prints what a flow-run pod printed, from ``s3://$TRIP_DURATION_BUCKET/logs/<flow>/<deployment>/
<flow-run-id>.log`` (the chart's pod-log sidecar writes it; it outlives the Job and its pods).

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


def _logs(args: argparse.Namespace) -> int:
    import uuid

    from trip_duration.errors import ConfigError, DataNotFoundError
    from trip_duration.io import s3

    try:
        run_id = str(uuid.UUID(args.flow_run_id))
    except ValueError:
        raise ConfigError(f"flow-run id {args.flow_run_id!r} is not a UUID: copy it from the UI, "
                          "`prefect flow-run ls` or the pod's prefect.io/flow-run-id label") from None
    bucket = get_settings().require_bucket()
    if args.deployment:
        flow, _, deployment = args.deployment.partition("/")
        if not flow or not deployment:
            raise ConfigError(f"--deployment {args.deployment!r} is not FLOW/DEPLOYMENT (e.g. training/train)")
        keys = [f"logs/{flow}/{deployment}/{run_id}.log"]
    else:
        pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="logs/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(f"/{run_id}.log")]
    for key in keys:
        if s3.exists(bucket, key):
            sys.stdout.buffer.write(s3.get_bytes(bucket, key))
            sys.stdout.flush()
            return 0
    raise DataNotFoundError(f"no log of flow run {run_id} under s3://{bucket}/logs/: its pod ran without the chart's "
                            "pod-log sidecar (flowRun.podLogs.enabled=false, or not on Kubernetes), or has not "
                            "started yet")


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
    logs = commands.add_parser("logs", help="print a flow-run pod's output, kept in S3 after the pod is gone")
    logs.add_argument("flow_run_id", help="the flow run's id (UUID)")
    logs.add_argument("--deployment", help="FLOW/DEPLOYMENT, e.g. training/train (default: search logs/)")
    args = parser.parse_args(argv)
    try:
        return _generate(args) if args.command == "generate" else _logs(args)
    except TripDurationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
