"""`make bench-pod-log`: the README's figures are the measured file's."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "pod-log-ours.json"


def test_readme_figures_are_the_measured_ones():
    report = json.loads(RESULTS.read_text())
    readme = (ROOT / "README.md").read_text()
    start = readme.index("**Logs that outlive pods (`make bench-pod-log`")
    section = readme[start:readme.index("**Images (", start)]
    start_row, loud_row = report["results"]["prefect_start"], report["results"]["loud"]
    for result, digits in ((start_row, 3), (loud_row, 2)):
        assert len(result["samples"]["direct"]) == len(result["samples"]["tee"]) == report["runs"]
        row = (f"| {result['direct_s']:.2f} | {result['tee_s']:.2f} | "
               f"**{result['ratio_tee_over_direct']:.{digits}f}×** |")
        assert row in section, row
    assert abs(start_row["ratio_tee_over_direct"] - start_row["tee_s"] / start_row["direct_s"]) < 0.002
