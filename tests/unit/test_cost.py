"""A run's pod usage and cost (trip_duration.cost): what the pod requested, its kind, the price table."""

from __future__ import annotations

import time

import pytest

from trip_duration.cost import (
    PodCost,
    PodUsage,
    Prices,
    cost_usd,
    record,
    run_cost_text,
    total_cost,
    usage_markdown,
    usage_metrics,
)
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


def _pod(label, usage, prices=Prices(2.5, 0.04)):
    return PodCost(label, usage, *cost_usd(usage, prices))


def test_metrics_of_a_training_run_and_its_gpu_fit_add_both_pods_by_kind():
    """README, "Cost per run": the training run's metrics cover its own (CPU) pod and its fit's (GPU) pod."""
    train = _pod("this run's pod", PodUsage(300.04, 2.0, 8192, 0))
    fit = _pod("GPU fit run a (1)", PodUsage(100.04, 4.0, 16384, 1))
    metrics = usage_metrics([train, fit])
    assert metrics == {"pod_seconds_gpu": 100.0, "pod_seconds_cpu": 300.0, "requested_gpus": 1.0,
                       "requested_cpus_cpu_pod": 2.0, "requested_memory_mib_cpu_pod": 8192,
                       "requested_cpus_gpu_pod": 4.0, "requested_memory_mib_gpu_pod": 16384,
                       "cost_usd": pytest.approx(train.cost + fit.cost)}
    assert metrics["cost_usd"] == pytest.approx(300.04 / 3600 * 2 * 0.04 + 100.04 / 3600 * (2.5 + 4 * 0.04), abs=1e-6)
    local = usage_metrics([_pod("this run's pod", PodUsage(7.0, None, None, 0))])
    assert local == {"pod_seconds_gpu": 0.0, "pod_seconds_cpu": 7.0, "requested_gpus": 0.0}


def test_the_run_cost_is_given_only_when_every_pods_cost_is_known():
    train = _pod("this run's pod", PodUsage(300, 2.0, 8192, 0))
    fit = _pod("GPU fit run a (1)", PodUsage(100, 4.0, 16384, 1))
    assert total_cost([train, fit]) == pytest.approx(train.cost + fit.cost)
    assert total_cost([train], {"GPU fit run a (1)": "no usage.json"}) is None
    assert "cost_usd" not in usage_metrics([train], {"GPU fit run a (1)": "no usage.json"})
    unpriced = _pod("GPU fit run a (1)", PodUsage(100, 4.0, None, 1), Prices(None, 0.04))
    assert total_cost([train, unpriced]) is None
    assert run_cost_text([train, unpriced]) == "unknown (not known for: GPU fit run a (1))"


def test_a_fit_pods_usage_travels_as_json_and_a_bad_record_is_refused_naming_it():
    fit = _pod("this fit's pod", PodUsage(100, 4.0, 16384, 1))
    again = PodCost.from_json(fit.to_json(), "GPU fit run a (1)")
    assert (again.usage, again.cost, again.how, again.label) == (fit.usage, fit.cost, fit.how, "GPU fit run a (1)")
    with pytest.raises(ConfigError, match=r"GPU fit run a \(1\): its usage record is a list, not an object"):
        PodCost.from_json([1], "GPU fit run a (1)")
    with pytest.raises(ConfigError, match="GPU fit run a .1.: its usage record is not one this project writes"):
        PodCost.from_json({"seconds": "soon"}, "GPU fit run a (1)")


def test_the_artifact_lines_show_each_pod_the_run_cost_or_why_it_is_unknown():
    pod = record({**GPU_POD, **PRICES})
    lines = usage_markdown([pod])
    assert "this run's pod: **GPU** pod" in lines and "requested 1 GPU, 4 CPU, 16384 MiB" in lines
    assert f"run cost: **${pod.cost:.4f}**" in lines
    assert pod.usage_line().startswith("gpu, ") and f"requested 1 GPU, 4 CPU, 16384 MiB; cost ${pod.cost:.4f}" in pod.usage_line()
    local = record({})
    lines = usage_markdown([local], {"GPU fit run a (1)": "s3://b/k: does not exist"})
    assert local.cost is None and "requested nothing" in lines and "cost unknown, missing the pod's CPU request" in lines
    assert "GPU fit run a (1): usage unknown (s3://b/k: does not exist)" in lines
    assert "run cost: unknown (not known for: this run's pod, GPU fit run a (1))" in lines


@pytest.mark.parametrize(("name", "value"), [
    ("TRIP_DURATION_COST_GPU_HOUR_USD", "two dollars"),
    ("TRIP_DURATION_COST_CPU_HOUR_USD", "-1"),
])
def test_a_bad_price_is_refused_naming_the_value_and_the_fix(name, value):
    with pytest.raises(ConfigError, match=rf"{name}='{value}' is not a non-negative number: set the chart's cost\."):
        Prices.from_env({**PRICES, name: value})
