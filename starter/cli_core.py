"""The ``enrollments`` command line's shared parts: the app, global options, parsing and one error path.

Command modules (``starter/cli.py`` and the ``starter/cli_*.py`` topics it imports) add their commands to
:data:`app` (or a sub-app) and read the global options from :func:`state`. Every command runs through one
error path (:meth:`_Group.invoke`): invalid input (pydantic ``ValidationError``, ``ValueError``, our domain
errors, :class:`CliError`) becomes one ``error: …`` line on stderr and exit status 2; any other failure one
line and status 1. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from typer.core import TyperGroup

from adapters.director import NoAdapterForPlanError, UnknownAdapterError
from adapters.domain import ProductPlan, TimezoneName
from starter.settings import Settings

EXIT_RUNTIME = 1
EXIT_USAGE = 2
MAX_PREVIEW_PERIODS = 1_000


class CliError(Exception):
    """A failure to report as one line on stderr, with the process's exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _problem(detail: ErrorDetails) -> str:
    """One pydantic error as a short phrase that follows the field name."""
    kind, context = detail["type"], detail.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "greater_than":
        return f"must be greater than {context['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "less_than":
        return f"must be less than {context['lt']}"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "enum":
        return f"must be one of {context['expected']}, got {detail['input']!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "json_invalid":
        return f"is not valid JSON ({context['error']})"
    if kind == "value_error":
        return str(context["error"])
    message = detail["msg"]
    return message[:1].lower() + message[1:]


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """A pydantic error as one line naming each field, e.g. ``plan.billing_interval_count: must be at least 1``."""
    parts = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in (prefix, *detail["loc"]) if part != "")
        problem = _problem(detail)
        parts.append(f"{location}: {problem}" if location else problem)
    return " ".join("; ".join(parts).split())


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
            message, exit_code = error.format_message(), EXIT_USAGE
            error_to_show: Exception = error
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # help, --help, usage errors, aborts: typer renders and exits as usual
        except Exception as error:
            message, exit_code = _summarize(error)
            error_to_show = error
        if ctx.params.get("debug"):
            traceback.print_exception(error_to_show)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(exit_code)


@dataclass
class CliState:
    """The global options; the ones left out come from :class:`Settings` (environment) when first used."""

    debug: bool = False
    database_url_option: str | None = None
    address_option: str | None = None
    namespace_option: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings

    @property
    def database_url(self) -> str:
        return self.database_url_option or self.settings.database_url

    @property
    def temporal_address(self) -> str:
        return self.address_option or self.settings.temporal_address

    @property
    def temporal_namespace(self) -> str:
        return self.namespace_option or self.settings.temporal_namespace

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


def not_blank(option: str, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise CliError(f"{option}: must not be empty")
    return None if value is None else value.strip()


app = typer.Typer(
    name="enrollments",
    cls=_Group,
    help="Durable enrollments: subscriptions where every enrollment is a Temporal workflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(name="db", help="The application database.", no_args_is_help=True)
app.add_typer(db_app)


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Print the traceback of an error.")] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="SQLAlchemy URL (default: $DATABASE_URL, else a local SQLite file)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Temporal frontend host:port (default: $TEMPORAL_ADDRESS, else localhost:7233)."
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


def parse_plan(text: str, option: str = "plan") -> ProductPlan:
    """A plan from its JSON; errors name the field, e.g. ``plan.billing_interval``."""
    try:
        return ProductPlan.model_validate_json(text)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix=option)) from error


def parse_aware_datetime(option: str, text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset or ``Z``; a naive one is an error naming ``option``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: {text!r} is not an ISO 8601 date-time such as 2031-01-31T00:00:00Z") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise CliError(f"{option}: {text!r} has no UTC offset; add Z or an offset such as +01:00")
    return value


def parse_timezone(option: str, text: str) -> str:
    """An IANA time zone name, checked like the domain checks it."""
    try:
        return TypeAdapter(TimezoneName).validate_python(text)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix=option)) from error


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database>"
