import numpy as np

from trip_duration.features import duration_minutes
from trip_duration.schema import TLC_YELLOW_SCHEMA
from trip_duration.synth import generate_month


def test_exact_tlc_schema_and_row_count():
    table = generate_month("2023-01", rows=5_000, seed=1)
    assert table.schema.equals(TLC_YELLOW_SCHEMA)
    assert table.num_rows == 5_000


def test_deterministic_by_seed_and_month():
    a = generate_month("2023-01", rows=2_000, seed=3)
    assert a.equals(generate_month("2023-01", rows=2_000, seed=3))
    assert not a.equals(generate_month("2023-01", rows=2_000, seed=4))
    assert not a.equals(generate_month("2023-02", rows=2_000, seed=3))


def test_duration_depends_on_distance_and_hour_with_outliers():
    trips = generate_month("2023-03", rows=50_000, seed=5).to_pandas()
    minutes = duration_minutes(trips)
    sane = (minutes >= 1) & (minutes <= 60) & (trips["trip_distance"] > 0)
    assert 0.85 < sane.mean() < 0.99  # outliers exist, but most trips are usable
    assert np.corrcoef(trips.loc[sane, "trip_distance"], minutes[sane])[0, 1] > 0.6
    hour = trips["tpep_pickup_datetime"].dt.hour
    pace = (minutes / trips["trip_distance"])[sane]
    assert pace[hour[sane].between(16, 19)].median() > 1.2 * pace[hour[sane].between(0, 4)].median()
    assert trips["passenger_count"].isna().any()
    assert (minutes < 0).any() and (minutes > 60).any()
