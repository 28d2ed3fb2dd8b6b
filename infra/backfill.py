"""`make backfill FROM=YYYY-MM TO=YYYY-MM [TAXI=green]`: one run of the `inference/backfill` deployment per month.

The daily `infer` deployment cancels a run that collides with an active one (CANCEL_NEW, so
scheduled runs never pile up); a backfill through it would be cancelled silently. The `backfill`
deployment has its own limit with ENQUEUE: its runs wait for each other and for nothing else.
"""

from __future__ import annotations

import argparse
import sys

from flows import kedro_tasks  # noqa: F401 - puts src/ on the path
from trip_duration.errors import ConfigError
from trip_duration.periods import Month
from trip_duration.schema import DEFAULT_TAXI, parse_taxi

DEPLOYMENT = "inference/backfill"
MAX_MONTHS = 36


def months(first: str, last: str) -> list[Month]:
    start, end = Month.parse(first, key="FROM"), Month.parse(last, key="TO")
    if end < start:
        raise ConfigError(f"TO={end} is before FROM={start}: make backfill FROM={end} TO={start}")
    out = [start]
    while out[-1] < end:
        out.append(out[-1].next())
        if len(out) > MAX_MONTHS:
            raise ConfigError(f"FROM={start} TO={end} is more than {MAX_MONTHS} months: split the backfill")
    return out


def queue(batch: list[Month], reingest: bool = False, taxi: str = DEFAULT_TAXI) -> list[tuple[Month, object]]:
    """Create one flow run per month (they run one at a time, in this order); returns (month, run)."""
    from prefect.deployments import run_deployment

    parameters = {"reingest": reingest, "taxi": taxi}
    return [(month, run_deployment(DEPLOYMENT, parameters={"batch_month": str(month), **parameters},
                                   timeout=0, tags=["backfill", taxi]))
            for month in batch]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="first", required=True, help="first month, YYYY-MM")
    parser.add_argument("--to", dest="last", required=True, help="last month, YYYY-MM (inclusive)")
    parser.add_argument("--reingest", action="store_true", help="ingest each month again first")
    parser.add_argument("--taxi", default=DEFAULT_TAXI, help="yellow or green (default yellow)")
    args = parser.parse_args(argv)
    try:
        batch, taxi = months(args.first, args.last), parse_taxi(args.taxi, key="TAXI")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for month, run in queue(batch, args.reingest, taxi):
        print(f"{month}: flow run {run.name} ({run.id}) queued on {DEPLOYMENT}")
    print(f"follow them with: prefect flow-run ls --flow-name inference --limit {len(batch)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
