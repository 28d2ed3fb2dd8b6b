"""``python -m trip_duration`` runs the project like ``kedro run``."""

from kedro.framework.cli.utils import find_run_command


def main(*args, **kwargs):
    run = find_run_command("trip_duration")
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
