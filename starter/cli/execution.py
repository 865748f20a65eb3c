"""How CLI commands run their async work: connections, JSON output and one-line errors.

Every command that talks to Temporal or the database runs through :func:`run_async`, so an unknown
enrollment, a refused command, an unreachable server or a missing table reads the same everywhere:
one line on stderr, exit 1. The commands open the database without creating it: a missing SQLite file is
an error that says where the command looked (:mod:`starter.cli.locate`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import DBAPIError
from temporalio.service import RPCError, RPCStatusCode

from activities.persistence import DatabaseNotFound, PersistenceError, Store, open_store, redacted
from adapters.lifecycle import ErrorType
from starter.cli.app import CliState, state
from starter.cli.errors import EXIT_RUNTIME, EXIT_USAGE, CliError
from starter.client import EnrollmentClientError, EnrollmentCommandRejected, EnrollmentsClient
from starter.connection import Settings
from starter.runtime.schedules import ScheduleNotFound

T = TypeVar("T")

INVALID_VALUE_ERRORS = frozenset({ErrorType.INVALID_START, ErrorType.INVALID_SCHEDULE})
"""Refusals of a value the caller typed (a start, a schedule), not of what the engine holds: exit status 2."""

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def run_async(settings: Settings, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` on a new event loop, turning the client's and the database's errors into one-line errors."""
    try:
        return asyncio.run(work())
    except Exception as error:
        mapped = _mapped_error(settings, error)
        _release_frames(error)
        if mapped is None:
            raise
        raise mapped from error
    finally:
        # Free the Temporal client now: collected during interpreter shutdown, its native threads can abort
        # the process (temporalio/sdk-python#300). Tracebacks keep no locals (see _release_frames).
        gc.collect()


@asynccontextmanager
async def connected_client(settings: Settings) -> AsyncIterator[EnrollmentsClient]:
    client = await EnrollmentsClient.connect(settings)
    try:
        yield client
    finally:
        await client.close()


def with_client(ctx: typer.Context, call: Callable[[EnrollmentsClient], Awaitable[T]]) -> T:
    """Run ``call`` with a client connected by the command line's settings; errors as one line."""
    options = state(ctx)
    settings = options.effective_settings()

    async def work() -> T:
        async with connected_client(settings) as client:
            return await call(client)

    return run_async(settings, lambda: _named_database(options, work()))


def with_store(ctx: typer.Context, call: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``call`` with the store of the command line's database (never created here); errors as one line."""
    options = state(ctx)
    settings = options.effective_settings()

    async def work() -> T:
        async with open_store(settings.database_url, create_missing=False) as store:
            return await call(store)

    return run_async(settings, lambda: _named_database(options, work()))


async def _named_database(options: CliState, work: Awaitable[T]) -> T:
    """``work``, with a missing database reported with where the command looked for it."""
    try:
        return await work
    except DatabaseNotFound as error:
        raise options.location.missing(error) from None


def _release_frames(error: BaseException) -> None:
    """Drop the local variables (the client, the engine) of every frame in ``error``'s tracebacks."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _mapped_error(settings: Settings, error: Exception) -> CliError | None:
    """The one-line error for a failure of the client, Temporal or the database; None for anything else."""
    if isinstance(error, EnrollmentCommandRejected) and error.error_type in INVALID_VALUE_ERRORS:
        return CliError(str(error), EXIT_USAGE)
    # Not found, a refused command or usage record, a conflicting idempotency key.
    if isinstance(error, EnrollmentClientError | PersistenceError | ScheduleNotFound):
        return CliError(str(error), EXIT_RUNTIME)
    unreachable = CliError(f"cannot reach Temporal at {settings.temporal_address}", EXIT_RUNTIME)
    if isinstance(error, RPCError):
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return unreachable
        if error.status is RPCStatusCode.NOT_FOUND and "namespace" in error.message.lower():
            return CliError(
                f"namespace {settings.temporal_namespace!r} not found at {settings.temporal_address}", EXIT_RUNTIME
            )
        return CliError(f"Temporal at {settings.temporal_address}: {error.message}", EXIT_RUNTIME)
    if isinstance(error, DBAPIError | OSError):  # OSError: the database server refused the connection
        return _database_problem(settings, error)
    if isinstance(error, RuntimeError) and str(error).startswith("Failed client connect"):
        return unreachable
    return None


def _database_problem(settings: Settings, error: Exception) -> CliError:
    detail = str(error.orig if isinstance(error, DBAPIError) else error).strip().splitlines()[0]
    hint = ""
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        hint = "; run `enrollments db upgrade` first"
    return CliError(f"cannot use the database at {redacted(settings.database_url)}: {detail}{hint}", EXIT_RUNTIME)
