"""Synthetic TLC months, yellow or green, in any layout TLC has published (trip_duration.schema.LAYOUTS).

This machine cannot download the real data, so the generator stands in for it. The
city is a fixed map of 263 zones (same for every month of a seed); a trip's duration
depends on the distance between its zones, congestion at both ends, the hour and the
weekday, with multiplicative noise and the outliers real TLC files carry (meter left
running, cancelled trips, zero distances, clock errors, missing passenger data).
A model that uses distance and time of day can honestly beat the course baseline,
which only sees the zone pair. Green taxis (boro cabs) may not pick up in most of Manhattan: their
trips start mostly in the outer zones, so a green month is smaller and its trips longer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from trip_duration.periods import Month
from trip_duration.schema import (DEFAULT_LAYOUT, DEFAULT_TAXI, DROPOFF, LAYOUTS, PICKUP, RENAMES, parse_taxi,
                                  resolve_layout)

N_ZONES = 263
_KM_PER_MILE = 1.609344
AIRPORTS = {1: (-16.0, -4.0), 132: (19.0, -6.0), 138: (11.0, 11.0)}  # EWR, JFK, LGA


@dataclass(frozen=True)
class CityMap:
    xy: np.ndarray  # (N_ZONES, 2) zone centroids in km; row i is zone i + 1
    popularity: np.ndarray  # pickup weights, sums to 1
    congestion: np.ndarray  # >= 1: slows trips that start or end here


def city_map(seed: int) -> CityMap:
    """The zones of the synthetic city: stable for a seed, whatever the month."""
    rng = np.random.default_rng([seed, 0])
    xy = np.empty((N_ZONES, 2))
    popularity = np.empty(N_ZONES)
    congestion = np.empty(N_ZONES)
    manhattan = slice(0, 70)
    outer = slice(70, N_ZONES)
    xy[manhattan, 0] = rng.uniform(0, 3.5, 70)
    xy[manhattan, 1] = rng.uniform(0, 20, 70)
    xy[outer, 0] = rng.uniform(-12, 22, N_ZONES - 70)
    xy[outer, 1] = rng.uniform(-14, 28, N_ZONES - 70)
    popularity[manhattan] = rng.pareto(1.5, 70) + 2.0
    popularity[outer] = rng.pareto(2.5, N_ZONES - 70) * 0.3 + 0.05
    congestion[manhattan] = rng.uniform(1.25, 1.6, 70)
    congestion[outer] = rng.uniform(0.9, 1.15, N_ZONES - 70)
    for zone, (x, y) in AIRPORTS.items():
        xy[zone - 1] = (x, y)
        popularity[zone - 1] = 3.0 if zone != 1 else 0.3
        congestion[zone - 1] = 1.1
    return CityMap(xy=xy, popularity=popularity / popularity.sum(), congestion=congestion)


_HOUR_WEIGHTS = np.array(
    [3, 2, 1.5, 1, 0.8, 1, 2, 4, 5.5, 5.5, 5, 5, 5.2, 5.2, 5.5, 5.8, 6, 6.5, 7, 6.5, 5.8, 5.5, 5, 4]
)


def _base_speed_mph(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    speed = np.full(hour.shape, 14.0)
    speed[(hour >= 7) & (hour <= 9)] = 10.0
    speed[(hour >= 16) & (hour <= 19)] = 9.5
    speed[(hour >= 22) | (hour <= 5)] = 22.0
    return np.where(weekend, speed * 1.25, speed)


def generate_month(month: str | Month, rows: int = 100_000, seed: int = 42, taxi: str = DEFAULT_TAXI,
                   layout: str = DEFAULT_LAYOUT) -> pa.Table:
    """One month of ``taxi`` trips in the layout TLC shipped in ``layout`` (a year, 2019-2025), deterministic
    for (month, rows, seed, taxi); the layout changes only the columns' names and types."""
    month, taxi = Month.parse(month), parse_taxi(taxi)
    layout = resolve_layout(taxi, layout)
    if rows < 1:
        raise ValueError(f"rows={rows} must be at least 1")
    city = city_map(seed)
    rng = np.random.default_rng([seed, month.year, month.month, rows] + ([1] if taxi == "green" else []))
    pickups = city.popularity
    if taxi == "green":  # boro cabs: no street hails in (most of) Manhattan
        pickups = np.where(np.arange(N_ZONES) < 70, pickups * 0.05, pickups * 4)
        pickups = pickups / pickups.sum()

    pu = rng.choice(N_ZONES, size=rows, p=pickups)
    do = np.empty(rows, dtype=np.int64)
    dist = np.linalg.norm(city.xy[:, None, :] - city.xy[None, :, :], axis=2)  # km, zone x zone
    order = np.argsort(pu, kind="stable")
    starts = np.searchsorted(pu[order], np.arange(N_ZONES + 1))
    for zone in range(N_ZONES):
        idx = order[starts[zone] : starts[zone + 1]]
        if idx.size:
            weights = city.popularity * np.exp(-dist[zone] / 3.0) + 1e-4
            do[idx] = rng.choice(N_ZONES, size=idx.size, p=weights / weights.sum())

    days = (month.end - month.start).days
    start_ns = np.datetime64(month.start.isoformat(), "us")
    hour = rng.choice(24, size=rows, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    day = rng.integers(0, days, size=rows)
    offset_s = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, size=rows)
    pickup = start_ns + offset_s.astype("timedelta64[s]")
    weekday = (pickup.astype("datetime64[D]").view("int64") - 4) % 7  # 0 = Monday
    weekend = weekday >= 5

    within_km = rng.gamma(2.0, 0.4, size=rows)
    road_km = dist[pu, do] * rng.uniform(1.1, 1.35, size=rows) + within_km
    miles = road_km / _KM_PER_MILE * rng.lognormal(0.0, 0.08, size=rows)
    speed = _base_speed_mph(hour, weekend) / np.sqrt(city.congestion[pu] * city.congestion[do])
    speed *= 1.0 + 0.8 * np.tanh(miles / 10.0)  # long trips take highways
    duration_min = (1.5 + miles / speed * 60.0) * rng.lognormal(0.0, 0.18, size=rows)

    # Outliers, at rates like the real files.
    u = rng.random(rows)
    meter_left_on = u < 0.015
    cancelled = (u >= 0.015) & (u < 0.025)
    clock_error = (u >= 0.025) & (u < 0.026)
    duration_min = np.where(meter_left_on, duration_min * rng.uniform(4, 40, rows), duration_min)
    duration_min = np.where(cancelled, rng.uniform(0.0, 0.95, rows), duration_min)
    duration_min = np.where(clock_error, -rng.uniform(1, 30, rows), duration_min)
    zero_distance = rng.random(rows) < 0.012
    miles = np.where(zero_distance, 0.0, np.round(miles, 2))
    dropoff = pickup + (duration_min * 60e6).astype("timedelta64[us]")

    no_passenger_info = rng.random(rows) < 0.025
    passengers = rng.choice([0, 1, 2, 3, 4, 5, 6], size=rows, p=[0.02, 0.72, 0.14, 0.04, 0.02, 0.04, 0.02])
    from_airport = np.isin(pu + 1, (132, 138))
    ratecode = np.where((pu + 1 == 132) | (do + 1 == 132), 2.0, 1.0)
    fare = np.round(np.maximum(3.0 + 3.5 * miles + 0.35 * np.maximum(duration_min, 0), 3.0), 2)
    fare = np.where(ratecode == 2.0, 70.0, fare)
    extra = np.where((hour >= 20) | (hour < 6), 1.0, 0.0) + np.where((hour >= 16) & (hour < 20) & ~weekend, 2.5, 0.0)
    payment = rng.choice([1, 2, 3, 4], size=rows, p=[0.78, 0.19, 0.02, 0.01])
    tip = np.where(payment == 1, np.round(fare * rng.uniform(0.1, 0.25, rows), 2), 0.0)
    tolls = np.where(dist[pu, do] > 12, 6.55, 0.0)
    manhattan_trip = (pu < 70) | (do < 70)
    congestion = np.where(manhattan_trip, 2.5, 0.0)
    airport_fee = np.where(from_airport, 1.25, 0.0)
    total = np.round(fare + extra + 0.5 + tip + tolls + 1.0 + congestion + airport_fee, 2)

    def nullable(values: np.ndarray) -> pa.Array:
        return pa.array(values, type=pa.float64(), mask=no_passenger_info)

    cbd = np.where(manhattan_trip & (pu < 40), 0.75, 0.0)  # congestion relief zone toll, 2025 on
    columns = {
        "VendorID": pa.array(rng.choice([1, 2], size=rows, p=[0.27, 0.73]), pa.int64()),
        PICKUP: pa.array(pickup, pa.timestamp("us")),
        DROPOFF: pa.array(dropoff, pa.timestamp("us")),
        "passenger_count": nullable(passengers.astype(float)),
        "trip_distance": pa.array(miles, pa.float64()),
        "RatecodeID": nullable(ratecode),
        "store_and_fwd_flag": pa.array(
            np.where(rng.random(rows) < 0.005, "Y", "N"), pa.string(), mask=no_passenger_info
        ),
        "PULocationID": pa.array(pu + 1, pa.int64()),
        "DOLocationID": pa.array(do + 1, pa.int64()),
        "payment_type": pa.array(np.where(no_passenger_info, 0, payment), pa.int64()),
        "fare_amount": pa.array(fare, pa.float64()),
        "extra": pa.array(extra, pa.float64()),
        "mta_tax": pa.array(np.full(rows, 0.5), pa.float64()),
        "tip_amount": pa.array(tip, pa.float64()),
        "tolls_amount": pa.array(tolls, pa.float64()),
        "improvement_surcharge": pa.array(np.full(rows, 1.0), pa.float64()),
        "total_amount": pa.array(total, pa.float64()),
        "congestion_surcharge": nullable(congestion),
        "airport_fee": nullable(airport_fee),
        "ehail_fee": pa.nulls(rows, pa.float64()),
        "trip_type": nullable(np.where(rng.random(rows) < 0.02, 2.0, 1.0)),
        "cbd_congestion_fee": pa.array(cbd, pa.float64()),
    }
    return _in_layout(columns, LAYOUTS[taxi][layout])


def _in_layout(columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
    """The canonical columns named and typed as ``schema`` has them (float counts with nulls stay
    nullable integers where the layout has integers, as TLC's 2024 files do)."""
    arrays = []
    for field in schema:
        values = columns[RENAMES.get(field.name, field.name)]
        if pa.types.is_null(field.type):
            arrays.append(pa.nulls(len(values)))
        else:
            arrays.append(values.cast(field.type, safe=False))
    return pa.table(arrays, schema=schema)


def generate_trips(month: str | Month, rows: int = 100_000, seed: int = 42, taxi: str = DEFAULT_TAXI):
    """The same trips as a pandas frame with validated/'s column names (trip_duration.schema.RENAMES),
    before ingest's row rules: for code that reads what ingest writes."""
    return generate_month(month, rows=rows, seed=seed, taxi=taxi).to_pandas().rename(columns=RENAMES)
