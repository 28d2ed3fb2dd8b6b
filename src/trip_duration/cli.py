"""Project CLI (Kedro loads ``<package>.cli``): Kedro's own ``kedro run``, with its options,
and with the errors a user can fix shown as one line that says what to change.

    kedro run --pipelines nonexistent  ->  no pipeline named 'nonexistent': use one of ...
    kedro run --pipelines inference --params batch_start=2023-04-01
                                       ->  batch_start is set but batch_end is not: ...

``kedro run --verbose ...`` shows the full traceback.
"""

from __future__ import annotations

import traceback

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import KedroCliError

from trip_duration.logs import project_error
from trip_duration.pipeline_registry import pipeline_names


class UserError(click.ClickException):
    """One line on stderr, exit code 2; the traceback only with ``kedro run --verbose``."""

    exit_code = 2

    def show(self, file=None) -> None:
        if KedroCliError.VERBOSE_ERROR and self.__cause__ is not None:
            traceback.print_exception(self.__cause__)
        click.secho(f"Error: {self.format_message()}", fg="red", err=True)


_VERBOSE = click.Option(["--verbose", "-v"], is_flag=True, help="Show the full traceback of an error.")


@click.group(name="trip_duration")
def cli() -> None:
    """Project commands."""


@cli.command(name="run", params=[*kedro_run.params, _VERBOSE], help=kedro_run.help)
@click.pass_context
def run(ctx: click.Context, verbose: bool, **kwargs) -> None:
    KedroCliError.VERBOSE_ERROR = verbose
    requested = [name for name in [kwargs.get("pipeline"), *(kwargs.get("pipelines") or [])] if name]
    known = pipeline_names()
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise UserError(
            f"no pipeline named {unknown[0]!r}: use one of {', '.join(sorted(known))} "
            "(e.g. kedro run --pipelines ingest --params month=2023-01)"
        )
    try:
        ctx.invoke(kedro_run, **kwargs)
    except Exception as err:
        ours = project_error(err)
        if ours is None:
            raise
        raise UserError(str(ours)) from err
