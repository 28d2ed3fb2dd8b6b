import numpy as np
import pytest

from trip_duration.errors import ConfigError
from trip_duration.features import duration_minutes
from trip_duration.schema import LAYOUTS, RENAMES
from trip_duration.synth import generate_month


@pytest.mark.parametrize(("taxi", "layout"), [(t, y) for t in LAYOUTS for y in LAYOUTS[t]])
def test_each_layout_is_written_exactly_with_the_same_trips(taxi, layout):
    table = generate_month("2023-01", rows=2_000, seed=1, taxi=taxi, layout=layout)
    assert table.schema.equals(LAYOUTS[taxi][layout])
    assert table.num_rows == 2_000
    # the layout changes names and types only: the trips are those of the default layout
    same = generate_month("2023-01", rows=2_000, seed=1, taxi=taxi).to_pandas().rename(columns=RENAMES)
    trips = table.to_pandas().rename(columns=RENAMES)
    assert (duration_minutes(trips) - duration_minutes(same)).abs().max() < 1e-3  # ns vs us
    assert (trips["PULocationID"].astype("int64") == same["PULocationID"]).all()


def test_green_differs_from_yellow_and_starts_mostly_outside_manhattan():
    yellow = generate_month("2023-01", rows=20_000, seed=1).to_pandas()
    green = generate_month("2023-01", rows=20_000, seed=1, taxi="green").to_pandas()
    assert "lpep_pickup_datetime" in green and "trip_type" in green and "tpep_pickup_datetime" in yellow
    in_manhattan = lambda frame: (frame["PULocationID"] <= 70).mean()  # noqa: E731 - zones 1..70 in the map
    assert in_manhattan(green) < 0.2 < in_manhattan(yellow)


def test_unknown_layout_and_taxi_are_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"layout='2018' is not a year TLC published green parquet files in: "
                                          r"use one of 2019..2025 \(layouts change in 2019, 2022, 2023, 2024, 2025\)"):
        generate_month("2023-01", rows=10, taxi="green", layout="2018")


def test_a_layout_is_named_by_any_year_it_was_shipped_in():
    assert generate_month("2023-01", rows=10, layout="2021").schema.equals(LAYOUTS["yellow"]["2019"])
    assert generate_month("2023-01", rows=10, taxi="green", layout=2025).schema.equals(LAYOUTS["green"]["2025"])
    with pytest.raises(ConfigError, match=r"taxi='purple' is not a taxi type: use one of yellow, green"):
        generate_month("2023-01", rows=10, taxi="purple")


def test_deterministic_by_seed_and_month():
    a = generate_month("2023-01", rows=2_000, seed=3)
    assert a.equals(generate_month("2023-01", rows=2_000, seed=3))
    assert not a.equals(generate_month("2023-01", rows=2_000, seed=4))
    assert not a.equals(generate_month("2023-02", rows=2_000, seed=3))


def test_duration_depends_on_distance_and_hour_with_outliers():
    trips = generate_month("2023-03", rows=50_000, seed=5).to_pandas().rename(columns=RENAMES)
    minutes = duration_minutes(trips)
    sane = (minutes >= 1) & (minutes <= 60) & (trips["trip_distance"] > 0)
    assert 0.85 < sane.mean() < 0.99  # outliers exist, but most trips are usable
    assert np.corrcoef(trips.loc[sane, "trip_distance"], minutes[sane])[0, 1] > 0.6
    hour = trips["pickup_datetime"].dt.hour
    pace = (minutes / trips["trip_distance"])[sane]
    assert pace[hour[sane].between(16, 19)].median() > 1.2 * pace[hour[sane].between(0, 4)].median()
    assert trips["passenger_count"].isna().any()
    assert (minutes < 0).any() and (minutes > 60).any()


def test_the_generate_command_writes_tlcs_file_name_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    import pyarrow.parquet as pq

    from trip_duration.console import main

    assert main(["generate", "--taxi", "green", "--layout", "2024", "--month", "2023-12", "--months", "2",
                 "--rows", "500", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["green_tripdata_2023-12.parquet", "green_tripdata_2024-01.parquet"]
    assert pq.read_schema(tmp_path / written[0]).equals(LAYOUTS["green"]["2024"])
    assert "synthetic" in capsys.readouterr().out
    for argv, says in ((["--taxi", "purple", "--month", "2023-01"], "error: --taxi='purple' is not a taxi type"),
                       (["--month", "2023-3"], "error: --month='2023-3' is not a month: use the form YYYY-MM"),
                       (["--month", "2023-01", "--layout", "2017"], "error: layout='2017' is not a year TLC published")):
        assert main(["generate", *argv, "--out", str(tmp_path / "no")]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
