"""Orchestration benchmark: `infer` on the local stack vs the same job written the course's way.

    python -m bench.orchestration_bench [--runs 3]

Wall time from `prefect deployment run` to Completed, split into phases from Prefect's
state history, task runs and our Kedro timing hooks. Both deployments run on the same
workers, same stack, same champion model, same batch, alternating. build/bench/orchestration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys

from infra.local.demo import deploy, run_and_wait, write_months
from infra.local.stack import ROOT, Stack, free_port

OUT = ROOT / "build" / "bench"
TIMING = re.compile(r"timing (load|save|node) (\S+) ([0-9.]+)")


def _logs(client, run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    messages, offset = [], 0
    while True:  # the API pages logs 200 at a time
        page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                limit=200, offset=offset)
        messages += [log.message for log in page]
        if len(page) < 200:
            return messages
        offset += 200


def phases(run_id: str, ours: bool) -> dict[str, float]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        states = {s.name: s.timestamp for s in client.read_flow_run_states(run_id)}
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        messages = _logs(client, run_id)
    created, end = run.created, run.end_time
    pending, running = states["Pending"], states["Running"]
    first_task = min(t.start_time for t in tasks)
    last_task = max(t.end_time for t in tasks)
    out = {
        "total": (end - created).total_seconds(),
        "queue_wait": (pending - created).total_seconds(),
        "process_start_imports_and_code_pull": (running - pending).total_seconds(),
        "flow_setup_until_first_task": (first_task - running).total_seconds(),
        "after_last_task": (end - last_task).total_seconds(),
    }
    if ours:
        timing = {(k, n): float(s) for k, n, s in (TIMING.search(m).groups() for m in messages if TIMING.search(m))}
        out["model_load"] = timing.get(("load", "champion_model"), 0.0)
        out["data_load"] = timing.get(("load", "batch_trips"), 0.0)
        node = timing.get(("node", "score_batch"), 0.0)
        out["scoring"] = node
        out["write"] = timing.get(("save", "predictions"), 0.0) + timing.get(("save", "inference_summary"), 0.0)
    else:
        by_name = {t.name.split("-")[0]: t.total_run_time.total_seconds() for t in tasks}
        out["data_load"] = by_name.get("read_batch", 0.0)
        out["model_load"] = by_name.get("load_model", 0.0)
        out["scoring"] = by_name.get("predict", 0.0)
        out["write"] = by_name.get("write", 0.0)
    out["overhead"] = out["total"] - out["scoring"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    root = OUT / "stack"
    shutil.rmtree(root, ignore_errors=True)  # a fresh stack each run
    stack = Stack(root=root, s3_port=free_port(), mlflow_port=free_port(), prefect_port=free_port(), bucket="bench")
    try:
        stack.up()
        os.environ.update(stack.env())
        write_months(stack, rows=args.rows)
        deploy(stack)
        from bench.course_flow import course_inference

        course_inference.from_source(source=str(ROOT), entrypoint="bench/course_flow.py:course_inference").deploy(
            name="course", work_pool_name="local", work_queue_name="cpu", build=False, push=False,
            job_variables={"env": {"TRIP_DURATION_BUCKET": stack.bucket}},
        )
        state, _, _ = run_and_wait("training/train", {"train_month": "2023-01"})
        assert state == "Completed", f"training run ended {state}"
        samples: dict[str, list[dict]] = {"ours": [], "course": []}
        for _ in range(args.runs):
            state, _, rid = run_and_wait("inference/infer", {"batch_month": "2023-02"})
            assert state == "Completed"
            samples["ours"].append(phases(rid, ours=True))
            state, _, rid = run_and_wait("course-inference/course", {"month": "2023-02"})
            assert state == "Completed"
            samples["course"].append(phases(rid, ours=False))
    finally:
        stack.down()
    median = {side: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for side, runs in samples.items()}
    report = {
        "runs_each": args.runs,
        "rows_per_month": args.rows,
        "median_seconds": median,
        "samples": samples,
        "overhead_ratio_ours_over_course": median["ours"]["overhead"] / median["course"]["overhead"],
        "total_ratio_ours_over_course": median["ours"]["total"] / median["course"]["total"],
        "target_overhead_at_most_half": median["ours"]["overhead"] <= 0.5 * median["course"]["overhead"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "orchestration.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
