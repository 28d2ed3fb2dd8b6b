"""The warm-start server and client (infra/local/warmstart.py), as real processes over a real socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local.stack import ROOT, WARMSTART

TARGET = ["-m", "tests.unit.warm_target"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes (its parent reaps it on its next loop)
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


@pytest.fixture
def server(tmp_path):
    sock = Path(f"/tmp/warm-test-{os.getpid()}-{tmp_path.name[-8:]}.sock")
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, str(WARMSTART), "serve", "--socket", str(sock), "--preload", "json,tests.unit.warm_marker"],
        cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    _wait_for(lambda: sock.exists() or proc.poll() is not None, "the server socket")
    assert proc.poll() is None, Path(log.name).read_text()
    yield proc, sock
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
    assert not sock.exists(), "the server removes its socket on exit"


def _client(sock: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WARMSTART), "--socket", str(sock), *TARGET, *args],
                          cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=60)


def test_child_runs_in_the_clients_env_directory_and_stdio_with_its_exit_status(server, tmp_path):
    proc, sock = server
    done = _client(sock, ["report", "3", "extra-arg", "more"], cwd=tmp_path, WARM_TEST_VALUE="from-the-client")
    assert done.returncode == 3, done.stderr
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and " " not in line)
    assert out["env"] == "from-the-client"
    assert Path(out["cwd"]) == tmp_path
    assert out["argv"] == "extra-arg,more"
    assert "to-stderr" in done.stderr and "warm start: pid" in done.stderr
    preloaded_by, me, parent = (int(part.split("=")[1]) for part in
                                next(line for line in done.stdout.splitlines() if line.startswith("preloaded_by")).split())
    assert preloaded_by == proc.pid == parent, "the marker module came from the server's preload, not a new import"
    assert me != proc.pid


def test_uncaught_error_exits_1_with_the_traceback(server, tmp_path):
    _, sock = server
    done = _client(sock, ["raise"], cwd=tmp_path)
    assert done.returncode == 1
    assert "ValueError: boom from the child" in done.stderr


def test_runs_are_concurrent_and_keep_their_own_status(server, tmp_path):
    _, sock = server
    procs = [subprocess.Popen([sys.executable, str(WARMSTART), "--socket", str(sock), *TARGET, "report", str(code)],
                              cwd=tmp_path, env=_env(WARM_TEST_VALUE=str(code)), stdout=subprocess.PIPE, text=True)
             for code in (0, 4, 7)]
    results = [(p.wait(timeout=60), p.stdout.read()) for p in procs]
    assert [code for code, _ in results] == [0, 4, 7]
    assert [f"env={code}" in out for code, out in results] == [True, True, True]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_to_the_client_reach_the_run_and_its_death_is_reported(server, tmp_path, signum):
    _, sock = server
    pid_file = tmp_path / "child.pid"
    client = subprocess.Popen([sys.executable, str(WARMSTART), "--socket", str(sock), *TARGET, "sleep", str(pid_file)],
                              cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the child to start")
    child = int(pid_file.read_text())
    client.send_signal(signum)
    code = client.wait(timeout=30)
    _wait_for(lambda: not _alive(child), "the child to die")
    # the child dies of the signal (SIGINT: an uncaught KeyboardInterrupt, as in Python), so does the client
    assert code == -signum, client.stderr.read()


def test_a_killed_client_takes_its_run_with_it(server, tmp_path):
    _, sock = server
    pid_file = tmp_path / "child.pid"
    client = subprocess.Popen([sys.executable, str(WARMSTART), "--socket", str(sock), *TARGET, "sleep", str(pid_file)],
                              cwd=tmp_path, env=_env())
    _wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the child to start")
    child = int(pid_file.read_text())
    client.kill()  # SIGKILL cannot be forwarded: the server sees the connection close
    client.wait(timeout=10)
    _wait_for(lambda: not _alive(child), "the server to kill the orphaned run", timeout=10)


def test_without_a_server_the_client_starts_cold(tmp_path):
    done = _client(tmp_path / "no-server.sock", ["report", "5"], cwd=tmp_path, WARM_TEST_VALUE="cold")
    assert done.returncode == 5
    assert "warm start unavailable" in done.stderr and "starting cold" in done.stderr
    assert "env=cold" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("preloaded_by"))
    preloaded_by, me, _ = (int(part.split("=")[1]) for part in line.split())
    assert preloaded_by == me, "cold: the module was imported by the run's own process"


def test_server_refuses_to_fork_after_a_preload_started_a_thread(tmp_path):
    sock = Path(f"/tmp/warm-test-threads-{os.getpid()}.sock")
    done = subprocess.run(
        [sys.executable, str(WARMSTART), "serve", "--socket", str(sock), "--preload", "tests.unit.warm_threads"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "forking is unsafe" in done.stderr
    assert not sock.exists()
