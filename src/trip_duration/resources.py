"""Memory and disk a run can use: checked before a batch is read, and a full disk said in one line.

A batch too large for the process's memory would otherwise end as an OOM kill (SIGKILL: no message
in the run's logs, a pod "OOMKilled" in ``kubectl describe``); a full disk as ``OSError: [Errno 28]``
deep in a library's traceback. Both become a :class:`~trip_duration.errors.TripDurationError` that
names the size, where, and the fix.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trip_duration.errors import DiskFullError

#: Peak memory of scoring one validated trip (read, features, predict, predictions, parquet), measured
#: at 381-408 B a row on 1M and 3M synthetic rows (2026-11-23), rounded up to 600 B: the pipeline holds
#: the downloaded object and the predictions read back on top of what was measured.
INFERENCE_BYTES_PER_ROW = 600
#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages), not as "max".
_NO_LIMIT = 1 << 60


@dataclass(frozen=True)
class Memory:
    available: int  # bytes this process can still allocate
    source: str  # where the figure comes from, said in errors


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _NO_LIMIT else value


def _inactive_file(stat: Path, key: str) -> int:
    """Page cache the kernel reclaims before an OOM kill (the kubelet's "working set" leaves it out)."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


#: (limit, usage, memory.stat key of reclaimable page cache) file names of cgroup v2 and v1.
_V2 = ("memory.max", "memory.current", "inactive_file")
_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _cgroup_memory(proc: Path, sys_cgroup: Path) -> tuple[int, int, str] | None:
    """(limit, working set, limit file) of this process's memory cgroup (v2 or v1), or None when unlimited.

    The cgroup is looked up by its path in /proc/self/cgroup, then at the mount's root (in a container
    the mount shows the container's own cgroup there)."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            mount, names = sys_cgroup, _V2
        elif "memory" in controllers.split(","):
            mount, names = sys_cgroup / "memory", _V1
        else:
            continue
        limit_file, usage_file, inactive_key = names
        for base in (mount / path.lstrip("/"), mount):
            limit = _read_int(base / limit_file)
            if limit is not None:
                usage = max((_read_int(base / usage_file) or 0) - _inactive_file(base / "memory.stat", inactive_key), 0)
                return limit, usage, str(base / limit_file)
    return None


def memory_available(proc: Path = Path("/proc"), sys_cgroup: Path = Path("/sys/fs/cgroup")) -> Memory:
    """What this process can still allocate: the lesser of its cgroup's room (a pod's memory limit)
    and the machine's MemAvailable."""
    candidates: list[Memory] = []
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(Memory(int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except OSError:
        pass
    found = _cgroup_memory(proc, sys_cgroup)
    if found:
        limit, usage, where = found
        candidates.append(Memory(max(limit - usage, 0), f"memory limit {size(limit)} ({where}), "
                                                         f"{size(usage)} in use"))
    if not candidates:
        return Memory(_NO_LIMIT, "unknown (no /proc/meminfo, no cgroup limit)")
    return min(candidates, key=lambda m: m.available)


def size(n: float) -> str:
    """``1536`` -> ``1.5 KiB``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _no_space(err: BaseException | None) -> OSError | None:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def disk_full_is_said(what: str, where: Path, fix: str) -> Iterator[None]:
    """Turn "no space left on device" (anywhere in the error's chain) while doing ``what`` under
    ``where`` into a :class:`DiskFullError` naming the folder, its free space and ``fix``."""
    try:
        yield
    except Exception as err:
        full = _no_space(err)
        if full is None:
            raise
        try:
            usage = shutil.disk_usage(where)
            room = f"{size(usage.free)} free of {size(usage.total)}"
        except OSError:
            room = "free space unknown"
        raise DiskFullError(
            f"no space left on device while {what} in {where} ({room}; {full.filename or 'a temporary file'}): "
            f"nothing was kept half-written; {fix}") from err


def require_room(what: str, where: Path, need: int, fix: str) -> None:
    """Refuse at once, before writing, what would not fit in ``where``: some writers (MLflow's artifact
    download) retry "no space left" for minutes and then report it without the OS error."""
    free = shutil.disk_usage(where).free
    if need > free:
        raise DiskFullError(f"no room for {what} in {where}: it needs {size(need)}, {size(free)} is free; {fix}")
