"""infra/pod_log.py, the two halves that keep a flow-run pod's output in S3 (README: Logs that outlive
pods), run as the pod runs them: real processes, signals and a real S3 server (moto) over HTTP.
The cluster e2e runs them in real pods (tests/cluster/test_e2e.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from infra.pod_log import earlier_pods, key_for, pod_header

ROOT = Path(__file__).resolve().parents[2]
POD_LOG = [sys.executable, "-I", str(ROOT / "infra" / "pod_log.py")]
pytestmark = pytest.mark.usefixtures("ml_stack")


def _env(stack, run_id: str, pod: str = "train-abc12-xyz", **extra: str) -> dict[str, str]:
    return {**os.environ, **stack.env(), "HOSTNAME": pod, "TRIP_DURATION_LOG_FLOW": "training",
            "TRIP_DURATION_LOG_DEPLOYMENT": "train", "TRIP_DURATION_LOG_FLOW_RUN_ID": run_id, **extra}


class Pod:
    """One pod's two containers: the sidecar started first (as Kubernetes starts native sidecars)."""

    def __init__(self, stack, tmp_path: Path, run_id: str, pod: str = "train-abc12-xyz", every: float = 0.3):
        self.stack, self.file, self.env = stack, tmp_path / f"{pod}.log", _env(stack, run_id, pod)
        self.sidecar = subprocess.Popen([*POD_LOG, "ship", "--file", str(self.file), "--every", str(every)],
                                        env=self.env, stderr=subprocess.PIPE, text=True)

    def tee(self, *command: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([*POD_LOG, "tee", "--file", str(self.file), "--await-shipper", "30", "--",
                                 *command], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)

    def stop_sidecar(self) -> str:
        """What the kubelet does once the flow-run container ended: SIGTERM the sidecar."""
        self.sidecar.send_signal(signal.SIGTERM)
        _, err = self.sidecar.communicate(timeout=60)
        assert self.sidecar.returncode == 0, err
        return err


def _object(stack, run_id: str) -> str:
    s3 = boto3.client("s3", endpoint_url=stack.s3_url)
    return s3.get_object(Bucket=stack.bucket, Key=key_for("training", "train", run_id))["Body"].read().decode()


def test_the_pods_output_reaches_stdout_and_s3_with_the_commands_exit_status(ml_stack, tmp_path):
    run_id = str(uuid.uuid4())
    pod = Pod(ml_stack, tmp_path, run_id)
    child = pod.tee(sys.executable, "-c",
                    "import sys; print('to stdout', flush=True); print('to stderr', file=sys.stderr); sys.exit(3)")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 3  # the worker sees the command's own status
    assert b"to stdout" in out and b"to stderr" in out  # kubectl logs still shows both
    err = pod.stop_sidecar()
    assert f"s3://{ml_stack.bucket}/logs/training/train/{run_id}.log" in err
    text = _object(ml_stack, run_id)
    assert text.startswith("===== pod train-abc12-xyz started ")
    assert "to stdout\n" in text and "to stderr\n" in text
    assert text.rstrip().endswith("exited with code 3")


def test_a_command_that_cannot_start_is_in_the_log_with_127(ml_stack, tmp_path):
    """A crash before Prefect started: nothing reached Prefect's API, the S3 log says why."""
    run_id = str(uuid.uuid4())
    pod = Pod(ml_stack, tmp_path, run_id)
    child = pod.tee("prefect-no-such-command", "flow-run", "execute")
    _, err = child.communicate(timeout=60)
    assert child.returncode == 127
    assert b"cannot start ['prefect-no-such-command', 'flow-run', 'execute']" in err
    pod.stop_sidecar()
    text = _object(ml_stack, run_id)
    assert "cannot start ['prefect-no-such-command'" in text and "No such file or directory" in text


def test_a_container_killed_whole_keeps_what_it_printed_and_the_log_is_shipped_while_it_runs(ml_stack, tmp_path):
    """The kernel's OOM killer kills the whole flow-run container (tee and command: SIGKILL, no
    chance to react); the sidecar, in its own cgroup, ships what the file holds. Before that, the
    periodic upload already has the first line while the command still runs."""
    run_id = str(uuid.uuid4())
    pod = Pod(ml_stack, tmp_path, run_id)
    child = pod.tee(sys.executable, "-c", "import time; print('loading 3M rows', flush=True); time.sleep(600)")
    deadline = time.monotonic() + 30
    while "loading 3M rows" not in (_try_object(ml_stack, run_id) or ""):
        assert time.monotonic() < deadline, "the periodic upload never showed the running command's output"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the container's cgroup, killed at once
    child.wait(timeout=30)
    pod.stop_sidecar()
    text = _object(ml_stack, run_id)
    assert "loading 3M rows" in text and "exited with code" not in text  # nothing after the kill, nothing lost before


def _try_object(stack, run_id: str) -> str | None:
    try:
        return _object(stack, run_id)
    except Exception:  # noqa: BLE001 - not uploaded yet
        return None


def test_sigterm_reaches_the_command_and_its_last_words_are_kept(ml_stack, tmp_path):
    """A deleted pod's container gets SIGTERM: tee passes it on (Prefect reschedules the run on it)."""
    run_id = str(uuid.uuid4())
    pod = Pod(ml_stack, tmp_path, run_id)
    script = ("import signal, sys, time\n"
              "def bye(*_):\n    print('rescheduling on SIGTERM', flush=True); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('running', flush=True)\ntime.sleep(600)\n")
    child = pod.tee(sys.executable, "-c", script)
    assert child.stdout.readline() == b"running\n"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 0
    pod.stop_sidecar()
    assert "running\nrescheduling on SIGTERM\n" in _object(ml_stack, run_id)


def test_a_second_pod_of_the_same_flow_run_appends_and_a_restarted_sidecar_does_not_repeat(ml_stack, tmp_path):
    run_id = str(uuid.uuid4())
    first = Pod(ml_stack, tmp_path, run_id, pod="train-abc12-one")
    first.tee(sys.executable, "-c", "print('first attempt')").wait(timeout=60)
    first.stop_sidecar()
    second = Pod(ml_stack, tmp_path, run_id, pod="train-abc12-two")
    second.tee(sys.executable, "-c", "print('second attempt')").wait(timeout=60)
    second.stop_sidecar()
    again = Pod(ml_stack, tmp_path, run_id, pod="train-abc12-two")  # the kubelet restarted the sidecar
    assert "shipping" in again.sidecar.stderr.readline()  # up: it read the object, then it is stopped
    again.stop_sidecar()
    text = _object(ml_stack, run_id)
    assert text.count("===== pod train-abc12-one") == 1 and text.count("===== pod train-abc12-two") == 1, text
    assert text.index("first attempt") < text.index("===== pod train-abc12-two") < text.index("second attempt")


def test_without_a_flow_run_id_the_sidecar_says_so_and_waits_to_be_stopped(ml_stack, tmp_path):
    env = _env(ml_stack, "")
    sidecar = subprocess.Popen([*POD_LOG, "ship", "--file", str(tmp_path / "pod.log"), "--every", "0.2"],
                               env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert sidecar.poll() is None  # a native sidecar that exits would be restarted in a loop
    sidecar.send_signal(signal.SIGTERM)
    _, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0
    assert "not shipping this pod's log: no flow-run id" in err and "prefect.io/flow-run-id" in err


def test_the_file_copy_is_bounded_and_says_where_the_rest_is(ml_stack, tmp_path):
    log = tmp_path / "pod.log"
    child = subprocess.run([*POD_LOG, "tee", "--file", str(log), "--max-bytes", "1000", "--", sys.executable, "-c",
                            "print('x' * 99, flush=True)\n" * 30], capture_output=True, timeout=60)
    assert child.returncode == 0 and child.stdout.count(b"x" * 99) == 30  # stdout has it all
    text = log.read_text()
    assert len(text) < 1200 and text.count("x" * 99) == 10
    assert "the log passed 1000 bytes: the rest is only on the pod's stdout" in text


def test_keys_and_pod_sections():
    assert key_for("training", "train", "0f3c") == "logs/training/train/0f3c.log"
    assert key_for("in ference", "../x", "id/1") == "logs/in-ference/x/id-1.log"
    with pytest.raises(ValueError, match="prefect.io/flow-run-id"):
        key_for("training", "train", "")
    import datetime as dt

    one = pod_header("a", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) + b"one\n"
    two = pod_header("b", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) + b"two\n"
    assert earlier_pods(one + two, "b") == one and earlier_pods(one, "b") == one and earlier_pods(one, "a") == b""


def _cli(stack, *args: str) -> subprocess.CompletedProcess:
    trip_duration = Path(sys.executable).with_name("trip-duration")
    return subprocess.run([str(trip_duration), *args], env={**os.environ, **stack.env()}, capture_output=True,
                          text=True, timeout=120)


def test_the_readmes_trip_duration_logs_prints_a_runs_log_by_its_id(ml_stack, tmp_path):
    """README, "Logs that outlive pods": `trip-duration logs <flow-run-id>` finds the key without the deployment."""
    run_id = str(uuid.uuid4())
    pod = Pod(ml_stack, tmp_path, run_id)
    pod.tee(sys.executable, "-c", "print('Running node: evaluate')").wait(timeout=60)
    pod.stop_sidecar()
    found = _cli(ml_stack, "logs", run_id)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("===== pod train-abc12-xyz") and "Running node: evaluate\n" in found.stdout
    assert _cli(ml_stack, "logs", run_id, "--deployment", "training/train").stdout == found.stdout
    other = str(uuid.uuid4())
    missing = _cli(ml_stack, "logs", other)
    assert missing.returncode == 2
    assert f"no log of flow run {other} under s3://{ml_stack.bucket}/logs/" in missing.stderr
    bad = _cli(ml_stack, "logs", "train-abc12")
    assert bad.returncode == 2 and "flow-run id 'train-abc12' is not a UUID" in bad.stderr
    bad = _cli(ml_stack, "logs", run_id, "--deployment", "train")
    assert bad.returncode == 2 and "--deployment 'train' is not FLOW/DEPLOYMENT" in bad.stderr
