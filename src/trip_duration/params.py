"""Pipeline parameters, parsed once into frozen typed objects: a typo is an error naming the key."""

from __future__ import annotations

import os
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trip_duration.errors import ConfigError
from trip_duration.schema import DEFAULT_TAXI, FEATURE_COLUMNS, parse_taxi


class _Params(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _TaxiParams(_Params):
    taxi: str = DEFAULT_TAXI

    @field_validator("taxi", mode="before")
    @classmethod
    def _taxi(cls, value: str | None) -> str:
        return parse_taxi(value)


class IngestParams(_TaxiParams):
    month: str | None = None
    required_columns: tuple[str, ...] = FEATURE_COLUMNS
    min_duration_minutes: float = 1.0
    max_duration_minutes: float = 60.0
    max_rejected_fraction: float = Field(0.5, ge=0, le=1)


class XGBoostParams(_Params):
    n_estimators: int = Field(100, ge=1)
    max_depth: int = Field(6, ge=1)
    learning_rate: float = Field(0.3, gt=0)
    min_child_weight: float = 1.0
    subsample: float = Field(1.0, gt=0, le=1)
    random_state: int = 42


class PromotionParams(_Params):
    #: the candidate's RMSE must be below champion RMSE * (1 - min_improvement)
    min_improvement: float = Field(0.01, ge=0, lt=1)


class TrainingParams(_TaxiParams):
    train_month: str | None = None
    valid_month: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: XGBoostParams = XGBoostParams()
    promotion: PromotionParams = PromotionParams()
    input_example_rows: int = Field(5, ge=1)


class InferenceParams(_TaxiParams):
    batch_month: str | None = None
    batch_start: str | None = None
    batch_end: str | None = None


P = TypeVar("P", bound=_Params)


def parse(kind: type[P], raw: dict, namespace: str) -> P:
    """Build a params object, turning pydantic's error into one that names ``namespace.key``."""
    try:
        return kind.model_validate(raw or {})
    except ValidationError as err:
        problems = "; ".join(
            f"{namespace}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        raise ConfigError(f"bad parameters in conf/*/parameters_{namespace}.yml or --params: {problems}") from err


class DriftParams(_Params):
    """The drift check of every inference run (trip_duration.drift; README, "Drift retrains")."""

    #: false: no profile comparison, no drift.json, no event
    enabled: bool = True
    #: a feature whose PSI against the champion's training month is above this is drift (0.2: the usual "major shift")
    psi_threshold: float = Field(0.2, gt=0)
    #: the batch's RMSE over the champion's validation RMSE above this is drift
    rmse_ratio_threshold: float = Field(1.3, gt=1)
    #: batches (and reference months) with fewer trips are not judged
    min_rows: int = Field(1000, ge=1)
    #: false: drift is reported (drift.json, log, artifact) but no trip-duration.model.drifted event retrains
    emit_event: bool = True


#: environment variable of each DriftParams field (the chart's ``drift.*`` values set them in flow-run pods)
DRIFT_ENV = {name: f"TRIP_DURATION_DRIFT_{name.upper()}" for name in DriftParams.model_fields}


def drift_params(env: dict[str, str] | None = None) -> DriftParams:
    """DriftParams from ``TRIP_DURATION_DRIFT_*`` (defaults for those unset); a bad value is a ConfigError
    naming the variable and the fix."""
    env = os.environ if env is None else env
    raw = {name: env[var] for name, var in DRIFT_ENV.items() if env.get(var, "") != ""}
    try:
        return DriftParams.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{DRIFT_ENV[str(e['loc'][0])]}={e.get('input')!r}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"bad drift setting: {problems} (fix the variable, or the chart's drift.* value that "
                          "sets it, or unset it for the default)") from err
