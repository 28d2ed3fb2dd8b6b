"""What a flow run's pod used and cost: wall seconds by kind (GPU or CPU), the resources it requested,
and, with a price table, its cost in USD.

The pod says what it requested through its environment (the chart's base job template):
``TRIP_DURATION_POD_CPU_MILLICORES`` and ``TRIP_DURATION_POD_MEMORY_MIB`` from the Kubernetes downward
API (``requests.cpu``, ``requests.memory``), ``TRIP_DURATION_POD_GPUS`` from the job's ``gpu_limit``
(the downward API does not expose extended resources). Prices come from the chart's values
``cost.gpuHourUsd`` (per GPU-hour) and ``cost.cpuHourUsd`` (per requested core-hour), as
``TRIP_DURATION_COST_GPU_HOUR_USD`` / ``TRIP_DURATION_COST_CPU_HOUR_USD``:

    cost = wall hours x (GPUs x gpuHourUsd + requested cores x cpuHourUsd)

Wall seconds run from the flow-run container's start (its PID 1) to the moment the flow writes its report.
Outside a pod (the local stack's process workers) they run from the flow-run process's start, and
nothing was requested: the cost is then unknown, and said so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trip_duration.errors import ConfigError

CPU_ENV, MEMORY_ENV, GPUS_ENV = "TRIP_DURATION_POD_CPU_MILLICORES", "TRIP_DURATION_POD_MEMORY_MIB", "TRIP_DURATION_POD_GPUS"
GPU_PRICE_ENV, CPU_PRICE_ENV = "TRIP_DURATION_COST_GPU_HOUR_USD", "TRIP_DURATION_COST_CPU_HOUR_USD"


def _number(env: Mapping[str, str], name: str, fix: str) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or value != value:  # negative or NaN
        raise ConfigError(f"{name}={raw!r} is not a non-negative number: {fix}")
    return value


_IMPORTED = time.time()


def _started_at(in_pod: bool) -> float:
    """Epoch seconds when the flow-run container started (in a pod: its PID 1) or, elsewhere, this process."""
    pid = "1" if in_pod else "self"
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):  # not Linux: from this module's import
        return _IMPORTED



@dataclass(frozen=True)
class PodUsage:
    """One flow-run pod: how long it has run, and what it asked for (None: not known)."""

    seconds: float
    cpus: float | None
    memory_mib: float | None
    gpus: int

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus > 0 else "cpu"

    @property
    def requested(self) -> str:
        """``1 GPU, 4 CPU, 16384 MiB``; what was not requested or is not known is left out."""
        return ", ".join(part for part in (
            f"{self.gpus} GPU" if self.gpus else None,
            f"{self.cpus:g} CPU" if self.cpus is not None else None,
            f"{self.memory_mib:g} MiB" if self.memory_mib is not None else None,
        ) if part) or "nothing (not a pod of the chart's work pool)"

    @classmethod
    def of_this_run(cls, env: Mapping[str, str] | None = None, now: float | None = None) -> PodUsage:
        env = os.environ if env is None else env
        fix = "the chart's base job template sets it from the pod's resources; unset it to leave it unknown"
        millicores = _number(env, CPU_ENV, fix)
        gpus = _number(env, GPUS_ENV, fix)
        in_pod = bool(env.get("KUBERNETES_SERVICE_HOST")) and millicores is not None
        now = time.time() if now is None else now
        return cls(
            seconds=max(0.0, now - _started_at(in_pod)),
            cpus=None if millicores is None else millicores / 1000,
            memory_mib=_number(env, MEMORY_ENV, fix),
            gpus=int(gpus or 0),
        )


@dataclass(frozen=True)
class Prices:
    gpu_hour_usd: float | None
    cpu_hour_usd: float | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Prices:
        env = os.environ if env is None else env
        return cls(
            gpu_hour_usd=_number(env, GPU_PRICE_ENV, "set the chart's cost.gpuHourUsd to a price in USD, e.g. 2.5"),
            cpu_hour_usd=_number(env, CPU_PRICE_ENV, "set the chart's cost.cpuHourUsd to a price in USD, e.g. 0.04"),
        )


def cost_usd(usage: PodUsage, prices: Prices) -> tuple[float | None, str]:
    """The pod's cost and how it was reached, or None and what is missing."""
    missing = []
    if usage.cpus is None:
        missing.append("the pod's CPU request (not run in a pod of the chart's work pool)")
    if prices.cpu_hour_usd is None:
        missing.append("cost.cpuHourUsd")
    if usage.gpus and prices.gpu_hour_usd is None:
        missing.append("cost.gpuHourUsd")
    if missing:
        return None, "unknown, missing " + "; ".join(missing)
    hours = usage.seconds / 3600
    gpu_part = usage.gpus * (prices.gpu_hour_usd or 0.0)
    total = hours * (gpu_part + usage.cpus * prices.cpu_hour_usd)
    how = (f"{hours:.4f} h x ({usage.gpus} GPU x ${prices.gpu_hour_usd or 0:g} + "
           f"{usage.cpus:g} CPU x ${prices.cpu_hour_usd:g})")
    return round(total, 6), how


@dataclass(frozen=True)
class PodCost:
    """One pod of a run (``label``: which), its usage and its cost (None: unknown, ``how`` says why)."""

    label: str
    usage: PodUsage
    cost: float | None
    how: str

    def usage_line(self) -> str:
        """``gpu, 12.0 s, requested 1 GPU, 4 CPU, 16384 MiB; cost $0.0083`` (the run's log line)."""
        money = f"${self.cost:.4f}" if self.cost is not None else self.how
        return f"{self.usage.kind}, {self.usage.seconds:.1f} s, requested {self.usage.requested}; cost {money}"

    def to_json(self) -> dict:
        """What a fit pod leaves beside its model (usage.json) for the training run to count."""
        return {"seconds": self.usage.seconds, "cpus": self.usage.cpus, "memory_mib": self.usage.memory_mib,
                "gpus": self.usage.gpus, "cost_usd": self.cost, "how": self.how}

    @classmethod
    def from_json(cls, data: object, label: str) -> PodCost:
        if not isinstance(data, dict):
            raise ConfigError(f"{label}: its usage record is a {type(data).__name__}, not an object")
        try:
            usage = PodUsage(seconds=float(data["seconds"]),
                             cpus=None if data["cpus"] is None else float(data["cpus"]),
                             memory_mib=None if data["memory_mib"] is None else float(data["memory_mib"]),
                             gpus=int(data["gpus"]))
            cost = None if data["cost_usd"] is None else float(data["cost_usd"])
            return cls(label=label, usage=usage, cost=cost, how=str(data["how"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{label}: its usage record is not one this project writes ({err!r})") from err


def total_cost(pods: list[PodCost], unknown: dict[str, str] | None = None) -> float | None:
    """The run's cost: the sum over its pods, only when every pod's cost is known."""
    if unknown or any(pod.cost is None for pod in pods):
        return None
    return round(sum(pod.cost for pod in pods), 6)


def usage_metrics(pods: list[PodCost], unknown: dict[str, str] | None = None) -> dict[str, float]:
    """MLflow metrics of a run made of ``pods`` (the training run's own and its GPU fit's): seconds by pod kind,
    GPUs requested, the CPU and memory requests known, by pod kind, and the cost when every pod's is known."""
    metrics = {"pod_seconds_gpu": 0.0, "pod_seconds_cpu": 0.0, "requested_gpus": 0.0}
    for pod in pods:
        kind = pod.usage.kind
        metrics[f"pod_seconds_{kind}"] = round(metrics[f"pod_seconds_{kind}"] + pod.usage.seconds, 1)
        metrics["requested_gpus"] += pod.usage.gpus
        for name, value in (("cpus", pod.usage.cpus), ("memory_mib", pod.usage.memory_mib)):
            if value is not None:
                key = f"requested_{name}_{kind}_pod"
                metrics[key] = metrics.get(key, 0.0) + value
    total = total_cost(pods, unknown)
    if total is not None:
        metrics["cost_usd"] = total
    return metrics


def usage_markdown(pods: list[PodCost], unknown: dict[str, str] | None = None) -> str:
    """Lines for the run's Prefect artifact: one per pod, then the run's cost."""
    lines = []
    for pod in pods:
        money = f"**${pod.cost:.4f}** ({pod.how})" if pod.cost is not None else pod.how
        lines.append(f"- {pod.label}: **{pod.usage.kind.upper()}** pod, {pod.usage.seconds:.1f} s wall, "
                     f"requested {pod.usage.requested}; cost {money}\n")
    for label, why in (unknown or {}).items():
        lines.append(f"- {label}: usage unknown ({why})\n")
    total = total_cost(pods, unknown)
    lines.append(f"- run cost: {f'**${total:.4f}**' if total is not None else run_cost_text(pods, unknown)}\n")
    return "".join(lines)


def run_cost_text(pods: list[PodCost], unknown: dict[str, str] | None = None) -> str:
    """``$0.0123``, or what is not known."""
    total = total_cost(pods, unknown)
    if total is not None:
        return f"${total:.4f}"
    missing = [pod.label for pod in pods if pod.cost is None] + list(unknown or {})
    return "unknown (not known for: " + ", ".join(missing) + ")"


def record(env: Mapping[str, str] | None = None, label: str = "this run's pod") -> PodCost:
    """This pod's usage and cost now (the flows call it when they write their report)."""
    usage = PodUsage.of_this_run(env)
    cost, how = cost_usd(usage, Prices.from_env(env))
    return PodCost(label=label, usage=usage, cost=cost, how=how)
