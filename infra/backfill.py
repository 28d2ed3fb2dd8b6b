"""`make backfill FROM=YYYY-MM TO=YYYY-MM [TAXI=green] [TRAIN=1] [WATCH=1]`: a range of months, one run each.

Scoring (the default): one run of the `inference/backfill` deployment per month. The daily `infer`
deployment cancels a run that collides with an active one (CANCEL_NEW, so scheduled runs never pile
up); a backfill through it would be cancelled silently. The `backfill` deployment has its own limit
with ENQUEUE: its runs wait for each other and for nothing else.

Training (``--train``): one run of `training/train` (or `training/train-green`) per month, each
trained on that month and validated on the next. Train's limit (1, ENQUEUE) runs them one at a time
and each one's XGBoost fit is a run of `fit` on the gpu queue, so the gpu queue's concurrency limit
(the chart's `workPool.queues.gpu.concurrencyLimit`: your GPUs) holds for a backfill as for a schedule.

Idempotent: a month that already has a run of the same deployment with the same parameters is not
queued again, whether that run has not ended yet (Scheduled, Pending, Running, ...: it is followed
instead) or Completed (skipped; ``--again`` queues it anyway, e.g. to rescore with a new champion).
A month whose last run Failed, Crashed or was Cancelled is queued again. A second `make backfill`
over the same range queues only what the first did not do.

``--watch`` follows the runs to their end with one line per change of state and a count of those
done, and exits 1 unless every run Completed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass

from flows import kedro_tasks  # noqa: F401 - puts src/ on the path
from trip_duration.errors import ConfigError
from trip_duration.periods import Month
from trip_duration.schema import DEFAULT_TAXI, parse_taxi

DEPLOYMENT = "inference/backfill"
MAX_MONTHS = 36
PAGE = 200


@dataclass(frozen=True)
class Queued:
    month: Month
    run: object  # prefect.client.schemas.objects.FlowRun
    how: str  # "queued", "already queued" (an active identical run) or "already completed"

    @property
    def new(self) -> bool:
        return self.how == "queued"


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


def deployment_for(train: bool, taxi: str) -> str:
    if not train:
        return DEPLOYMENT
    return "training/train" if taxi == DEFAULT_TAXI else f"training/train-{taxi}"


def parameters_for(month: Month, train: bool, taxi: str, reingest: bool = False) -> dict:
    if train:
        return {"train_month": str(month), "taxi": taxi}
    return {"batch_month": str(month), "reingest": reingest, "taxi": taxi}


def _runs(deployment_name: str, completed: bool) -> list:
    """Runs of the deployment that have not ended (``completed``: that Completed), newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    final = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
    types = FlowRunFilterStateType(any_=[StateType.COMPLETED]) if completed else FlowRunFilterStateType(not_any_=final)
    runs: list = []
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        while True:  # every page: months of daily runs are more than the API's default page
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=types)),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PAGE, offset=len(runs))
            runs.extend(page)
            if len(page) < PAGE:
                return runs


def _same(run_parameters: dict, wanted: dict) -> bool:
    return all(run_parameters.get(k) == v for k, v in wanted.items())


def queue(batch: list[Month], reingest: bool = False, taxi: str = DEFAULT_TAXI, train: bool = False,
          again: bool = False) -> list[Queued]:
    """One flow run per month (they run one at a time, in this order), unless one is there already."""
    from prefect.deployments import run_deployment

    name = deployment_for(train, taxi)
    earlier = [("already queued", _runs(name, completed=False))]
    if not again:
        earlier.append(("already completed", _runs(name, completed=True)))
    out = []
    for month in batch:
        parameters = parameters_for(month, train, taxi, reingest)
        found = next(((how, run) for how, runs in earlier for run in runs if _same(run.parameters, parameters)), None)
        if found is not None:
            out.append(Queued(month, found[1], found[0]))
            continue
        run = run_deployment(name, parameters=parameters, timeout=0, tags=["backfill", taxi])
        out.append(Queued(month, run, "queued"))
    return out


def progress_line(done: int, total: int, month: Month, run, previous: str | None) -> str:
    state = run.state
    text = f"[{done}/{total} done] {month}: {run.name} {previous or 'new'} -> {state.name}"
    if state.is_final() and state.message and state.name != "Completed":
        text += f": {state.message}"
    return text


def watch(queued: list[Queued], poll_s: float = 3.0, timeout_s: float | None = None, out=None) -> Counter:
    """Follow the runs until every one has ended; a line per change of state. Returns the final states' count."""
    from prefect.client.orchestration import get_client

    out = out or sys.stdout  # at call time: a caller may have replaced sys.stdout since the import
    seen: dict = {q.run.id: None for q in queued}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = {q.run.id: client.read_flow_run(q.run.id) for q in queued}
            done = sum(run.state.is_final() for run in runs.values())
            for q in queued:
                run = runs[q.run.id]
                if run.state.name != seen[q.run.id]:
                    print(progress_line(done, len(queued), q.month, run, seen[q.run.id]), file=out, flush=True)
                    seen[q.run.id] = run.state.name
            if done == len(queued):
                return Counter(run.state.name for run in runs.values())
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(queued) - done} of {len(queued)} runs have not ended after {timeout_s:g} s")
            time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="first", required=True, help="first month, YYYY-MM")
    parser.add_argument("--to", dest="last", required=True, help="last month, YYYY-MM (inclusive)")
    parser.add_argument("--reingest", action="store_true", help="ingest each month again first (scoring)")
    parser.add_argument("--taxi", default=DEFAULT_TAXI, help="yellow or green (default yellow)")
    parser.add_argument("--train", action="store_true",
                        help="train on each month (validated on the next) instead of scoring it")
    parser.add_argument("--watch", action="store_true", help="follow the runs to their end; exit 1 unless all Completed")
    parser.add_argument("--again", action="store_true", help="queue months that have a Completed run too")
    args = parser.parse_args(argv)
    try:
        batch, taxi = months(args.first, args.last), parse_taxi(args.taxi, key="TAXI")
        if args.train and args.reingest:
            raise ConfigError("--reingest is for scoring: a training run ingests its months itself (drop REINGEST)")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = deployment_for(args.train, taxi)
    queued = queue(batch, args.reingest, taxi, args.train, args.again)
    for q in queued:
        verb = "queued" if q.new else f"{q.how}, not queued again" + ("" if q.how == "already queued" else " (AGAIN=1)")
        print(f"{q.month}: flow run {q.run.name} ({q.run.id}) {verb} on {name}", flush=True)
    if not args.watch:
        print(f"follow them with: the same make backfill with WATCH=1 (it queues nothing new), "
              f"or prefect flow-run ls --flow-name {name.split('/')[0]} --limit {len(batch)}")
        return 0
    states = watch(queued)
    print("backfill " + ("done" if set(states) == {"Completed"} else "ended") + ": "
          + ", ".join(f"{n} {state}" for state, n in sorted(states.items())), flush=True)
    return 0 if set(states) == {"Completed"} else 1


if __name__ == "__main__":
    sys.exit(main())
