"""`make bench-drift`: the README's figures are the measured files', and they meet the issue's bound."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Drift check (`make bench-drift`")
    return " ".join(readme[start:readme.index("**Images (", start)].split())  # line breaks as spaces


def test_readme_figures_of_whole_runs_are_the_measured_ones():
    report = json.loads((RESULTS / "drift-orchestration-ours.json").read_text())
    section = _section()
    with_, without = report["median_seconds"]["ours"], report["median_seconds"]["ours_no_drift"]
    assert len(report["samples"]["ours"]) == len(report["samples"]["ours_no_drift"]) == report["runs_each"]
    for name, key in (("after the last task", "after_last_task"), ("overhead", "overhead"), ("total", "total")):
        row = f"| {name} | {with_[key]:.3f} | {without[key]:.3f} |"
        assert row in section, row
    assert abs(report["overhead_ratio_with_over_without"] - with_["overhead"] / without["overhead"]) < 0.002
    assert f"**{report['overhead_ratio_with_over_without']:.3f}×**" in section
    met = report["target_overhead_at_most_1_05"]
    assert met == (report["overhead_ratio_with_over_without"] <= 1.05)
    assert ("within the issue's bound" if met else "**over** the issue's bound") in section  # said as measured
    import statistics

    paired = statistics.median(a["overhead"] / b["overhead"]
                               for a, b in zip(report["samples"]["ours"], report["samples"]["ours_no_drift"]))
    assert f"the median of the {report['runs_each']} rounds' own ratios is {paired:.3f}×" in section
    assert "synthetic" in report["data"] and "synthetic" in section.lower()


def test_readme_figures_in_process_are_the_measured_ones():
    report = json.loads((RESULTS / "drift-ours.json").read_text())
    section = _section()
    median = report["median_seconds"]
    for key in ("summarize_without_profile", "summarize_as_shipped", "compare", "training_month_profile"):
        assert f"{median[key]:.3f} s" in section, key
    assert f"{report['summarize_ratio_as_shipped_over_without']:.2f}×" in section
    assert report["verdict_of_the_next_synthetic_month"].startswith("no drift")
