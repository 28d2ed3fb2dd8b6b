"""What the warm-start tests run in a forked child: ``-m tests.unit.warm_target ACTION ...``."""

import os
import sys
import time

import tests.unit.warm_marker as marker


def main(argv: list[str]) -> int:
    action = argv[0]
    if action == "report":  # environment, directory, stdio, preloading, exit status
        print(f"env={os.environ.get('WARM_TEST_VALUE')}")
        print(f"cwd={os.getcwd()}")
        print(f"argv={','.join(argv[2:])}")
        print(f"preloaded_by={marker.IMPORTED_IN_PID} me={os.getpid()} parent={os.getppid()}")
        print("to-stderr", file=sys.stderr)
        return int(argv[1])
    if action == "sleep":  # for signal tests: says who it is, then waits
        with open(argv[1], "w") as out:
            out.write(str(os.getpid()))
        time.sleep(120)
        return 0
    if action == "raise":
        raise ValueError("boom from the child")
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
