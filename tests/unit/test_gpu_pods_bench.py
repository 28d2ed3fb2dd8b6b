"""`make bench-gpu-pods`: the README's GPU-pod figures are the measured file's, labelled synthetic."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gpu-pods-ours.json"


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**GPU-pod seconds per training run (`make bench-gpu-pods`")
    return readme[start:readme.index("**Orchestration (", start)]


def test_the_measured_file_is_labelled_synthetic_and_holds_every_sample():
    report = json.loads(RESULTS.read_text())
    assert report["data"].startswith("synthetic") and report["cluster"] == "ours"
    for rows, by_variant in report["samples"].items():
        assert set(by_variant) == {"split", "one_pod"}
        for runs in by_variant.values():
            assert len(runs) == report["runs_each"] and all(r["gpu_node"] == "trip-duration-gpu" for r in runs)


def test_readme_figures_are_the_measured_ones():
    report = json.loads(RESULTS.read_text())
    section = _section()
    assert "Synthetic data" in section
    for rows, summary in report["by_trips_a_month"].items():
        one, split = summary["median_seconds"]["one_pod"], summary["median_seconds"]["split"]
        row = (f"| {int(rows):,} | {one['gpu_pod_seconds']:.0f} | {split['gpu_pod_seconds']:.0f} | "
               f"**{summary['gpu_pod_seconds_ratio_split_over_one_pod']:.2f}×** | "
               f"{one['training_run_wall_seconds']:.0f} → {split['training_run_wall_seconds']:.0f} |").replace(",", " ")
        assert row in section, row
