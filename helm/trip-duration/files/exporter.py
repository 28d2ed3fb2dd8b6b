"""Prometheus metrics of the platform's work pool, read from the Prefect API at each scrape.

    python exporter.py            # serves http://0.0.0.0:$TRIP_DURATION_METRICS_PORT/metrics (9464)

The chart's `<release>-trip-duration-metrics` Deployment runs it (`metrics.enabled`); the local stack
can too. Every series is computed from the API when Prometheus scrapes (no state here, nothing lost
on a restart); runs counted are those expected to start in the last TRIP_DURATION_METRICS_WINDOW_S
seconds (86400), except the waiting ones, counted however old:

  trip_duration_flow_runs{deployment,state}                  runs in the window by deployment and state name
  trip_duration_work_queue_waiting_runs{queue}               runs due that have not started (Scheduled/Late past their
                                                             time, Pending): the queue's depth
  trip_duration_work_queue_oldest_wait_seconds{queue}        how long the oldest of them has waited (0: none)
  trip_duration_work_queue_wait_to_start_seconds{queue,stat} start time - expected start time of the runs that
                                                             started in the window (stat: mean, max; 0: none)
  trip_duration_gpu_queue_run_seconds{deployment}            seconds runs on the gpu queue were Running (each asks for
                                                             one GPU: GPU-seconds), in the window
  trip_duration_gpu_queue_runs{deployment}                   those runs (GPU-seconds per run = the ratio)
  trip_duration_prefect_api_up                               1 when the API answered this scrape

Settings: PREFECT_API_URL, PREFECT_API_AUTH_STRING (server) or PREFECT_API_KEY (Cloud),
TRIP_DURATION_WORK_POOL, TRIP_DURATION_GPU_QUEUE (gpu). Standard library, httpx and prometheus_client
(all in the image).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import sys
import time
from collections import Counter, defaultdict

import httpx
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

PAGE = 200


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class PrefectApi:
    def __init__(self, url: str, auth_string: str = "", api_key: str = "", timeout: float = 20) -> None:
        headers = {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        elif auth_string:
            headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        self.http = httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=timeout)

    def post(self, path: str, body: dict) -> list | dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def flow_runs(self, body: dict) -> list[dict]:
        runs: list[dict] = []
        while True:
            page = self.post("flow_runs/filter", {**body, "limit": PAGE, "offset": len(runs)})
            runs.extend(page)
            if len(page) < PAGE:
                return runs

    def names(self, deployment_ids: set[str]) -> dict[str, str]:
        """deployment id -> "flow/deployment", Prefect's own way of naming a deployment."""
        if not deployment_ids:
            return {}
        deployments = self.post("deployments/filter", {"deployments": {"id": {"any_": sorted(deployment_ids)}}})
        flows = {f["id"]: f["name"] for f in self.post(
            "flows/filter", {"flows": {"id": {"any_": sorted({d["flow_id"] for d in deployments})}}})}
        return {d["id"]: f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in deployments}


class PoolCollector:
    def __init__(self, api: PrefectApi, pool: str, gpu_queue: str = "gpu", window_s: float = 86400,
                 now=lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.api, self.pool, self.gpu_queue, self.window_s, self.now = api, pool, gpu_queue, window_s, now

    def collect(self):
        up = GaugeMetricFamily("trip_duration_prefect_api_up", "1 when the Prefect API answered this scrape")
        try:
            families = self._families()
        except (httpx.HTTPError, KeyError, ValueError) as err:
            print(f"exporter: the Prefect API did not answer: {err}", file=sys.stderr, flush=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[GaugeMetricFamily]:
        now = self.now()
        pool = {"work_pools": {"name": {"any_": [self.pool]}}}
        queues = sorted(q["name"] for q in self.api.post(f"work_pools/{self.pool}/queues/filter", {}))
        since = (now - dt.timedelta(seconds=self.window_s)).isoformat()
        recent = self.api.flow_runs({**pool, "flow_runs": {"expected_start_time": {"after_": since}}})
        waiting = self.api.flow_runs({**pool, "flow_runs": {
            "state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}, "expected_start_time": {"before_": now.isoformat()}}})
        names = self.api.names({r["deployment_id"] for r in recent + waiting if r.get("deployment_id")})

        def name(run: dict) -> str:
            return names.get(run.get("deployment_id") or "", "(no deployment)")

        by_state = GaugeMetricFamily("trip_duration_flow_runs", "Flow runs expected to start in the window, by "
                                     "deployment and state", labels=["deployment", "state"])
        for (deployment, state), n in sorted(Counter((name(r), r["state_name"] or r["state_type"]) for r in recent).items()):
            by_state.add_metric([deployment, state], n)

        depth = GaugeMetricFamily("trip_duration_work_queue_waiting_runs", "Runs due that have not started",
                                  labels=["queue"])
        oldest = GaugeMetricFamily("trip_duration_work_queue_oldest_wait_seconds",
                                   "Seconds the oldest run due and not started has waited", labels=["queue"])
        waits: dict[str, list[float]] = defaultdict(list)
        for run in waiting:
            waits[run.get("work_queue_name") or "?"].append((now - _time(run["expected_start_time"])).total_seconds())
        start = GaugeMetricFamily("trip_duration_work_queue_wait_to_start_seconds",
                                  "Start time minus expected start time of runs that started in the window",
                                  labels=["queue", "stat"])
        started: dict[str, list[float]] = defaultdict(list)
        for run in recent:
            if run.get("start_time") and run.get("expected_start_time"):
                delay = (_time(run["start_time"]) - _time(run["expected_start_time"])).total_seconds()
                started[run.get("work_queue_name") or "?"].append(max(delay, 0.0))
        for queue in sorted(set(queues) | set(waits) | set(started)):
            depth.add_metric([queue], len(waits[queue]))
            oldest.add_metric([queue], max(waits[queue], default=0.0))
            delays = started[queue]
            start.add_metric([queue, "mean"], sum(delays) / len(delays) if delays else 0.0)
            start.add_metric([queue, "max"], max(delays, default=0.0))

        gpu_s = GaugeMetricFamily("trip_duration_gpu_queue_run_seconds", "Seconds runs on the gpu queue were Running "
                                  "(one GPU each: GPU-seconds), in the window", labels=["deployment"])
        gpu_n = GaugeMetricFamily("trip_duration_gpu_queue_runs", "Runs on the gpu queue that ran, in the window",
                                  labels=["deployment"])
        seconds: dict[str, float] = defaultdict(float)
        count: Counter = Counter()
        for run in recent:
            if run.get("work_queue_name") == self.gpu_queue and run.get("start_time"):
                seconds[name(run)] += float(run.get("total_run_time") or 0.0)
                count[name(run)] += 1
        for deployment in sorted(seconds):
            gpu_s.add_metric([deployment], seconds[deployment])
            gpu_n.add_metric([deployment], count[deployment])
        return [by_state, depth, oldest, start, gpu_s, gpu_n]


def main() -> int:
    env = os.environ
    if not env.get("PREFECT_API_URL") or not env.get("TRIP_DURATION_WORK_POOL"):
        print("exporter: set PREFECT_API_URL and TRIP_DURATION_WORK_POOL", file=sys.stderr)
        return 2
    api = PrefectApi(env["PREFECT_API_URL"], env.get("PREFECT_API_AUTH_STRING", ""), env.get("PREFECT_API_KEY", ""))
    REGISTRY.register(PoolCollector(api, env["TRIP_DURATION_WORK_POOL"], env.get("TRIP_DURATION_GPU_QUEUE", "gpu"),
                                    float(env.get("TRIP_DURATION_METRICS_WINDOW_S", "86400"))))
    port = int(env.get("TRIP_DURATION_METRICS_PORT", "9464"))
    start_http_server(port, addr=env.get("TRIP_DURATION_METRICS_ADDR", "0.0.0.0"))
    print(f"exporter: serving /metrics on port {port} for work pool {env['TRIP_DURATION_WORK_POOL']}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
