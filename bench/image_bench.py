"""Would a CPU-only image for the cpu queue (and MLflow) pay? Sizes of the image as built and of its
variant without CUDA libraries, side by side, from the same Dockerfile and lock.

    python -m bench.image_bench          # needs Docker (and debootstrap for the test base)

The variant is our Dockerfile with one step added after the locked `uv sync`: XGBoost's CUDA
wheel and NCCL (nvidia-nccl-cu12) replaced by `xgboost-cpu` of the same version (the CPU build
XGBoost publishes). Everything else is identical, so the difference is exactly what a `cpu`
build target would save. Also: what takes the space (largest packages).

build/bench/images.json
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.cluster import images

ROOT = images.ROOT
OUT = ROOT / "build" / "bench"
VARIANT = "trip-duration:test-cpu-variant"
SYNC = re.compile(r"^RUN uv sync .*?(?<!\\)\n", re.S | re.M)


def locked_version(package: str) -> str:
    """The version uv.lock gives ``package`` on the image's Python (3.11)."""
    export = subprocess.run([str(ROOT / ".venv" / "bin" / "uv"), "export", "--frozen", "--no-hashes", "--no-dev",
                             "--no-emit-project", "--no-annotate", "--no-header", "--python", "3.11"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in export.splitlines():
        name, _, rest = line.partition("==")
        if name.strip() == package:
            return rest.split(";")[0].strip()
    raise LookupError(f"{package} is not in uv.lock's export for Python 3.11")


def variant_dockerfile(text: str, xgboost: str) -> str:
    match = SYNC.search(text)
    if match is None:
        raise AssertionError("the Dockerfile has no `RUN uv sync` step to follow: update bench/image_bench.py")
    swap = ("RUN uv pip uninstall --python /opt/venv/bin/python xgboost nvidia-nccl-cu12 \\\n"
            f" && uv pip install --python /opt/venv/bin/python --no-deps --compile-bytecode xgboost-cpu=={xgboost}\n")
    return text[:match.end()] + swap + text[match.end():]


def largest(tag: str, top: int = 12) -> dict[str, int]:
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c",
                          "du -sm /opt/venv/lib/python3*/site-packages/* | sort -n | tail -n %d" % top],
                         capture_output=True, text=True, check=True).stdout
    return {Path(path).name: int(mib) for mib, path in (line.split("\t") for line in out.splitlines())}


def main() -> int:
    reason = images.docker_ready(images.BASE)
    if reason:
        print(f"image bench: {reason}", file=sys.stderr)
        return 2
    images.base_image()
    images._build(images.APP, ROOT)
    xgboost = locked_version("xgboost")
    with tempfile.TemporaryDirectory(prefix="td-image-variant-") as tmp:
        for name in ("pyproject.toml", "uv.lock", ".dockerignore"):
            shutil.copy(ROOT / name, tmp)
        Path(tmp, "Dockerfile").write_text(variant_dockerfile((ROOT / "Dockerfile").read_text(), xgboost))
        images._build(VARIANT, Path(tmp))
    as_built, variant = images.size_mib(images.APP), images.size_mib(VARIANT)
    base = images.size_mib(images.BASE)
    report = {
        "image_mib": {"as built (CUDA XGBoost + NCCL)": round(as_built), "cpu variant (xgboost-cpu, no NCCL)": round(variant),
                      "base (debootstrap bookworm + python3)": round(base)},
        "ratio_cpu_variant_over_as_built": round(variant / as_built, 3),
        "saving": round(1 - variant / as_built, 3),
        "goal_saving_at_least_40_percent": 1 - variant / as_built >= 0.40,
        "xgboost_version": xgboost,
        "largest_packages_mib": {"as built": largest(images.APP), "cpu variant": largest(VARIANT)},
        "note": "sizes as Docker reports them (uncompressed, all layers); the base here is the test base, "
                "python:3.11-slim-bookworm in production",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "images.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
