"""ML benchmark: the course pipeline vs ours, side by side on the same synthetic months.

    python -m bench.ml_bench [--rows 1000000] [--big-rows 3000000]

RMSE and speed on yellow and on green synthetic months (each type: train on 2023-01, validate on
2023-02); peak memory on a big yellow month. Every figure is on synthetic data (trip_duration.synth).

Each measurement runs in its own process so peak memory (ru_maxrss) is clean. Results go
to build/bench/ml.json, as ratios against the course baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
DATA = OUT / "data"
CATEGORICAL = ["PULocationID", "DOLocationID", "PU_DO"]


def _month_file(month: str, rows: int, taxi: str = "yellow") -> Path:
    from trip_duration.synth import generate_month

    path = DATA / f"{taxi}_tripdata_{month}_{rows}.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        pq.write_table(generate_month(month, rows=rows, seed=42, taxi=taxi), partial)
        partial.rename(path)  # an interrupted run never leaves a truncated month behind
    return path


# --- the course's way (seed notes: prepare_features -> to_dict -> DictVectorizer -> LinearRegression)
def course_prepare(df):
    df = df.copy()
    kind = "lpep" if "lpep_pickup_datetime" in df else "tpep"  # the course on green files used lpep_*
    df["duration"] = (df[f"{kind}_dropoff_datetime"] - df[f"{kind}_pickup_datetime"]).dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df["PU_DO"] = df["PULocationID"].astype(str) + "_" + df["DOLocationID"].astype(str)
    df[CATEGORICAL] = df[CATEGORICAL].fillna(-1).astype("str")
    return df


def run_course(train_path: Path, valid_path: Path) -> dict:
    import numpy as np
    import pandas as pd
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression

    t0 = time.perf_counter()
    train = course_prepare(pd.read_parquet(train_path))
    dv = DictVectorizer()
    X = dv.fit_transform(train[CATEGORICAL].to_dict(orient="records"))
    model = LinearRegression().fit(X, train["duration"].values)
    train_s = time.perf_counter() - t0
    valid = course_prepare(pd.read_parquet(valid_path))
    t1 = time.perf_counter()
    pred = model.predict(dv.transform(valid[CATEGORICAL].to_dict(orient="records")))
    score_s = time.perf_counter() - t1
    rmse = float(np.sqrt(np.mean((valid["duration"].values - pred) ** 2)))
    return {"train_seconds": train_s, "score_seconds": score_s, "scored_rows": len(valid), "valid_rmse": rmse}


# --- ours: ingest nodes (schema + row rules) -> XGBoost; scoring = features + inplace_predict
def run_ours(train_path: Path, valid_path: Path) -> dict:
    from trip_duration.features import duration_minutes
    from trip_duration.models import TripDurationModel, resolve_device, rmse
    from trip_duration.params import TrainingParams
    from trip_duration.pipelines.ingest.nodes import check_schema, filter_rows
    from trip_duration.schema import RawFile

    def ingest(path: Path, month: str):
        taxi = path.name.split("_")[0]
        raw = RawFile(path.name, str(path), path.read_bytes(), taxi=taxi)
        trips, report = check_schema(raw, {"month": month, "taxi": taxi})
        return filter_rows(trips, report, {"month": month, "taxi": taxi})[0]

    t0 = time.perf_counter()
    train = ingest(train_path, train_path.stem.split("_")[2])
    hyper = TrainingParams().model.model_dump()
    model = TripDurationModel.fit(train, duration_minutes(train), hyper, resolve_device("auto"))
    train_s = time.perf_counter() - t0
    valid = ingest(valid_path, valid_path.stem.split("_")[2])
    t1 = time.perf_counter()
    pred = model.predict(valid)
    score_s = time.perf_counter() - t1
    return {"train_seconds": train_s, "score_seconds": score_s, "scored_rows": len(valid),
            "valid_rmse": rmse(duration_minutes(valid).to_numpy(), pred), "device": model.trained_on}


def _worker(which: str, rows: int, taxi: str) -> None:
    train, valid = _month_file("2023-01", rows, taxi), _month_file("2023-02", rows, taxi)
    result = (run_course if which == "course" else run_ours)(train, valid)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _measure(which: str, rows: int, taxi: str = "yellow") -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.ml_bench", "--worker", which, "--rows", str(rows),
                           "--taxi", taxi], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{which} on {rows} {taxi} rows failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per month for RMSE, speed")
    parser.add_argument("--big-rows", type=int, default=3_000_000, help="rows of the memory run (a real month)")
    parser.add_argument("--worker", choices=["course", "ours"])
    parser.add_argument("--taxi", choices=["yellow", "green"], default="yellow", help="(worker) taxi type")
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.rows, args.taxi)
        return 0
    for rows in {args.rows, args.big_rows}:
        _month_file("2023-01", rows), _month_file("2023-02", rows)
    course, ours = _measure("course", args.rows), _measure("ours", args.rows)
    green = {which: _measure(which, args.rows, "green") for which in ("course", "ours")}
    course_big, ours_big = _measure("course", args.big_rows), _measure("ours", args.big_rows)
    course_tput = course["scored_rows"] / course["score_seconds"]
    ours_tput = ours["scored_rows"] / ours["score_seconds"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "data": "synthetic TLC months (trip_duration.synth), not TLC's files",
        "rows_per_month": args.rows,
        "course": course,
        "ours": ours,
        "rmse_ratio_ours_over_course": ours["valid_rmse"] / course["valid_rmse"],
        "by_taxi": {
            taxi: {"course_rmse": both["course"]["valid_rmse"], "ours_rmse": both["ours"]["valid_rmse"],
                   "rmse_ratio_ours_over_course": both["ours"]["valid_rmse"] / both["course"]["valid_rmse"],
                   "valid_rows": {"course": both["course"]["scored_rows"], "ours": both["ours"]["scored_rows"]}}
            for taxi, both in {"yellow": {"course": course, "ours": ours}, "green": green}.items()},
        "rmse_reduction": 1 - ours["valid_rmse"] / course["valid_rmse"],
        "scoring_rows_per_s": {"course": course_tput, "ours": ours_tput},
        "scoring_speedup": ours_tput / course_tput,
        "train_seconds": {"course": course["train_seconds"], "ours": ours["train_seconds"]},
        "big_month": {"rows": args.big_rows, "course": course_big, "ours": ours_big,
                      "peak_rss_mib": {"course": course_big["peak_rss_mib"], "ours": ours_big["peak_rss_mib"]},
                      "peak_rss_ratio_ours_over_course": ours_big["peak_rss_mib"] / course_big["peak_rss_mib"]},
        "targets": {"rmse_at_least_10pct_lower": ours["valid_rmse"] <= 0.9 * course["valid_rmse"],
                    "scoring_at_least_5x": ours_tput >= 5 * course_tput,
                    "big_month_fits_24GiB": max(course_big["peak_rss_mib"], ours_big["peak_rss_mib"]) < 24 * 1024},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ml.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("rmse_reduction", "by_taxi", "scoring_speedup", "train_seconds", "targets")},
                     indent=2))
    print(f"peak RSS on {args.big_rows} rows (MiB): {report['big_month']['peak_rss_mib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
