"""One line for an error the user can fix: the traceback only at debug level.

Prefect logs a failed task, the flow that ran it and the engine that ran the flow each with the
full traceback (three times ~60 lines in ``kubectl logs`` of a flow-run pod) before the line that
says what to change. For our own errors (:class:`~trip_duration.errors.TripDurationError`, found
through Kedro's and Prefect's wrapping) :class:`OneLineErrors` keeps the record, says the
error's message on it, and moves the traceback to a DEBUG record of ``trip_duration.traceback``.
Anything else (a bug) keeps its traceback. Debug level (``PREFECT_LOGGING_LEVEL=DEBUG`` or the
``trip_duration`` logger at DEBUG) shows the tracebacks again.
"""

from __future__ import annotations

import logging

from trip_duration.errors import TripDurationError

#: Prefect's loggers that attach a traceback to a failed run: task runs, flow runs, the engine.
PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")
TRACEBACK_LOGGER = "trip_duration.traceback"


def project_error(err: BaseException | None) -> TripDurationError | None:
    """Our own error behind ``err`` (Kedro wraps a dataset's error in its DatasetError; Prefect re-raises)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, TripDurationError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _debugging() -> bool:
    return any(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in ("trip_duration", "prefect"))


class OneLineErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info is True or _debugging():
            return True
        ours = project_error(record.exc_info[1])
        if ours is None:
            return True
        said = record.getMessage()
        logging.getLogger(TRACEBACK_LOGGER).debug("traceback of: %s", said, exc_info=record.exc_info)
        # "Task run failed with exception: DatasetError('...') - Retries are exhausted" -> what failed,
        # then our error's own message (what, which value, the fix), on one line
        record.msg, record.args = "%s: %s: %s", (said.split(": ", 1)[0], type(ours).__name__,
                                                 " ".join(str(ours).split()))
        record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Idempotent: put the filter on Prefect's run loggers (called where flows are defined)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineErrors) for f in logger.filters):
            logger.addFilter(OneLineErrors())
