"""Logical dates from the scheduler, so reruns and backfills of a slot write the same keys."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect.runtime import flow_run

from flows import kedro_tasks  # noqa: F401 - puts src/ on the path
from trip_duration.periods import Month


def logical_month() -> Month:
    """The month of the run's scheduled time (``expected_start_time``); now for an ad-hoc run."""
    scheduled = flow_run.scheduled_start_time
    moment = scheduled if scheduled is not None else datetime.now(timezone.utc)
    return Month(moment.year, moment.month)
