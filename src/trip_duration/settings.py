"""Kedro project settings."""

import warnings

import s3fs
from kedro.config import OmegaConfigLoader

from trip_duration.periods import Month


def _next_month(value: str | None) -> str | None:
    """``${next_month:2023-01}`` -> ``2023-02``; passes None through (parameter not set)."""
    return None if value in (None, "", "null") else str(Month.parse(value).next())


def _month_dir(value: str | None, param: str) -> str:
    """``${month_dir:2023-01,train_month}`` -> ``year=2023/month=01`` (trip_duration.layout's month part).

    A parameter not set gives ``train_month=unset``: one catalog serves every pipeline, so the
    error ("parameter train_month is not set: ...") waits for a run that reads the dataset."""
    if value in (None, "", "null"):
        return f"{param}=unset"
    month = Month.parse(value, key=param)
    return f"year={month.year:04d}/month={month.month:02d}"


def _bucket() -> str:
    """``${bucket:}``: TRIP_DURATION_BUCKET, read when the catalog is made (a run without it fails on use)."""
    from trip_duration.config import get_settings
    from trip_duration.io.datasets import UNSET_BUCKET

    return get_settings().bucket or UNSET_BUCKET


# Kedro 1.7's OmegaConfigLoader calls OmegaConf.register_new_resolver, which omegaconf now marks
# deprecated: four warnings per run that no user of this project can act on (Kedro's to change).
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

# The catalog's kedro-datasets readers reach S3 through s3fs, which retries a dropped or timed-out call
# itself (5 attempts by default, a class setting, not a constructor argument). Two, like our boto3 client
# (trip_duration/io/s3.py), with one botocore attempt each (catalog.yml): a hanging S3 costs a read 2 x 15 s
# before the node's own retries (README, "Retry budget"), measured by tests/integration/test_catalog.py.
s3fs.S3FileSystem.retries = 2

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"next_month": _next_month, "month_dir": _month_dir, "bucket": _bucket},
}

from trip_duration.hooks import CommittedReadsHooks, TimingHooks  # noqa: E402

HOOKS = (TimingHooks(), CommittedReadsHooks())
