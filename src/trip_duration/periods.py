"""Months and date ranges: the logical dates our pipelines and S3 keys are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from trip_duration.errors import ConfigError

#: The accepted forms, as JSON-schema patterns too: the flows' parameter schemas carry them, so
#: the Prefect server rejects ``train_month=banana`` when the run is created, not minutes later.
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
DAY_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month such as ``2023-01``."""

    year: int
    month: int

    @classmethod
    def parse(cls, value: str | Month, *, key: str = "month") -> Month:
        if isinstance(value, Month):
            return value
        match = _MONTH_RE.match(str(value).strip()) if value is not None else None
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ConfigError(
                f"{key}={value!r} is not a month: use the form YYYY-MM, e.g. {key}=2023-01"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, moment: date | datetime) -> Month:
        return cls(moment.year, moment.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def start(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end(self) -> date:
        """First day of the next month (exclusive bound)."""
        return self.next().start

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class DateRange:
    """A half-open range of days ``[start, end)``: the unit of batch inference."""

    start: date
    end: date

    @classmethod
    def parse(cls, start: str | date, end: str | date) -> DateRange:
        begin, stop = _parse_day(start, "batch_start"), _parse_day(end, "batch_end")
        if stop <= begin:
            raise ConfigError(
                f"batch_end={stop.isoformat()} must be after batch_start={begin.isoformat()} "
                "(the range is [batch_start, batch_end))"
            )
        return cls(begin, stop)

    @classmethod
    def of_month(cls, month: Month) -> DateRange:
        return cls(month.start, month.end)

    def months(self) -> list[Month]:
        """Every month that overlaps the range, in order."""
        current, last = Month.of(self.start), Month.of(date.fromordinal(self.end.toordinal() - 1))
        out = [current]
        while current < last:
            current = current.next()
            out.append(current)
        return out

    def as_month(self) -> Month | None:
        """The month this range is exactly, if it is one."""
        month = Month.of(self.start)
        return month if (self.start, self.end) == (month.start, month.end) else None

    @property
    def label(self) -> str:
        month = self.as_month()
        if month is not None:
            return f"year={month.year:04d}/month={month.month:02d}"
        return f"range={self.start.isoformat()}_{self.end.isoformat()}"


def _parse_day(value: str | date, key: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}={value!r} is not a date: use YYYY-MM-DD, e.g. {key}=2023-02-01") from err
