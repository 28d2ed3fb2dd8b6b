"""Long waits say what they are doing and that they are still moving (standard library only:
the bootstrap imports this before any dependency is installed).

    run_streamed(argv, "installing the locked environment")   # a command's own lines, plus a
                                                               # heartbeat after 5 s of silence
    with heartbeat("waiting for MLflow"): ...                  # a line every 5 s while it lasts
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

QUIET_AFTER_S = 5.0


def say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def heartbeat(what: str, every: float = QUIET_AFTER_S, out: Callable[[str], None] = say) -> Iterator[Callable[[], None]]:
    """Print ``  ... <what> (Ns)`` every ``every`` seconds of silence until the block ends.

    Yields ``touch()``: call it when something else was printed, to restart the silence clock.
    """
    started = last = time.monotonic()
    done = threading.Event()
    lock = threading.Lock()

    def touch() -> None:
        nonlocal last
        with lock:
            last = time.monotonic()

    def beat() -> None:
        nonlocal last
        while not done.wait(0.5):
            with lock:
                if time.monotonic() - last < every:
                    continue
                last = time.monotonic()
            out(f"  ... {what} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield touch
    finally:
        done.set()
        thread.join()


def run_streamed(argv: list[str], what: str, show: Callable[[str], str | None] = lambda line: line,
                 indent: str = "  ", **popen) -> tuple[int, str]:
    """Run ``argv``, echoing what ``show`` makes of each output line (None: skip it), with a
    heartbeat in the silences. Returns (exit code, the whole output) for a caller to report a failure.
    """
    lines: list[str] = []
    with heartbeat(what) as touch:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                **popen)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            text = show(line.rstrip()) if line.strip() else None
            if text:
                say(f"{indent}{text}")
                touch()
        code = proc.wait()
    return code, "".join(lines)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
