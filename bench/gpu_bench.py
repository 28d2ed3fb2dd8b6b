"""GPU benchmark (`make bench-gpu`, needs an NVIDIA GPU): our training on device=cuda vs device=cpu.

    python -m bench.gpu_bench [--rows 3000000] [--months 12] [--pipeline-rows 1000000]
                              [--parts pipeline,one_month,twelve_months]

1. The Kedro training pipeline, run twice on the same two synthetic months against the local
   stack (moto S3 + MLflow, no Prefect): `training.device=cuda`, then `training.device=cpu`. It
   checks the device in the node logs and in MLflow (tag `device` of each run) and that the two
   models' validation RMSE are within 1 %.
2. XGBoost training CPU vs GPU with the project's own model code (`TripDurationModel.fit`: zone
   pace, features, XGBoost `hist` with the parameters of conf/base/parameters_training.yml) on
   ROWS (one month) and ROWS x MONTHS rows (a year), each in its own process: wall seconds of the
   XGBoost fit and of the whole fit, peak RSS, peak GPU memory (NVML), validation RMSE on the
   following month. Reported as GPU/CPU ratios.

All data are synthetic (trip_duration.synth): the figures are labelled so in build/bench/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench"
DATA = OUT / "gpu-data"


def _gpu_name() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


# ---------------------------------------------------------------- data
def _months(start: str, count: int) -> list[str]:
    from trip_duration.periods import Month

    months = [Month.parse(start)]
    while len(months) < count:
        months.append(months[-1].next())
    return [str(m) for m in months]


def _month_frame(month: str, rows: int):
    """One synthetic month, through our own ingest nodes (schema + row rules), cached as parquet."""
    import pandas as pd
    import pyarrow.parquet as pq

    from trip_duration.pipelines.ingest.nodes import check_schema, filter_rows
    from trip_duration.schema import RawFile
    from trip_duration.synth import generate_month

    clean = DATA / f"clean_{month}_{rows}.parquet"
    if not clean.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        raw_path = DATA / f"yellow_tripdata_{month}_{rows}.parquet"
        pq.write_table(generate_month(month, rows=rows, seed=42), raw_path)
        raw = RawFile(raw_path.name, str(raw_path), raw_path.read_bytes())
        trips, report = check_schema(raw, {"month": month})
        trips = filter_rows(trips, report, {"month": month})[0]
        trips.to_parquet(clean.with_suffix(".partial"))
        clean.with_suffix(".partial").rename(clean)
        raw_path.unlink()
    return pd.read_parquet(clean)


# ---------------------------------------------------------------- one measurement (child process)
class _GpuMemory:
    """Peak GPU memory of this process, polled through NVML every 50 ms."""

    def __init__(self) -> None:
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (CPU-only machine): nothing to poll
            self._nvml = None
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            try:
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                    if proc.pid == pid and proc.usedGpuMemory:
                        self.peak_mib = max(self.peak_mib or 0.0, proc.usedGpuMemory / 2**20)
            except Exception:
                pass
            self._stop.wait(0.05)

    def __enter__(self):
        if self._nvml:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._nvml:
            self._thread.join()


def _child(device: str, rows: int, months: int, train_start: str) -> dict:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from trip_duration import models
    from trip_duration.features import duration_minutes
    from trip_duration.params import TrainingParams

    names = _months(train_start, months + 1)
    train = pd.concat([_month_frame(m, rows) for m in names[:-1]], ignore_index=True)
    valid = _month_frame(names[-1], rows)
    hyper = TrainingParams().model.model_dump()

    xgb_seconds: list[float] = []
    real_fit = xgb.XGBRegressor.fit

    def timed_fit(self, *args, **kwargs):  # the XGBoost part of TripDurationModel.fit, timed alone
        started = time.perf_counter()
        try:
            return real_fit(self, *args, **kwargs)
        finally:
            xgb_seconds.append(time.perf_counter() - started)

    xgb.XGBRegressor.fit = timed_fit
    target = duration_minutes(train)
    with _GpuMemory() as gpu:
        time.sleep(0.2)
        gpu_before_fit = gpu.peak_mib  # what the imports alone hold on the GPU (CUDA context)
        started = time.perf_counter()
        model = models.TripDurationModel.fit(train, target, hyper, device)
        fit_seconds = time.perf_counter() - started
        # the same fit again in this process: CUDA context and kernels already loaded (a long-lived
        # worker, or the 2nd..Nth model of a tuning run); the first fit is what one flow run pays
        models.TripDurationModel.fit(train, target, hyper, device)
    pred = model.predict(valid)
    return {
        "device": model.trained_on,
        "train_rows": len(train),
        "valid_rows": len(valid),
        "xgboost_fit_seconds": xgb_seconds[0],
        "xgboost_fit_seconds_second_fit": xgb_seconds[1],
        "fit_seconds": fit_seconds,
        "valid_rmse": models.rmse(duration_minutes(valid).to_numpy(), np.asarray(pred)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": gpu.peak_mib,
        "gpu_mib_before_fit": gpu_before_fit,
        "threads": os.cpu_count(),
    }


def _prepare(months: list[str], rows: int) -> None:
    """Generate and ingest the months in parallel (one process per month), before any timing."""
    from concurrent.futures import ProcessPoolExecutor

    todo = [m for m in months if not (DATA / f"clean_{m}_{rows}.parquet").exists()]
    if todo:
        print(f"  preparing {len(todo)} synthetic month(s) of {rows:,d} rows", flush=True)
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            list(pool.map(_prepare_one, todo, [rows] * len(todo)))


def _prepare_one(month: str, rows: int) -> None:
    _month_frame(month, rows)


def _measure(device: str, rows: int, months: int, train_start: str) -> dict:
    argv = [sys.executable, "-m", "bench.gpu_bench", "--child", device, "--rows", str(rows),
            "--months", str(months), "--train-start", train_start]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{device} on {rows}x{months} rows failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {device:4s} {result['train_rows']:>10,d} rows: XGBoost {result['xgboost_fit_seconds']:7.1f}s, "
          f"whole fit {result['fit_seconds']:7.1f}s, RMSE {result['valid_rmse']:.4f}, "
          f"RSS {result['peak_rss_mib']:.0f} MiB, GPU {result['peak_gpu_mib'] or 0:.0f} MiB", flush=True)
    return result


def _compare(cpu: dict, gpu: dict) -> dict:
    return {
        "cpu": cpu,
        "gpu": gpu,
        "xgboost_fit_ratio_gpu_over_cpu": gpu["xgboost_fit_seconds"] / cpu["xgboost_fit_seconds"],
        "xgboost_second_fit_ratio_gpu_over_cpu": gpu["xgboost_fit_seconds_second_fit"]
        / cpu["xgboost_fit_seconds_second_fit"],
        "fit_ratio_gpu_over_cpu": gpu["fit_seconds"] / cpu["fit_seconds"],
        "rmse_relative_difference": abs(gpu["valid_rmse"] - cpu["valid_rmse"]) / cpu["valid_rmse"],
        "peak_rss_ratio_gpu_over_cpu": gpu["peak_rss_mib"] / cpu["peak_rss_mib"],
    }


# ---------------------------------------------------------------- the pipeline on the local stack
def _pipeline(rows: int, devices: tuple[str, ...] = ("cuda", "cpu")) -> dict:
    """kedro run (ingest x2, training with device=cuda then cpu) against moto S3 + MLflow."""
    stack_dir = OUT / "gpu-stack"
    shutil.rmtree(stack_dir, ignore_errors=True)
    env = {**os.environ, "STACK_DIR": str(stack_dir)}
    python = sys.executable
    subprocess.run([python, "-m", "infra.local.stack", "up", "--no-prefect", "--dir", str(stack_dir)],
                   cwd=ROOT, env=env, check=True)
    try:
        from infra.local.stack import Stack

        env.update(Stack.load(stack_dir).env())
        kedro = [python, "-m", "kedro"]  # `kedro run` as in the README
        subprocess.run([python, "-c", "from trip_duration.console import main; main()", "generate", "--month", "2023-03", "--months", "2", "--rows", str(rows)],
                       cwd=ROOT, env=env, check=True)
        for month in ("2023-03", "2023-04"):
            subprocess.run(kedro + ["run", "--pipelines", "ingest", "--params", f"month={month}"],
                           cwd=ROOT, env=env, check=True)
        runs = {}
        for device in devices:
            done = subprocess.run(
                kedro + ["run", "--pipelines", "training", "--params", f"train_month=2023-03,training.device={device}"],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )
            log = done.stdout + done.stderr
            (OUT / f"gpu-pipeline-{device}.log").write_text(log)
            if done.returncode != 0:
                raise RuntimeError(f"training with device={device} failed:\n{log[-3000:]}")
            lines = [line.strip() for line in log.splitlines() if "XGBoost" in line and "train" in line]
            runs[device] = {"log_lines": lines}
            print(f"  training.device={device}: " + " | ".join(lines), flush=True)
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        found = mlflow.search_runs(search_all_experiments=True, order_by=["attributes.start_time ASC"])
        found = found[found["tags.device"].notna()] if "tags.device" in found else found.iloc[0:0]
        for (device, run), (_, row) in zip(runs.items(), found.tail(2).iterrows(), strict=True):
            run.update({"mlflow_run_id": row["run_id"], "mlflow_tag_device": row["tags.device"],
                        "model_rmse": row["metrics.model_rmse"]})
        if set(runs) != {"cuda", "cpu"}:
            return {"rows_per_month": rows, "runs": runs}
        cuda, cpu = runs["cuda"], runs["cpu"]
        return {
            "rows_per_month": rows,
            "runs": runs,
            "device_in_logs": any("on cuda" in line for line in cuda["log_lines"]),
            "device_in_mlflow": cuda["mlflow_tag_device"] == "cuda" and cpu["mlflow_tag_device"] == "cpu",
            "rmse_relative_difference": abs(cuda["model_rmse"] - cpu["model_rmse"]) / cpu["model_rmse"],
        }
    finally:
        subprocess.run([python, "-m", "infra.local.stack", "down", "--dir", str(stack_dir)], cwd=ROOT, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bench")
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows per synthetic month (a real month: ~3M)")
    parser.add_argument("--months", type=int, default=12, help="months of the large run (12 x 3M = 36M rows)")
    parser.add_argument("--pipeline-rows", type=int, default=1_000_000)
    parser.add_argument("--train-start", default="2023-01")
    parser.add_argument("--parts", default="pipeline,one_month,twelve_months",
                        help="comma-separated; results merge into an existing build/bench/gpu.json")
    parser.add_argument("--child", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.rows, args.months, args.train_start)))
        return 0
    gpu = _gpu_name()
    if gpu is None:
        print("bench-gpu needs an NVIDIA GPU (nvidia-smi found none); nothing measured", file=sys.stderr)
        return 2
    import xgboost as xgb

    parts = set(args.parts.split(","))
    previous = json.loads((OUT / "gpu.json").read_text()) if (OUT / "gpu.json").exists() else {}
    report: dict = {
        **previous,
        "data": "synthetic (trip_duration.synth), not TLC records",
        "machine": {"gpu": gpu, "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "xgboost": xgb.__version__,
                    "xgboost_cuda": bool(xgb.build_info().get("USE_CUDA"))},
    }
    if "pipeline" in parts:
        print(f"1. Kedro training pipeline, device=cuda then cpu ({args.pipeline_rows:,d} rows/month, synthetic)")
        report["pipeline"] = _pipeline(args.pipeline_rows)
    for label, months in (("one_month", 1), ("twelve_months", args.months)):
        if label not in parts:
            continue
        print(f"2. XGBoost training, {months} month(s) x {args.rows:,d} rows (synthetic)", flush=True)
        _prepare(_months(args.train_start, months + 1), args.rows)
        cpu = _measure("cpu", args.rows, months, args.train_start)
        cuda = _measure("cuda", args.rows, months, args.train_start)
        report[label] = _compare(cpu, cuda)
    one = report.get("one_month", {})
    report["targets"] = {
        "gpu_over_cpu_at_one_month_le_0.35": one.get("xgboost_fit_ratio_gpu_over_cpu", 1.0) <= 0.35,
        "rmse_within_1pct": one.get("rmse_relative_difference", 1.0) <= 0.01
        and report.get("pipeline", {}).get("rmse_relative_difference", 1.0) <= 0.01,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if "ratio" in kk or "difference" in kk}
                      for k, v in report.items() if k in ("one_month", "twelve_months", "pipeline")}, indent=2))
    print(json.dumps(report["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
