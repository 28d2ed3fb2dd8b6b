"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from trip_duration.periods import Month


def _next_month(value: str | None) -> str | None:
    """``${next_month:2023-01}`` -> ``2023-02``; passes None through (parameter not set)."""
    return None if value in (None, "", "null") else str(Month.parse(value).next())


CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"next_month": _next_month},
}

from trip_duration.hooks import TimingHooks  # noqa: E402

HOOKS = (TimingHooks(),)
