"""A run's pod usage and cost (trip_duration.cost): what the pod requested, its kind, the price table."""

from __future__ import annotations

import time

import pytest

from trip_duration.cost import PodUsage, Prices, cost_usd, record, usage_markdown, usage_metrics
from trip_duration.errors import ConfigError

GPU_POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "TRIP_DURATION_POD_CPU_MILLICORES": "4000",
           "TRIP_DURATION_POD_MEMORY_MIB": "16384", "TRIP_DURATION_POD_GPUS": "1"}
CPU_POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "TRIP_DURATION_POD_CPU_MILLICORES": "1500",
           "TRIP_DURATION_POD_MEMORY_MIB": "4096", "TRIP_DURATION_POD_GPUS": ""}
PRICES = {"TRIP_DURATION_COST_GPU_HOUR_USD": "2.5", "TRIP_DURATION_COST_CPU_HOUR_USD": "0.04"}


def test_a_gpu_pod_costs_its_hours_times_gpus_and_requested_cores_at_the_price_table():
    usage = PodUsage(seconds=1800, cpus=4.0, memory_mib=16384, gpus=1)
    cost, how = cost_usd(usage, Prices(gpu_hour_usd=2.5, cpu_hour_usd=0.04))
    assert usage.kind == "gpu"
    assert cost == pytest.approx(0.5 * (1 * 2.5 + 4 * 0.04))  # 1.33
    assert "0.5000 h x (1 GPU x $2.5 + 4 CPU x $0.04)" == how


def test_a_cpu_pod_needs_no_gpu_price():
    usage = PodUsage(seconds=360, cpus=1.5, memory_mib=4096, gpus=0)
    cost, _ = cost_usd(usage, Prices(gpu_hour_usd=None, cpu_hour_usd=0.04))
    assert usage.kind == "cpu" and cost == pytest.approx(0.1 * 1.5 * 0.04)


@pytest.mark.parametrize(("usage", "prices", "missing"), [
    (PodUsage(60, 4.0, None, 1), Prices(None, 0.04), "cost.gpuHourUsd"),
    (PodUsage(60, 1.0, None, 0), Prices(2.5, None), "cost.cpuHourUsd"),
    (PodUsage(60, None, None, 0), Prices(2.5, 0.04), "the pod's CPU request"),
])
def test_a_cost_without_its_price_or_request_is_unknown_and_says_what_is_missing(usage, prices, missing):
    cost, how = cost_usd(usage, prices)
    assert cost is None and how.startswith("unknown, missing ") and missing in how


def test_the_pod_says_what_it_requested_through_its_environment():
    now = time.time()
    gpu, cpu = PodUsage.of_this_run(GPU_POD, now=now), PodUsage.of_this_run(CPU_POD, now=now)
    assert (gpu.kind, gpu.cpus, gpu.memory_mib, gpu.gpus) == ("gpu", 4.0, 16384, 1)
    assert (cpu.kind, cpu.cpus, cpu.memory_mib, cpu.gpus) == ("cpu", 1.5, 4096, 0)
    local = PodUsage.of_this_run({}, now=now)  # a process worker: this process's age, nothing requested
    assert local.cpus is None and local.gpus == 0 and 0 < local.seconds < 24 * 3600


def test_metrics_carry_seconds_by_kind_and_only_what_is_known():
    gpu = usage_metrics(PodUsage(100.04, 4.0, 16384, 1), 1.25)
    assert gpu == {"pod_seconds_gpu": 100.0, "pod_seconds_cpu": 0.0, "requested_gpus": 1.0, "requested_cpus": 4.0,
                   "requested_memory_mib": 16384, "cost_usd": 1.25}
    local = usage_metrics(PodUsage(7.0, None, None, 0), None)
    assert local == {"pod_seconds_gpu": 0.0, "pod_seconds_cpu": 7.0, "requested_gpus": 0.0}


def test_the_artifact_lines_show_the_cost_or_why_it_is_unknown():
    usage, cost, how = record({**GPU_POD, **PRICES})
    lines = usage_markdown(usage, cost, how)
    assert "pod: **GPU**" in lines and "requested 1 GPU, 4 CPU, 16384 MiB" in lines and f"**${cost:.4f}**" in lines
    usage, cost, how = record({})
    lines = usage_markdown(usage, cost, how)
    assert cost is None and "requested nothing" in lines and "cost: unknown, missing the pod's CPU request" in lines


@pytest.mark.parametrize(("name", "value"), [
    ("TRIP_DURATION_COST_GPU_HOUR_USD", "two dollars"),
    ("TRIP_DURATION_COST_CPU_HOUR_USD", "-1"),
])
def test_a_bad_price_is_refused_naming_the_value_and_the_fix(name, value):
    with pytest.raises(ConfigError, match=rf"{name}='{value}' is not a non-negative number: set the chart's cost\."):
        Prices.from_env({**PRICES, name: value})
