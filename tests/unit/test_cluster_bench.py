"""`make bench-cluster`: its summary, and the README's Kubernetes figures are the measured file's."""

import json
from pathlib import Path

import pytest

from bench.cluster_bench import summarise

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "cluster-ours.json"


def _sample(overhead: float, queue_wait: float, scoring: float) -> dict:
    return {"total": overhead + scoring, "queue_wait": queue_wait, "scoring": scoring, "overhead": overhead,
            "node": "trip-duration-cpu", "flow_run_id": "x"}


def test_summarise_takes_medians_and_ratios_of_overhead_with_and_without_the_queue_wait():
    samples = {"ours": [_sample(10, 4, 1), _sample(12, 2, 1), _sample(30, 9, 1)],
               "course": [_sample(20, 2, 1), _sample(24, 8, 1), _sample(22, 4, 1)]}
    report = summarise(samples)
    assert report["median_seconds"]["ours"]["overhead"] == 12
    assert report["overhead_ratio_ours_over_course"] == pytest.approx(12 / 22, abs=1e-3)
    # after pickup: ours 6, 10, 21 -> 10; course 18, 16, 18 -> 18
    assert report["overhead_after_pickup_ratio_ours_over_course"] == pytest.approx(10 / 18, abs=1e-3)
    assert report["target_overhead_at_most_half"] is False
    assert "node" not in report["median_seconds"]["ours"]


def test_the_measured_file_is_labelled_synthetic_and_complete():
    report = json.loads(RESULTS.read_text())
    assert report["data"].startswith("synthetic") and report["cluster"] == "ours"
    assert len(report["samples"]["ours"]) == len(report["samples"]["course"]) == report["runs_each"] >= 5
    assert {s["node"] for s in report["samples"]["ours"] + report["samples"]["course"]} == {"trip-duration-cpu"}
    assert report["memory"]["processes_rss_total_mib"] > 0 and report["image_bytes"]["trip-duration:test"] > 0


def test_readme_figures_are_the_measured_ones():
    report = json.loads(RESULTS.read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Kubernetes (`make bench-cluster`"):]
    ours, course = report["median_seconds"]["ours"], report["median_seconds"]["course"]
    expected = [
        f"| total, run → Completed | {ours['total']:.2f} | {course['total']:.2f} |",
        f"| queue wait (the worker polls every 10 s) | {ours['queue_wait']:.2f} | {course['queue_wait']:.2f} |",
        f"| {ours['process_start_imports_and_code_pull']:.2f} | {course['process_start_imports_and_code_pull']:.2f} |",
        f"| {ours['flow_setup_until_first_task']:.2f} | {course['flow_setup_until_first_task']:.2f} |",
        f"| model load | {ours['model_load']:.2f} | {course['model_load']:.2f} |",
        f"| **{ours['overhead']:.2f}** | **{course['overhead']:.2f}** |",
        f"| {ours['overhead_after_pickup']:.2f} | {course['overhead_after_pickup']:.2f} |",
        f"{report['overhead_ratio_ours_over_course']:.2f}× (target ≤ 0.5×: missed)",
        f"**{report['overhead_after_pickup_ratio_ours_over_course']:.2f}×**",
        f"**{report['cluster_up']['up_after_down_s (warm: binaries kept)']:.0f} s**",
        f"**{report['memory']['processes_rss_total_mib']} MiB**",
        f"**{report['memory']['pods_rss_total_mib'] / 1024:.1f} GiB**",
        f"`trip-duration:test` {report['image_bytes']['trip-duration:test'] / 1e6:,.0f} MB".replace(",", " "),
    ]
    for text in expected:
        assert text in section, text
    assert report["target_overhead_at_most_half"] is False and "missed" in section
    assert "**synthetic**" in section
