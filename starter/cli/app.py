"""The ``enrollments`` app: global options and one error path for every command.

:func:`new_app` makes the app; the command modules of this package register their commands on it
(:func:`starter.cli.build_app`) and read the global options from :func:`state`. Every command runs through one
error path (:meth:`_Group.invoke`): invalid input (pydantic ``ValidationError``, ``ValueError``, our domain
errors, :class:`CliError`) becomes one ``error: …`` line on stderr and exit status 2; any other failure one
line and status 1. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from adapters.director import NoAdapterForPlanError, UnknownAdapterError
from adapters.text import printable
from adapters.validation import describe_validation_error
from starter.cli.errors import EXIT_RUNTIME, EXIT_USAGE, CliError
from starter.cli.locate import Location, locate
from starter.cli.parsing import not_blank
from starter.connection import Settings


def _summarize(error: Exception) -> tuple[str, int]:
    """The one-line message and exit status for an error that escaped a command."""
    if isinstance(error, CliError):
        return error.message, error.exit_code
    if isinstance(error, ValidationError):  # before ValueError: it is one
        return describe_validation_error(error), EXIT_USAGE
    if isinstance(error, ValueError | NoAdapterForPlanError | UnknownAdapterError):
        return str(error), EXIT_USAGE
    return f"{type(error).__name__}: {error}", EXIT_RUNTIME


class _Group(TyperGroup):
    """The root command group: runs every subcommand through the shared error path."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except typer.BadParameter as error:  # also a missing option: one line, like our own usage errors
            if isinstance(error.__cause__, ValidationError):  # typer's conversion: say what is wrong, plainly
                error.message = describe_validation_error(error.__cause__)
            message, exit_code = error.format_message(), EXIT_USAGE
            error_to_show: Exception = error
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # help, --help, usage errors, aborts: typer renders and exits as usual
        except Exception as error:
            message, exit_code = _summarize(error)
            error_to_show = error
        if ctx.params.get("debug"):
            traceback.print_exception(error_to_show)
        typer.echo(f"error: {printable(message)}", err=True)
        raise typer.Exit(exit_code)


@dataclass
class CliState:
    """The global options; the ones left out are found when first used (:mod:`starter.cli.locate`)."""

    debug: bool = False
    database_url_option: str | None = None
    address_option: str | None = None
    namespace_option: str | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _location: Location | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings

    @property
    def location(self) -> Location:
        """The database and Temporal server: options, environment, the dev stack's announcement, defaults."""
        if self._location is None:
            self._location = locate(
                self.settings,
                database_option=self.database_url_option,
                address_option=self.address_option,
                namespace_option=self.namespace_option,
                directory=Path.cwd(),
            )
        return self._location

    @property
    def database_url(self) -> str:
        return self.location.database_url

    @property
    def temporal_address(self) -> str:
        return self.location.temporal_address

    @property
    def temporal_namespace(self) -> str:
        return self.location.temporal_namespace

    def effective_settings(self) -> Settings:
        """The settings with the global command-line options applied over the environment."""
        return self.settings.model_copy(
            update={
                "database_url": self.database_url,
                "temporal_address": self.temporal_address,
                "temporal_namespace": self.temporal_namespace,
            }
        )


def state(ctx: typer.Context) -> CliState:
    """The global options of the running command line."""
    found = ctx.find_object(CliState)
    return found if found is not None else CliState()


def new_app() -> typer.Typer:
    """The root app with the global options, before any command is registered."""
    app = typer.Typer(
        name="enrollments",
        cls=_Group,
        help="Durable enrollments: subscriptions where every enrollment is a Temporal workflow.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_global_options)
    return app


def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Print the traceback of an error.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL (default: $DATABASE_URL, else the database of the `enrollments dev` found in "
            "this directory or a parent).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Temporal frontend host:port (default: $TEMPORAL_ADDRESS, else the dev stack's, else localhost:7233).",
        ),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE, else default).")
    ] = None,
) -> None:
    ctx.obj = CliState(
        debug=debug,
        database_url_option=not_blank("--database-url", database_url),
        address_option=not_blank("--address", address),
        namespace_option=not_blank("--namespace", namespace),
    )
