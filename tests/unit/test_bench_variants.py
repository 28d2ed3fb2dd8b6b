"""bench/image_bench.py builds its CPU variant from our own Dockerfile, changed in one place only."""

import pytest

from bench.image_bench import ROOT, variant_dockerfile


def test_the_variant_is_our_dockerfile_plus_one_step_after_the_locked_sync():
    ours = (ROOT / "Dockerfile").read_text()
    variant = variant_dockerfile(ours, "3.2.0")
    added = [line for line in variant.splitlines() if line not in ours.splitlines()]
    assert added == ["RUN uv pip uninstall --python /opt/venv/bin/python xgboost nvidia-nccl-cu12 \\",
                     " && uv pip install --python /opt/venv/bin/python --no-deps --compile-bytecode xgboost-cpu==3.2.0"]
    # right after the whole `uv sync` step (its continuation lines included), before the final stage
    sync_end = variant.index("rm -rf /root/.cache\n") + len("rm -rf /root/.cache\n")
    assert variant[sync_end:].startswith("RUN uv pip uninstall")
    assert variant.index("RUN uv pip uninstall") < variant.rindex("FROM ${BASE_IMAGE}")


def test_a_dockerfile_without_the_sync_step_is_refused():
    with pytest.raises(AssertionError, match="uv sync"):
        variant_dockerfile("FROM x\nRUN pip install .\n", "3.2.0")


def test_readme_image_figures_are_the_measured_ones():
    import json

    report = json.loads((ROOT / "bench" / "results" / "images-ours.json").read_text())
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Images (`make bench-images`"):]
    sizes = report["image_mib"]
    built, variant = sizes["as built (CUDA XGBoost + NCCL)"], sizes["cpu variant (xgboost-cpu, no NCCL)"]
    assert f"{variant:,} MiB against\n{built:,} MiB".replace(",", " ") in section
    assert f"{report['ratio_cpu_variant_over_as_built']:.2f}× (a {report['saving'] * 100:.0f} % saving" in section
    assert report["goal_saving_at_least_40_percent"] is False and "one image still serves every pod" in section
    assert "nvidia" not in report["largest_packages_mib"]["cpu variant"]
