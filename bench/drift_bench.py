"""The drift check's compute, in-process, side by side with the batch's own summary (make bench-drift).

    python -m bench.drift_bench [--rows 1000000] [--repeats 7]

Synthetic data (trip_duration.synth): one month as the champion's training month, the next as the scored
batch. Alternating in each repeat: the ``summarize`` node as shipped (with the batch's profile) and without
the profile (the baseline), then the comparison; and, once per new champion, profiling the training month.
Medians, and ratios to the baseline. build/bench/drift.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from infra.local.stack import ROOT

OUT = ROOT / "build" / "bench"


def main(argv: list[str] | None = None) -> int:
    import trip_duration.pipelines.inference.nodes as nodes
    from trip_duration import drift
    from trip_duration.features import duration_minutes
    from trip_duration.params import DriftParams
    from trip_duration.synth import generate_trips

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="drift.json")
    args = parser.parse_args(argv)
    reference_trips = generate_trips("2023-01", rows=args.rows, seed=11)
    batch = generate_trips("2023-02", rows=args.rows, seed=11)
    actual = duration_minutes(batch).to_numpy(dtype=np.float32)
    rng = np.random.default_rng(0)
    predictions = batch[nodes.PREDICTION_COLUMNS].assign(
        predicted_duration=(actual * rng.lognormal(0, 0.2, len(actual))).astype(np.float32),
        actual_duration=actual, model_version=np.int64(1))
    params = DriftParams()
    shipped = nodes.profile
    times: dict[str, list[float]] = {"summarize_without_profile": [], "summarize_as_shipped": [], "compare": [],
                                     "training_month_profile": []}
    for _ in range(args.repeats):
        nodes.profile = lambda *a, **k: None  # the baseline: the node before the drift check
        start = time.perf_counter()
        nodes.summarize(predictions)
        times["summarize_without_profile"].append(time.perf_counter() - start)
        nodes.profile = shipped
        start = time.perf_counter()
        summary = nodes.summarize(predictions)
        times["summarize_as_shipped"].append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = drift.profile(reference_trips, duration_minutes(reference_trips))
        times["training_month_profile"].append(time.perf_counter() - start)
        start = time.perf_counter()
        report = drift.compare(reference, summary["profile"], summary["rmse_vs_actual"], summary["rmse_vs_actual"],
                               params.psi_threshold, params.rmse_ratio_threshold, params.min_rows)
        times["compare"].append(time.perf_counter() - start)
    median = {k: round(statistics.median(v), 4) for k, v in times.items()}
    added = median["summarize_as_shipped"] - median["summarize_without_profile"] + median["compare"]
    result = {
        "data": "synthetic (trip_duration.synth)",
        "rows": args.rows,
        "repeats": args.repeats,
        "median_seconds": median,
        "summarize_ratio_as_shipped_over_without": round(median["summarize_as_shipped"]
                                                         / median["summarize_without_profile"], 3),
        "check_added_s": round(added, 4),
        "verdict_of_the_next_synthetic_month": report["line"],
        "samples": times,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
