"""The training run's side of its GPU fit (flows/training.py): waiting for it, failing naming it, cancelling it
(against a fake Prefect client: the real one is exercised by tests/integration/test_flows.py), and the
run-time parameters that reach Kedro."""

from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace

import pytest
from prefect.states import Cancelled, Cancelling, Completed, Failed, Pending, Running, Scheduled

import flows.training as training
from flows.kedro_tasks import runtime_params
from trip_duration.errors import FitFailedError


class FakeClient:
    def __init__(self, states):
        self.states, self.set = list(states), []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_flow_run(self, run_id):
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return SimpleNamespace(id=run_id, state=state)

    def set_flow_run_state(self, run_id, state, force=False):
        self.set.append((run_id, state.type.value, state.message, force))
        self.states = [state]


@pytest.fixture
def fit(monkeypatch):
    monkeypatch.setattr(training, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(training.time, "sleep", lambda s: None)
    return SimpleNamespace(id=uuid.uuid4(), name="clever-fox")


def _client(monkeypatch, states):
    client = FakeClient(states)
    monkeypatch.setattr(training, "get_client", lambda sync_client: client)
    return client


def test_the_wait_returns_once_the_fit_completed(fit, monkeypatch):
    client = _client(monkeypatch, [Scheduled(), Pending(), Running(), Running(), Completed()])
    training._wait_for_fit(fit)
    assert client.states == [Completed()] or client.states[0].is_completed()
    assert client.set == []


@pytest.mark.parametrize("end", [Failed(message="XGBoostError: no GPU"), Cancelled(message="by a person")])
def test_a_fit_that_ends_otherwise_fails_the_training_run_naming_it_and_its_logs(fit, monkeypatch, end):
    _client(monkeypatch, [Running(), end])
    with pytest.raises(FitFailedError) as raised:
        training._wait_for_fit(fit)
    assert str(raised.value) == (f"GPU fit run clever-fox ({fit.id}) ended {end.name}: {end.message}; its logs: "
                                 f"kubectl logs -l prefect.io/flow-run-id={fit.id}")


def test_a_fit_not_done_in_time_is_cancelled_and_the_run_fails_saying_where_to_look(fit, monkeypatch):
    client = _client(monkeypatch, [Pending()])
    with pytest.raises(FitFailedError, match=rf"GPU fit run clever-fox \({fit.id}\) was not done after \d+ s "
                                             r"\(Pending\): cancelled. A fit Pending that long found no GPU node"):
        training._wait_for_fit(fit, limit_s=-1)
    assert client.set == [(fit.id, "CANCELLED", "cancelled: its training run waited 0 s for it", True)]


@pytest.mark.parametrize(("now", "expected"), [
    (Running(), "CANCELLING"),  # its worker stops the pod
    (Scheduled(), "CANCELLED"),  # nothing started: no pod to stop
    (Pending(), "CANCELLED"),
])
def test_cancel_asks_the_worker_to_stop_a_running_fit_and_cancels_a_waiting_one(fit, monkeypatch, now, expected):
    client = _client(monkeypatch, [now])
    training._cancel(fit, "its training run failed")
    assert client.set == [(fit.id, expected, "cancelled: its training run failed", True)]


@pytest.mark.parametrize("now", [Completed(), Failed(), Cancelled(), Cancelling()])
def test_cancel_leaves_a_fit_that_ended_or_is_being_cancelled(fit, monkeypatch, now):
    client = _client(monkeypatch, [now])
    training._cancel(fit, "its training run failed")
    assert client.set == []


def test_dotted_runtime_parameters_are_nested_as_kedro_run_params_does():
    """The `device` parameter reached Kedro as a key "training.device" it ignored before this."""
    assert runtime_params({"training.device": "cuda", "training.model.n_estimators": 1, "taxi": "green"}) == {
        "training": {"device": "cuda", "model": {"n_estimators": 1}}, "taxi": "green"}
