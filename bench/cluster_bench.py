"""Kubernetes benchmark: `infer` as a Job on a real cluster vs the course-style flow deployed the same way.

    python -m bench.cluster_bench [--runs 5] [--cold-build]      # needs a cluster: make cluster-up

In a fresh namespace the README's block "A real cluster on this machine" runs as written
(infra/cluster/kube.py: helm install, make deploy, two synthetic months, train, infer). Then the
course-style flow (bench/course_flow.py: one flow of tasks, the model loaded from the registry on
every run) is deployed to the same work pool and queue, with the `infer` deployment's own job
variables (image, env, requests) and pull steps (the project's bundle from S3, which the
registered model's classes need) plus one for its own file, and the two alternate, one Job at a
time. Each run from `prefect deployment run` to Completed is split into:

- queue wait (created -> Pending: the worker picked it up), Job created, pod scheduled,
  container started (Kubernetes' timestamps: whole seconds), imports + code pull (-> Running),
  flow set-up until the first task, model load, data load, scoring, write (our Kedro timing
  hooks; the course flow's task runs), after the last task.

Overhead is everything but scoring. Also: each image's size, the cluster's memory (control plane
and node agents by RSS; pods by their cgroups), `cluster-up` when running, and after `cluster-down`
(warm: binaries and Go caches kept); with --cold-build, the build with empty GOCACHE/GOMODCACHE.

build/bench/cluster.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.orchestration_bench import phases
from infra.cluster import images
from infra.cluster.kube import OURS, ROOT, Cluster, ReadmeRun, api, find, pause_schedules, run_deployment, wait_final
from infra.deployments import SCHEDULED

OUT = ROOT / "build" / "bench"
BUCKET = "trip-duration"
COURSE_FOLDER = "code/course-flow"
CLUSTER_SH = ROOT / "infra" / "cluster" / "cluster.sh"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def kubernetes_phases(cluster: Cluster, run_id: str, pending: datetime, running: datetime) -> dict[str, float]:
    """Pending -> Running, split by the Job's and the pod's own timestamps (whole seconds)."""
    cluster.kubectl("wait", "--for=condition=Complete", "job", "-l", f"prefect.io/flow-run-id={run_id}", "--timeout=180s")
    (job,) = cluster.json("get", "jobs", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    (pod,) = cluster.json("get", "pods", "-l", f"prefect.io/flow-run-id={run_id}")["items"]
    created = _ts(job["metadata"]["creationTimestamp"])
    scheduled = _ts(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"))
    state = pod["status"]["containerStatuses"][0]["state"]
    started = _ts((state.get("terminated") or state.get("running"))["startedAt"])
    return {
        "worker_submit_until_job_created": (created - pending).total_seconds(),
        "job_created_until_pod_scheduled": (scheduled - created).total_seconds(),
        "pod_scheduled_until_container_started": (started - scheduled).total_seconds(),
        "container_start_imports_and_code_pull": (running - started).total_seconds(),
        "node": pod["spec"]["nodeName"],
    }


def measure(cluster: Cluster, env: dict, deployment: str, parameters: dict, ours: bool) -> dict:
    run_id = run_deployment(env, deployment, parameters)
    run = wait_final(env, run_id, timeout=900, poll=1)
    assert run["state"]["type"] == "COMPLETED", f"{deployment} run {run_id} ended {run['state']}"
    out = phases(run_id, ours=ours)
    states = api(env, "GET", f"/flow_run_states/?flow_run_id={run_id}")
    first = {}
    for st in sorted(states, key=lambda st: st["timestamp"]):
        first.setdefault(st["name"], _ts(st["timestamp"]))
    out.update(kubernetes_phases(cluster, run_id, first["Pending"], first["Running"]))
    out["flow_run_id"] = run_id
    return out


def deploy_course(env: dict, s3) -> None:
    """The course flow on the same pool and queue as `infer`, with its job variables, code pulled from S3."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    from bench.course_flow import course_inference

    s3.upload_file(str(ROOT / "bench" / "course_flow.py"), BUCKET, f"{COURSE_FOLDER}/course_flow.py")
    infer = api(env, "GET", "/deployments/name/inference/infer")
    # infer's own pull steps (the project's bundle: the registered model unpickles trip_duration's
    # classes, so the course flow needs that code too), then the course flow's file
    pull = [*infer["pull_steps"], {"prefect_aws.deployments.steps.pull_from_s3": {
        "id": "pull_course", "requires": "prefect-aws>=0.7", "bucket": BUCKET, "folder": COURSE_FOLDER}}]
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(course_inference.name)
        client.create_deployment(
            flow_id=flow_id, name="course", work_pool_name=infer["work_pool_name"],
            work_queue_name=infer["work_queue_name"], entrypoint="course_flow.py:course_inference",
            pull_steps=pull, job_variables=infer["job_variables"],
            parameter_openapi_schema=parameter_schema(course_inference).model_dump_for_openapi())


def image_sizes() -> dict[str, int]:
    sizes = {}
    for tag in (images.BASE, *images.ALL):
        out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True)
        if out.returncode == 0:
            sizes[tag] = int(out.stdout.strip())
    return sizes


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cluster_memory() -> dict:
    """Our cluster only: its processes by RSS, its pods by cgroup (each node's cgroupRoot /td-<node>)."""
    processes = {}
    for pidfile in sorted((OURS / "run").glob("*.pid")):
        processes[pidfile.stem] = _rss(int(pidfile.read_text().strip() or 0))
    pods = {}
    for node in ("cpu", "gpu"):
        for root in (Path(f"/sys/fs/cgroup/memory/td-{node}"), Path(f"/sys/fs/cgroup/td-{node}")):
            stat = root / "memory.stat"
            if stat.exists():
                values = dict(line.split() for line in stat.read_text().splitlines())
                rss = values.get("total_rss") or values.get("anon")  # v1 / v2
                cache = values.get("total_cache") or values.get("file")
                pods[node] = {"rss": int(rss), "page_cache": int(cache)}
                break
    mib = 1024 * 1024
    return {
        "processes_rss_mib": {k: round(v / mib) for k, v in processes.items()},
        "processes_rss_total_mib": round(sum(processes.values()) / mib),
        "pods_rss_mib": {k: round(v["rss"] / mib) for k, v in pods.items()},
        "pods_rss_total_mib": round(sum(v["rss"] for v in pods.values()) / mib),
        "pods_page_cache_mib": {k: round(v["page_cache"] / mib) for k, v in pods.items()},
        "note": "pods: the chart's (server, PostgreSQL, MLflow, two workers), the test S3 and finished flow-run pods",
    }


def _timed(argv: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return round(time.monotonic() - started, 1)


def cluster_up_times(cold_build: bool) -> dict:
    out = {"up_when_running_s": _timed([str(CLUSTER_SH), "up"])}
    _timed([str(CLUSTER_SH), "down"])
    out["up_after_down_s (warm: binaries kept)"] = _timed([str(CLUSTER_SH), "up"])
    if cold_build:
        with tempfile.TemporaryDirectory(prefix="td-cold-build-") as tmp:
            env = {**os.environ, "GOCACHE": f"{tmp}/cache", "GOMODCACHE": f"{tmp}/mod", "GOFLAGS": "-modcacherw"}
            out["build_cold_s (empty GOCACHE/GOMODCACHE)"] = _timed(["bash", str(ROOT / "infra" / "cluster" / "build.sh"),
                                                                      f"{tmp}/bin"], env=env)
    return out


def summarise(samples: dict[str, list[dict]]) -> dict:
    """Medians per phase, and the ratios ours / course (overhead: all but scoring)."""
    for runs in samples.values():
        for sample in runs:  # the worker's poll (every 10 s by default) is a wait both sides share at random
            sample["overhead_after_pickup"] = sample["overhead"] - sample["queue_wait"]
    numeric = [k for k, v in samples["ours"][0].items() if isinstance(v, (int, float))]
    median = {side: {k: round(statistics.median(s[k] for s in runs), 3) for k in numeric} for side, runs in samples.items()}

    def ratio(key: str) -> float:
        return round(median["ours"][key] / median["course"][key], 3)

    return {
        "median_seconds": median,
        "overhead_ratio_ours_over_course": ratio("overhead"),
        "overhead_after_pickup_ratio_ours_over_course": ratio("overhead_after_pickup"),
        "total_ratio_ours_over_course": ratio("total"),
        "target_overhead_at_most_half": median["ours"]["overhead"] <= 0.5 * median["course"]["overhead"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_bench")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold-build", action="store_true",
                        help="also time the cluster's build with empty Go caches (~12 min on 2 cores)")
    args = parser.parse_args(argv)
    cluster = find("td-bench")
    if cluster is None:
        print("cluster bench: no cluster answers (make cluster-up, or KUBECONFIG)", file=sys.stderr)
        return 2
    report: dict = {"cluster": cluster.kind, "runs_each": args.runs}
    if cluster.kind == "ours":
        report["cluster_up"] = cluster_up_times(args.cold_build)
    OUT.mkdir(parents=True, exist_ok=True)
    readme = ReadmeRun(cluster, OUT / "cluster-readme-block.log")
    samples: dict[str, list[dict]] = {"ours": [], "course": []}
    try:
        if cluster.kind == "ours":
            cluster.sh(str(CLUSTER_SH), "volumes")
        readme.run()
        report["readme_block_s (images, helm install, deploy, generate, train, infer)"] = round(readme.seconds)
        env = readme.env()
        os.environ.update({k: env[k] for k in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                                              "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        pause_schedules(env, *SCHEDULED)
        import boto3  # noqa: PLC0415

        deploy_course(env, boto3.client("s3"))
        variants = {"ours": ("inference/infer", {"batch_month": "2023-02"}, True),
                    "course": ("course-inference/course", {"month": "2023-02"}, False)}
        for round_no in range(args.runs):
            for name, (deployment, parameters, ours) in variants.items():
                samples[name].append(measure(cluster, env, deployment, parameters, ours))
                print(f"round {round_no + 1}/{args.runs} {name:7s} total {samples[name][-1]['total']:6.2f} s "
                      f"overhead {samples[name][-1]['overhead']:6.2f} s", flush=True)
        if cluster.kind == "ours":
            report["memory"] = cluster_memory()
    finally:
        readme.close()
        cluster.sh("helm", "uninstall", "td", "-n", cluster.ns, "--wait", "--timeout", "5m", check=False)
        cluster.sh("kubectl", "delete", "namespace", cluster.ns, "--wait=true", "--timeout=300s", check=False)
    report.update(summarise(samples))
    report.update({"image_bytes": image_sizes(), "samples": samples,
                   "data": "synthetic (trip_duration.synth), 100 000 trips a month"})
    (OUT / "cluster.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
