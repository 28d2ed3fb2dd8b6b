import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from trip_duration.errors import ConfigError
from trip_duration.features import duration_minutes
from trip_duration.models import Champion
from trip_duration.pipelines.inference import create_pipeline as inference_pipeline
from trip_duration.pipelines.training import create_pipeline as training_pipeline
from trip_duration.pipelines.training.nodes import decide_promotion
from trip_duration.synth import generate_trips

PARAMS = {"train_month": "2023-01", "valid_month": "2023-02", "device": "cpu",
          "model": {"n_estimators": 40, "max_depth": 5}, "promotion": {"min_improvement": 0.05}}


def _clean(month):
    trips = generate_trips(month, rows=10_000, seed=3)
    minutes = duration_minutes(trips)
    return trips[(minutes >= 1) & (minutes <= 60) & (trips["trip_distance"] > 0)].reset_index(drop=True)


def test_first_model_becomes_champion():
    decision = decide_promotion({"model_rmse": 9.0}, {"version": None, "rmse": None}, PARAMS)
    assert decision["promote"] and decision["champion_version"] is None


@pytest.mark.parametrize(("candidate", "promote"), [(9.4, True), (9.6, False), (12.0, False)])
def test_gate_needs_the_margin(candidate, promote):
    decision = decide_promotion({"model_rmse": candidate}, {"version": 4, "rmse": 10.0}, PARAMS)
    assert decision["promote"] is promote and decision["champion_version"] == 4


def test_typo_in_parameters_is_named():
    with pytest.raises(ConfigError, match=r"training\.promotion\.min_improvment"):
        decide_promotion({"model_rmse": 1.0}, {"version": None}, {**PARAMS, "promotion": {"min_improvment": 0.1}})


class _Registry(MemoryDataset):
    """Stands in for MLflow in this unit test: records the candidate, returns a registration."""

    def save(self, data):
        from trip_duration.io.registry import Registration

        self.candidate = data
        super().save(Registration("run", "1", 1, "pipeline-run:test", reused=False))


class _Kept(MemoryDataset):
    """A MemoryDataset the runner may not release, so the test can read it afterwards."""

    def _release(self) -> None:
        pass


def test_training_then_inference_pipelines_on_memory_catalog(monkeypatch):
    from trip_duration.io import registry as registry_module

    gated = []

    def apply_promotion(registration, decision):  # the registry side is tested on a real MLflow server
        gated.append((registration.version, decision["promote"]))
        return registry_module.Promotion(registration.version, decision["promote"], 1, decision["reason"])

    monkeypatch.setattr(registry_module, "apply_promotion", apply_promotion)
    train, valid = _clean("2023-01"), _clean("2023-02")
    registry = _Registry()
    catalog = DataCatalog(
        {
            "train_trips": MemoryDataset(train),
            "valid_trips": MemoryDataset(valid),
            "champion_for_training": MemoryDataset(Champion(None, None)),
            "params:training": MemoryDataset(PARAMS),
            "registered_model": registry,
            "promotion_report": MemoryDataset(),
        }
    )
    SequentialRunner().run(training_pipeline(), catalog)
    report = catalog.load("promotion_report")
    assert gated == [(1, True)]  # the gate is its own node, after registration
    assert report["promoted"] and report["model_rmse"] < 0.9 * report["baseline_rmse"]
    assert registry.candidate["facts"]["train_rows"] == len(train)
    assert list(registry.candidate["input_example"].columns) == [
        "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]

    model = registry.candidate["model"]
    catalog = DataCatalog(
        {
            "champion_model": MemoryDataset(Champion(7, model)),
            "batch_trips": MemoryDataset(valid),
            "predictions": _Kept(),
            "inference_summary": MemoryDataset(),
        }
    )
    SequentialRunner().run(inference_pipeline(), catalog)
    predictions, summary = catalog.load("predictions"), catalog.load("inference_summary")
    assert len(predictions) == summary["rows"] == len(valid)
    assert (predictions["model_version"] == 7).all() and summary["model_version"] == 7
    assert predictions["predicted_duration"].between(0, 120).all()
