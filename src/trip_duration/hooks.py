"""Kedro hooks: one log line per dataset load/save and node run, with its duration.

Lines look like ``timing load champion_model 0.4123`` and reach the Prefect run logs, where
the orchestration benchmark reads them.
"""

from __future__ import annotations

import logging
import time

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class TimingHooks:
    def __init__(self) -> None:
        self._started: dict[tuple[str, str], float] = {}

    def _start(self, kind: str, name: str) -> None:
        self._started[(kind, name)] = time.perf_counter()

    def _stop(self, kind: str, name: str) -> None:
        started = self._started.pop((kind, name), None)
        if started is not None:
            logger.info("timing %s %s %.4f", kind, name, time.perf_counter() - started)

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        self._start("load", dataset_name)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        self._stop("load", dataset_name)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        self._start("save", dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        self._stop("save", dataset_name)

    @hook_impl
    def before_node_run(self, node) -> None:
        self._start("node", node.name)

    @hook_impl
    def after_node_run(self, node) -> None:
        self._stop("node", node.name)
