"""Memory a run can use (cgroup v1/v2, MemAvailable), the batch-size check, and a full disk said in one line."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from trip_duration.errors import BatchTooLargeError, DiskFullError
from trip_duration.io.datasets import check_batch_fits
from trip_duration.periods import DateRange, Month
from trip_duration.resources import INFERENCE_BYTES_PER_ROW, Memory, disk_full_is_said, memory_available

GiB = 1 << 30


def _tree(tmp_path: Path, cgroup_line: str, files: dict[str, str], mem_available_kb: int = 16 * (1 << 20)):
    proc, sys_cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup_line + "\n")
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {mem_available_kb} kB\n")
    for rel, text in files.items():
        (sys_cgroup / rel).parent.mkdir(parents=True, exist_ok=True)
        (sys_cgroup / rel).write_text(text)
    return proc, sys_cgroup


def test_a_pods_cgroup_v1_limit_minus_its_working_set_is_what_is_left(tmp_path):
    proc, sys_cgroup = _tree(tmp_path, "4:memory:/kubepods/pod1/abc", {
        "memory/kubepods/pod1/abc/memory.limit_in_bytes": str(2 * GiB),
        "memory/kubepods/pod1/abc/memory.usage_in_bytes": str(GiB),
        "memory/kubepods/pod1/abc/memory.stat": f"cache 5\ntotal_inactive_file {GiB // 4}\n",
    })
    memory = memory_available(proc, sys_cgroup)
    assert memory.available == 2 * GiB - (GiB - GiB // 4)  # page cache the kernel reclaims is room
    assert "memory limit 2.0 GiB" in memory.source and "memory.limit_in_bytes" in memory.source


def test_cgroup_v2_in_a_container_is_read_at_the_mounts_root(tmp_path):
    proc, sys_cgroup = _tree(tmp_path, "0::/", {
        "memory.max": str(GiB), "memory.current": str(GiB // 2), "memory.stat": "inactive_file 0\n",
    })
    assert memory_available(proc, sys_cgroup).available == GiB // 2


@pytest.mark.parametrize("line, files", [
    ("0::/user.slice", {"user.slice/memory.max": "max\n", "user.slice/memory.current": "1\n"}),
    ("4:memory:/", {"memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": "1"}),
])
def test_no_cgroup_limit_leaves_the_machines_available_memory(tmp_path, line, files):
    proc, sys_cgroup = _tree(tmp_path, line, files, mem_available_kb=3 * (1 << 20))
    assert memory_available(proc, sys_cgroup) == Memory(3 * GiB, "MemAvailable in /proc/meminfo")


def test_the_machines_memory_wins_when_it_is_smaller_than_the_limit(tmp_path):
    proc, sys_cgroup = _tree(tmp_path, "0::/", {"memory.max": str(8 * GiB), "memory.current": "0"},
                             mem_available_kb=1 << 20)
    assert memory_available(proc, sys_cgroup).available == GiB


def test_this_machine_reports_some_memory():
    memory = memory_available()
    assert 0 < memory.available < 1 << 50, memory


MARCH = Month.parse("2023-03")


def test_a_batch_that_fits_returns_its_estimate():
    need = check_batch_fits(DateRange.of_month(MARCH), {MARCH: {"rows_out": 1000}}, Memory(GiB, "test"))
    assert need == 1000 * INFERENCE_BYTES_PER_ROW


def test_a_date_range_counts_only_its_days_of_each_month():
    feb, march = Month.parse("2023-02"), MARCH
    batch = DateRange.parse("2023-02-15", "2023-03-08")  # 14 of 28 days, 7 of 31 days
    need = check_batch_fits(batch, {feb: {"rows_out": 2800}, march: {"rows_out": 3100}}, Memory(GiB, "test"))
    assert need == int((1400 + 700) * INFERENCE_BYTES_PER_ROW)


def test_a_batch_too_large_is_refused_naming_its_size_the_limit_and_parts_that_fit():
    rows = 3_000_000  # ~1.7 GiB to score
    with pytest.raises(BatchTooLargeError) as refused:
        check_batch_fits(DateRange.of_month(MARCH), {MARCH: {"rows_out": rows}}, Memory(GiB // 2, "memory limit X"))
    message = str(refused.value)
    assert "year=2023/month=03" in message and "3,000,000" in message and "1.7 GiB" in message
    assert "512.0 MiB" in message and "memory limit X" in message
    # 4 parts of 7 days (ceil(1.68 / 0.5) = 4): the first one named as parameters
    assert "at most 7 days (batch_start=2023-03-01 batch_end=2023-03-08" in message
    assert "memory_limit" in message
    # and the part it names does fit
    part = DateRange.parse("2023-03-01", "2023-03-08")
    check_batch_fits(part, {MARCH: {"rows_out": rows}}, Memory(GiB // 2, "memory limit X"))


def test_no_space_left_on_a_real_device_is_one_line_naming_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DiskFullError) as full:  # /dev/full: every write fails with ENOSPC, as a full disk does
        with disk_full_is_said("writing the model", tmp_path, "point X_DIR at a larger volume"):
            with open("/dev/full", "wb") as device:
                device.write(b"model bytes")
    message = str(full.value)
    assert f"while writing the model in {tmp_path}" in message and "free of" in message
    assert message.endswith("point X_DIR at a larger volume")
    assert full.value.__cause__.errno == errno.ENOSPC


def test_other_os_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with disk_full_is_said("writing", tmp_path, "fix"):
            raise PermissionError(errno.EACCES, "denied")


def test_what_would_not_fit_is_refused_before_a_byte_is_written(tmp_path):
    import shutil

    from trip_duration.resources import require_room

    free = shutil.disk_usage(tmp_path).free
    require_room("a model", tmp_path, 1024, "fix")
    with pytest.raises(DiskFullError, match=rf"no room for a model in {tmp_path}: it needs .* is free; point X"):
        require_room("a model", tmp_path, free + (1 << 40), "point X at a larger volume")
