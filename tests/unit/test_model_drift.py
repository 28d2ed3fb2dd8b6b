"""The cheap check that replaced MLflow's 200-requirement comparison on every model load."""

from __future__ import annotations

from importlib.metadata import version

from trip_duration.io.registry import MODEL_RUNTIME_PACKAGES, _warn_on_version_drift


def test_no_drift_when_the_model_was_logged_with_the_installed_versions(tmp_path):
    lines = [f"{name}=={version(name)}" for name in MODEL_RUNTIME_PACKAGES] + ["mlflow==0.0.1", "not a requirement"]
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n")
    assert _warn_on_version_drift(tmp_path) == []  # mlflow differs but the pickled model does not need it


def test_drift_names_the_package_both_versions_and_skips_other_platforms(tmp_path, caplog):
    (tmp_path / "requirements.txt").write_text(
        'xgboost==1.7.0\n'
        'numpy==0.1; python_full_version < "3.0"\n'  # a marker that does not apply here: ignored
        f'pandas=={version("pandas")}\n'
    )
    drift = _warn_on_version_drift(tmp_path)
    assert drift == [f"xgboost: model logged with ==1.7.0, installed {version('xgboost')}"]
    assert "xgboost: model logged with ==1.7.0" in caplog.text and "rebuild the image" in caplog.text


def test_a_model_without_requirements_is_not_an_error(tmp_path):
    assert _warn_on_version_drift(tmp_path) == []
