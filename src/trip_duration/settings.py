"""Kedro project settings."""

import warnings

from kedro.config import OmegaConfigLoader

from trip_duration.periods import Month


def _next_month(value: str | None) -> str | None:
    """``${next_month:2023-01}`` -> ``2023-02``; passes None through (parameter not set)."""
    return None if value in (None, "", "null") else str(Month.parse(value).next())


# Kedro 1.7's OmegaConfigLoader calls OmegaConf.register_new_resolver, which omegaconf now marks
# deprecated: four warnings per run that no user of this project can act on (Kedro's to change).
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"next_month": _next_month},
}

from trip_duration.hooks import TimingHooks  # noqa: E402

HOOKS = (TimingHooks(),)
