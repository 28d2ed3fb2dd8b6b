"""What keeping a pod's output in S3 costs a flow run: the same command direct and through `pod_log.py tee`.

    python -m bench.pod_log_bench [--runs 7]

The chart runs every flow-run container's command through infra/pod_log.py `tee` (README, "Logs that
outlive pods"), beside a `ship` sidecar that uploads the copy to S3. Two commands, alternating within
each round, each run direct (the baseline) and through tee (with the sidecar running against a moto S3
on 127.0.0.1, as in the pod):

- ``prefect_start``: what an `infer` pod does before its flow: start Python and import Prefect, Kedro
  and the project's pipelines, then log a few hundred lines (about what one infer run prints);
- ``loud``: 200 000 lines (about 20 MB): far more output than any of our runs, the copy's worst case.

Medians of wall seconds and their ratio (through tee / direct). build/bench/pod-log.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from infra.local.stack import ROOT, Stack, free_port

OUT = ROOT / "build" / "bench"
POD_LOG = [sys.executable, "-I", str(ROOT / "infra" / "pod_log.py")]
COMMANDS = {
    "prefect_start": [sys.executable, "-c", (
        "import sys; sys.path[:0] = ['src', '.']\n"
        "import prefect, kedro, flows.inference\n"
        "for i in range(400): print(f'12:00:00.000 | INFO | Task run node-{i} - Running node: n{i}', flush=True)")],
    "loud": [sys.executable, "-c", "import sys\nfor i in range(200_000): sys.stdout.write(f'line {i:>8} ' + 'x' * 80 + '\\n')"],
}


def _timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.pod_log_bench")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(root=Path(tmp) / "stack", s3_port=free_port(), mlflow_port=free_port(),
                      prefect_port=free_port(), bucket="bench-pod-log")
        stack.up(prefect=False)
        try:
            env = {**os.environ, **stack.env(), "TRIP_DURATION_LOG_FLOW": "bench", "TRIP_DURATION_LOG_DEPLOYMENT": "tee"}
            samples: dict[str, dict[str, list[float]]] = {n: {"direct": [], "tee": []} for n in COMMANDS}
            for _ in range(args.runs):
                for name, command in COMMANDS.items():
                    samples[name]["direct"].append(_timed(command, env))
                    log = Path(tmp) / f"{uuid.uuid4()}.log"
                    pod_env = {**env, "TRIP_DURATION_LOG_FLOW_RUN_ID": str(uuid.uuid4())}
                    sidecar = subprocess.Popen([*POD_LOG, "ship", "--file", str(log), "--every", "30"], env=pod_env,
                                               stderr=subprocess.DEVNULL)
                    samples[name]["tee"].append(_timed([*POD_LOG, "tee", "--file", str(log), "--await-shipper", "10",
                                                        "--", *command], pod_env))
                    sidecar.send_signal(signal.SIGTERM)
                    sidecar.wait(timeout=60)
        finally:
            stack.down()
    result = {"runs": args.runs, "python": sys.version.split()[0], "results": {}}
    for name, by in samples.items():
        direct, tee = statistics.median(by["direct"]), statistics.median(by["tee"])
        result["results"][name] = {"direct_s": round(direct, 4), "tee_s": round(tee, 4),
                                   "ratio_tee_over_direct": round(tee / direct, 3), "samples": by}
        print(f"{name}: direct {direct:.3f} s, through tee {tee:.3f} s: {tee / direct:.3f}x", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pod-log.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT / 'pod-log.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
