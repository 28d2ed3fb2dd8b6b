"""Fixtures of the modules that run flows through the workers (test_flows, test_operations)."""

from __future__ import annotations

import pytest

from infra.local.demo import deploy
from tests.conftest import put_month


@pytest.fixture(scope="module")
def deployed(flow_stack):
    """Three synthetic months in raw/ and prefect.yaml deployed to the local pool (schedules and triggers paused)."""
    for month in ("2023-01", "2023-02", "2023-03"):
        put_month(flow_stack, month)
    deploy(flow_stack)
    return flow_stack
