"""`make bench-gpu`: refuses clearly without a GPU; the README's GPU figures are the measured file's."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gpu-h100.json"


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    # a PATH with no nvidia-smi on it: the machine has no NVIDIA driver
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "bench.gpu_bench"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "needs an NVIDIA GPU" in done.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_the_measured_file_is_labelled_synthetic_and_complete():
    report = json.loads(RESULTS.read_text())
    assert report["data"].startswith("synthetic")
    assert "H100" in report["machine"]["gpu"] and report["machine"]["xgboost_cuda"] is True
    assert report["pipeline"]["device_in_logs"] and report["pipeline"]["device_in_mlflow"]
    for label in ("one_month", "twelve_months"):
        assert report[label]["gpu"]["device"] == "cuda" and report[label]["cpu"]["device"] == "cpu"
        assert report[label]["rmse_relative_difference"] <= 0.01
    assert report["twelve_months"]["gpu"]["train_rows"] > 30_000_000


def test_readme_figures_are_the_measured_ones():
    report = json.loads(RESULTS.read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**GPU (`make bench-gpu`"):readme.index("**Orchestration (")]
    one, year = report["one_month"], report["twelve_months"]
    expected = [
        f"{one['cpu']['xgboost_fit_seconds']:.2f} | {one['gpu']['xgboost_fit_seconds']:.2f} | "
        f"**{one['xgboost_fit_ratio_gpu_over_cpu']:.2f}×**",
        f"{one['xgboost_second_fit_ratio_gpu_over_cpu']:.2f}×",
        f"{year['cpu']['xgboost_fit_seconds']:.1f} | {year['gpu']['xgboost_fit_seconds']:.1f} | "
        f"**{year['xgboost_fit_ratio_gpu_over_cpu']:.2f}×**",
        f"{year['fit_ratio_gpu_over_cpu']:.2f}×",
        f"{one['gpu']['valid_rmse']:.4f}",
        f"{year['gpu']['valid_rmse']:.4f}",
    ]
    for text in expected:
        assert text in section, f"README's GPU section lacks the measured {text!r}"
    assert re.search(r"\*\*Synthetic data\*\*", section)
