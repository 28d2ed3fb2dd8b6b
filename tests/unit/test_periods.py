from datetime import date

import pytest

from trip_duration import layout
from trip_duration.errors import ConfigError
from trip_duration.periods import DateRange, Month


def test_month_arithmetic_wraps_years():
    assert str(Month.parse("2023-12").next()) == "2024-01"
    assert str(Month.parse("2024-01").previous()) == "2023-12"


@pytest.mark.parametrize("bad", ["2023-13", "2023-1", "jan", "", None])
def test_bad_month_names_the_value_and_the_form(bad):
    with pytest.raises(ConfigError, match=r"month=.*YYYY-MM"):
        Month.parse(bad)


def test_range_spanning_months_and_labels():
    batch = DateRange.parse("2023-01-20", "2023-03-02")
    assert [str(m) for m in batch.months()] == ["2023-01", "2023-02", "2023-03"]
    assert batch.label == "range=2023-01-20_2023-03-02"
    assert DateRange.of_month(Month(2023, 2)).label == "year=2023/month=02"
    with pytest.raises(ConfigError, match="batch_end"):
        DateRange.parse("2023-02-01", "2023-02-01")


def test_keys_depend_only_on_taxi_batch_and_version():
    batch = DateRange(date(2023, 2, 1), date(2023, 3, 1))
    assert (layout.predictions_key("green", batch, 3)
            == "predictions/taxi=green/year=2023/month=02/model_version=3/predictions.parquet")
    assert layout.raw_key("green", Month(2023, 2)) == "raw/green_tripdata_2023-02.parquet"  # TLC's own file name
    assert layout.validated_key("yellow", Month(2023, 2)) == "validated/taxi=yellow/year=2023/month=02/trips.parquet"
    assert len({layout.ingest_outcome_key(taxi, Month(2023, 2)) for taxi in ("yellow", "green")}) == 2
    assert layout.quarantine_reason_key("raw/x.parquet") == "quarantine/raw/x.parquet.reason.json"
