"""What a scheduled run works on: the newest month whose data exists and that is not done yet.

TLC publishes a month about two months late, so a schedule cannot name the month: on the 5th of
December the October file does not exist yet. A scheduled (or parameterless) run looks back from
its scheduled month instead, newest first, at most :data:`LOOKBACK_MONTHS` months, and either
picks a month or says in one line why there is nothing to do (the run then completes, it does
not fail). A month *exists* when it was ingested (an accepted outcome), its raw file is in the
bucket, or the source answers a HEAD request for it (``TRIP_DURATION_SOURCE_URL``).

*Done* means, for inference, that the month's summary for the current champion version exists
(a new champion scores the months again); for training, that a promotion report exists for that
training month. Explicit parameters bypass all of this: a run asked for a month that does not
exist fails, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trip_duration import layout
from trip_duration.io import s3
from trip_duration.io.datasets import is_ingested
from trip_duration.io.tlc import published, source_url
from trip_duration.periods import DateRange, Month
from trip_duration.schema import DEFAULT_TAXI


#: How far back a scheduled run looks for a month with data (TLC is ~2 months late; 6 leaves room).
LOOKBACK_MONTHS = 6


def in_bucket(bucket: str, month: Month, taxi: str = DEFAULT_TAXI) -> str | None:
    """Whether the bucket has the month's data: "ingested" (an accepted outcome), "raw" (its TLC file in raw/),
    or None. Unlike :class:`Months`, the source is not asked: what a run can use without downloading."""
    if is_ingested(bucket, month, taxi):
        return "ingested"
    if s3.exists(bucket, layout.raw_key(taxi, month)):
        return "raw"
    return None


@dataclass(frozen=True)
class Pick:
    """A scheduled run's work: ``month`` (None: nothing to do) and one line saying why."""

    month: Month | None
    reason: str


@dataclass
class Months:
    """Existence checks for one resolution, each asked once."""

    bucket: str
    taxi: str = DEFAULT_TAXI
    _known: dict[Month, str | None] = field(default_factory=dict)

    def where(self, month: Month) -> str | None:
        """Where the month's data is ("ingested", "raw", the source URL), or None."""
        if month not in self._known:
            self._known[month] = self._look(month)
        return self._known[month]

    def _look(self, month: Month) -> str | None:
        found = in_bucket(self.bucket, month, self.taxi)
        if found:
            return found
        url = source_url(self.taxi, month)
        if url and published(url):
            return url
        return None


def _window(newest: Month, lookback: int) -> list[Month]:
    months = [newest]
    while len(months) < lookback:
        months.append(months[-1].previous())
    return months


def inference_month(bucket: str, newest: Month, champion: int, lookback: int = LOOKBACK_MONTHS,
                    taxi: str = DEFAULT_TAXI) -> Pick:
    """The newest month, from ``newest`` back, with data and no summary for ``champion`` yet."""
    months, done = Months(bucket, taxi), []
    for month in _window(newest, lookback):
        if s3.exists(bucket, layout.inference_summary_key(taxi, DateRange.of_month(month), champion)):
            done.append(month)
        elif where := months.where(month):
            return Pick(month, f"{month} has data ({where}) and no predictions of model v{champion} yet")
    first, last = _window(newest, lookback)[-1], newest
    return Pick(None, (
        f"nothing to score: of {first}..{last}, "
        + (f"{', '.join(map(str, done))} already scored by v{champion}; " if done else "")
        + "the others have no data yet (TLC publishes about two months late); the next run looks again"))


def training_months(bucket: str, newest: Month, lookback: int = LOOKBACK_MONTHS, taxi: str = DEFAULT_TAXI) -> Pick:
    """The newest training month M, from ``newest`` back, where M and M+1 (validation) have data,
    unless a model was already trained on it: then there is nothing newer to train on (an older
    month would only make an older model)."""
    months = Months(bucket, taxi)
    for month in _window(newest, lookback):
        if _trained_on(bucket, month, taxi):
            return Pick(None, f"nothing to train: {month} is the newest month with data for training and "
                              "validation, and a model was already trained on it; the next run looks again")
        where, valid = months.where(month), months.where(month.next())
        if where and valid:
            return Pick(month, f"{month} ({where}) and {month.next()} ({valid}) have data; no model trained on "
                               f"{month} yet")
    return Pick(None, (
        f"nothing to train: no month of {_window(newest, lookback)[-1]}..{newest} has data for itself and the next "
        "month (validation; TLC publishes about two months late); the next run looks again"))


def _trained_on(bucket: str, month: Month, taxi: str) -> bool:
    prefix = layout.promotion_report_key(taxi, month, "").rsplit("version=", 1)[0]
    return bool(s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))


def newest_trained(bucket: str, taxi: str = DEFAULT_TAXI) -> Month | None:
    """The newest month a model of ``taxi`` was trained on (its promotion reports), or None."""
    prefix = f"reports/promotion/taxi={taxi}/train="
    months = {key[len(prefix):].split("/", 1)[0] for key, _ in s3.list_objects(bucket, prefix)}
    return max((Month.parse(m) for m in months), default=None)
