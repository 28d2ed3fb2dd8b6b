"""Runtime settings from the environment: one typed object, built at the entry point.

Only our own settings live here. The S3 endpoint and credentials come from boto3's
default chain (``AWS_ENDPOINT_URL_S3``, ``AWS_*``, IRSA); MLflow reads
``MLFLOW_TRACKING_URI``; Prefect reads ``PREFECT_*``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from trip_duration.errors import ConfigError

TLC_URL_PATTERN = "https://d37ci6vzurychx.cloudfront.net/trip-data/{taxi}_tripdata_{month}.parquet"


class Settings(BaseSettings):
    """Environment variables prefixed ``TRIP_DURATION_`` (e.g. ``TRIP_DURATION_BUCKET``)."""

    model_config = SettingsConfigDict(env_prefix="TRIP_DURATION_", frozen=True, extra="ignore")

    bucket: str | None = Field(default=None, description="S3 bucket holding raw/, quarantine/, reports/, ...")
    source_url: str = Field(
        default=TLC_URL_PATTERN,
        description="Where a month not yet under raw/ is fetched from; {taxi} is yellow or green, {month} YYYY-MM. "
        "Empty: never fetch.",
    )
    model_name: str = Field(default="trip-duration", description="MLflow registered model name prefix: one model per "
                            "taxi type, <prefix>-yellow and <prefix>-green")
    champion_alias: str = Field(default="champion", description="Registry alias inference serves")
    experiment: str = Field(default="trip-duration", description="MLflow experiment for training runs")
    model_cache_dir: Path = Field(
        default=Path.home() / ".cache" / "trip-duration" / "models",
        description="Local cache of downloaded models, one folder per registry version and its MLflow run id",
    )

    def model_for(self, taxi: str) -> str:
        """The registered model of a taxi type: each type has its own versions and champion."""
        return f"{self.model_name}-{taxi}"

    def for_taxi(self, taxi: str) -> Settings:
        """These settings with ``model_name`` the taxi type's registered model (the registry's functions
        take one such object); call it on the environment's settings, once."""
        return self.model_copy(update={"model_name": self.model_for(taxi)})

    def require_bucket(self) -> str:
        if not self.bucket:
            raise ConfigError(
                "no S3 bucket configured: set TRIP_DURATION_BUCKET (e.g. TRIP_DURATION_BUCKET=trip-duration)"
            )
        return self.bucket


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
