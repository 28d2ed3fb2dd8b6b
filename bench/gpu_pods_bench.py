"""GPU-pod seconds per training run on a real cluster: only the fit on the GPU (the split) vs the whole training
run in one GPU pod, same data, same cluster, alternating.

    python -m bench.gpu_pods_bench [--runs 3] [--rows 100000 500000]      # needs a cluster: make cluster-up

In a fresh namespace the README's block "A real cluster on this machine" runs as written (infra/cluster/kube.py).
Then, for each size (synthetic months of that many trips, written by `trip-duration generate`), training runs
alternate, one at a time, after one warm-up of each:

- **split** (what prefect.yaml deploys): `train` on the cpu queue; its one `fit` run on the gpu queue;
- **one pod** (before the split): `train` with `fit_on=this-pod` on the gpu queue, with the `fit`
  deployment's GPU job variables (one `nvidia.com/gpu`, the node selector and toleration).

Every pod asks for 500m CPU and 2 GiB (the test nodes share 2 cores). A GPU pod's seconds run from Kubernetes'
PodScheduled (the GPU is the pod's from then on) to its container's finishedAt: what a cloud bills for a GPU
held. Also the training run's wall time (Prefect's start to end).

build/bench/gpu-pods.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime

from infra.cluster.kube import (ROOT, Cluster, ReadmeRun, api, find, fit_runs, pause_schedules, run_deployment,
                                wait_final)
from infra.deployments import SCHEDULED

OUT = ROOT / "build" / "bench"
CLUSTER_SH = ROOT / "infra" / "cluster" / "cluster.sh"
SMALL = {"cpu_request": "500m", "memory_request": "2Gi"}
#: a month pair per size, so that each size trains on its own data
MONTHS = {100_000: "2023-01", 500_000: "2023-05", 1_000_000: "2023-08"}


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def gpu_pod_seconds(cluster: Cluster, run_id: str) -> dict:
    """PodScheduled -> the container's finishedAt of the (one) pod of ``run_id``, and where it ran."""
    cluster.kubectl("wait", "--for=condition=Complete", "job", "-l", f"prefect.io/flow-run-id={run_id}",
                    "--timeout=300s")
    (pod,) = cluster.json("get", "pods", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    scheduled = _ts(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"))
    finished = _ts(pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    limits = pod["spec"]["containers"][0]["resources"].get("limits", {})
    assert limits.get("nvidia.com/gpu") == "1", f"flow run {run_id}'s pod holds no GPU: {limits}"
    return {"gpu_pod_seconds": (finished - scheduled).total_seconds(), "gpu_node": pod["spec"]["nodeName"]}


def gpu_job_variables(env: dict) -> dict:
    """The `fit` deployment's GPU job variables (what the one-pod variant needs to hold a GPU), made small."""
    fit = api(env, "GET", "/deployments/name/training-fit/fit")["job_variables"]
    return {**{k: fit[k] for k in ("gpu_limit", "node_selector", "tolerations")}, **SMALL}


def measure(cluster: Cluster, env: dict, variant: str, month: str) -> dict:
    if variant == "split":
        run_id = run_deployment(env, "training/train", {"train_month": month, "fit_job_variables": SMALL}, SMALL)
    else:
        run_id = run_deployment(env, "training/train", {"train_month": month, "fit_on": "this-pod"},
                                gpu_job_variables(env), work_queue_name="gpu")
    run = wait_final(env, run_id, timeout=1800, poll=1)
    assert run["state"]["type"] == "COMPLETED", f"{variant} run {run_id} ended {run['state']}"
    fits = fit_runs(env, run_id)
    if variant == "split":
        assert len(fits) == 1, f"split run {run_id} started {len(fits)} fits"
        gpu = gpu_pod_seconds(cluster, fits[0]["id"])
    else:
        assert not fits, f"one-pod run {run_id} started a fit"
        gpu = gpu_pod_seconds(cluster, run_id)
    wall = (_ts(run["end_time"]) - _ts(run["start_time"])).total_seconds()
    return {"flow_run_id": run_id, "training_run_wall_seconds": round(wall, 2), **gpu}


def summarise(samples: dict[int, dict[str, list[dict]]]) -> dict:
    out = {}
    for rows, by_variant in samples.items():
        median = {variant: {key: statistics.median(s[key] for s in runs)
                            for key in ("gpu_pod_seconds", "training_run_wall_seconds")}
                  for variant, runs in by_variant.items()}
        out[str(rows)] = {
            "median_seconds": median,
            "gpu_pod_seconds_ratio_split_over_one_pod": round(
                median["split"]["gpu_pod_seconds"] / median["one_pod"]["gpu_pod_seconds"], 3),
            "training_wall_ratio_split_over_one_pod": round(
                median["split"]["training_run_wall_seconds"] / median["one_pod"]["training_run_wall_seconds"], 3),
        }
    return out


def generate(env: dict, month: str, rows: int) -> None:
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "trip-duration"), "generate", "--month", month, "--months", "2",
                           "--rows", str(rows)], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"trip-duration generate --month {month} --rows {rows}: {done.stdout[-2000:]}{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_pods_bench")
    parser.add_argument("--runs", type=int, default=3, help="measured runs of each variant per size (after a warm-up)")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 500_000], choices=sorted(MONTHS),
                        help="trips a month")
    args = parser.parse_args(argv)
    cluster = find("td-gpupods")
    if cluster is None:
        print("gpu-pods bench: no cluster answers (make cluster-up, or KUBECONFIG)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    readme = ReadmeRun(cluster, OUT / "gpu-pods-readme-block.log")
    samples: dict[int, dict[str, list[dict]]] = {}
    try:
        if cluster.kind == "ours":
            cluster.sh(str(CLUSTER_SH), "volumes")
        readme.run()
        env = readme.env()
        pause_schedules(env, *SCHEDULED)
        for rows in args.rows:
            month = MONTHS[rows]
            if month != "2023-01":  # the README's block wrote 2023-01 and 2023-02 with 100 000 trips
                generate(env, month, rows)
            samples[rows] = {"split": [], "one_pod": []}
            for round_no in range(args.runs + 1):
                for variant in ("split", "one_pod"):
                    sample = measure(cluster, env, variant, month)
                    print(f"{rows} trips, round {round_no}{' (warm-up)' if round_no == 0 else ''} {variant:8s} "
                          f"GPU pod {sample['gpu_pod_seconds']:6.1f} s, training run {sample['training_run_wall_seconds']:6.1f} s",
                          flush=True)
                    if round_no:
                        samples[rows][variant].append(sample)
    finally:
        readme.close()
        cluster.sh("helm", "uninstall", "td", "-n", cluster.ns, "--wait", "--timeout", "5m", check=False)
        cluster.sh("kubectl", "delete", "namespace", cluster.ns, "--wait=true", "--timeout=300s", check=False)
    report = {
        "cluster": cluster.kind,
        "runs_each": args.runs,
        "resources": "every pod 500m CPU, 2 GiB (the cluster's nodes share 2 cores)",
        "gpu_pod_seconds": "PodScheduled -> the container's finishedAt, of the pod that holds nvidia.com/gpu",
        "data": "synthetic (trip_duration.synth)",
        "by_trips_a_month": summarise(samples),
        "samples": {str(k): v for k, v in samples.items()},
    }
    (OUT / "gpu-pods.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
