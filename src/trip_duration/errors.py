"""Project exceptions. Each message names the bad value and the setting that fixes it."""


class TripDurationError(Exception):
    """Base class for every error this project raises on purpose."""


class ConfigError(TripDurationError):
    """A setting, parameter or argument has a value we cannot use."""


class SchemaValidationError(TripDurationError):
    """A raw file is broken as a whole (missing/mistyped column, unreadable, empty).

    The file has been copied to ``quarantine/`` with a JSON reason beside it;
    the raw object itself is untouched.
    """


class DataNotFoundError(TripDurationError):
    """An input object the pipeline needs is not in the bucket."""


class NoChampionError(TripDurationError):
    """Inference asked for the champion model but the registry has none yet."""


class UntrustedModelError(TripDurationError):
    """A registry version was not registered by the training flow, or its files changed since."""


class DiskFullError(TripDurationError):
    """A local folder (the model cache, scratch space) ran out of room; nothing was kept half-written."""


class BatchTooLargeError(TripDurationError):
    """An inference batch would not fit in the memory this run can use: refused before it is read."""


class FitFailedError(TripDurationError):
    """The training run's GPU fit (a run of the ``fit`` deployment) failed, was cancelled or never finished."""
