"""Kedro hooks: timing lines, and the committed-read check of kedro-datasets' readers of validated/.

Timing lines look like ``timing load champion_model 0.4123`` (one per dataset load/save and node
run) and reach the Prefect run logs, where the orchestration benchmark reads them.
"""

from __future__ import annotations

import logging
import time

from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError

from trip_duration.io.datasets import check_committed, check_unchanged, validated_target

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


class CommittedReadsHooks:
    """A validated month read through kedro-datasets (``train_trips``, ``valid_trips``, the
    ``validated_{taxi}_{year}-{month}`` factory) is read as its ingest committed it, or not at all.

    Before the load: the month's ``outcome.json`` is committed and accepted, and the object's ETag is
    the one it recorded; after: the ETag is unchanged (s3fs pins each range it reads to the ETag it saw
    at open). A month never ingested, refused, being ingested or replaced meanwhile fails the node with
    the fix. Saves through a generic dataset into validated/ are refused: the ingest outcome writes
    it, with its commit protocol. Runs only (``kedro run``, the flows); a notebook's
    ``catalog.load`` reads what is there.
    """

    def __init__(self) -> None:
        self._catalog = None
        self._checked: dict[str, tuple[tuple, str | None]] = {}  # dataset -> (its target, the ETag read)

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        # The catalog of the session that runs next: a run (kedro run, each of the flows' pipelines) makes
        # its catalog, then runs its nodes, one session after another in a process.
        self._catalog = catalog

    def _target(self, dataset_name: str) -> tuple | None:
        if self._catalog is None:
            return None
        config = self._catalog.config_resolver.resolve_pattern(dataset_name)
        filepath = config.get("filepath") if isinstance(config, dict) else None
        return validated_target(str(filepath)) if filepath else None

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        target = self._target(dataset_name)
        if target is not None:
            etag = check_committed(*target)
            self._checked[dataset_name] = (target, etag)
            logger.info("%s: %s %s, the object its ingest committed (ETag %s)", dataset_name, target[1], target[2], etag)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        checked = self._checked.pop(dataset_name, None)
        if checked is not None:
            target, etag = checked
            check_unchanged(*target, etag)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        if self._target(dataset_name) is not None:
            raise DatasetError(
                f"{dataset_name}: validated/ is written by the ingest pipeline only (its outcome commits a "
                "month whole): run kedro run --pipeline ingest --params month=YYYY-MM,taxi=<type>")
