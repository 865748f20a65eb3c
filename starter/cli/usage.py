"""``enrollments usage record``: record usage of a metered enrollment, from the shell.

Usage goes straight into the database (``--database-url``), like ``EnrollmentsClient.record_usage``:
the enrollment's workflow reads the totals when it bills a period after the period ends. The idempotency
key makes a repeat harmless (reported as ``duplicate``); the same key with other units, late usage for a
period that is billed already, and every other refusal exit 1 with the reason on one line, as does an
unknown enrollment; invalid input (negative units, an ``--at`` without offset) exits 2.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from adapters.domain import isoformat_utc
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_store
from starter.cli.parsing import parse_aware_datetime

usage_app = typer.Typer(name="usage", help="Usage of metered enrollments (billed after each period).")


def register(app: typer.Typer) -> None:
    app.add_typer(usage_app)


@usage_app.command("record")
def record(
    ctx: typer.Context,
    enrollment_id: Annotated[str, typer.Argument(help="The enrollment id.", show_default=False)],
    units: Annotated[int, typer.Option("--units", min=0, help="Units used (>= 0).", show_default=False)],
    key: Annotated[
        str,
        typer.Option("--key", help="Idempotency key: the same key again is the same record.", show_default=False),
    ],
    at: Annotated[
        str | None, typer.Option("--at", help="When the usage happened: ISO 8601 with offset or Z (default: now).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record usage of a metered enrollment (idempotent by --key)."""
    if not key.strip():
        raise CliError("--key: must not be empty")
    moment = parse_aware_datetime("--at", at) if at is not None else datetime.now(UTC)
    recorded = with_store(
        ctx, lambda store: store.usage.record(enrollment_id, units, key, moment, now=datetime.now(UTC))
    )
    if as_json:
        payload = {
            "enrollment_id": enrollment_id,
            "key": key,
            "units": units,
            "at": isoformat_utc(moment),
            "recorded": recorded,
        }
        echo_json(payload)
        return
    outcome = "recorded" if recorded else "duplicate (already recorded with these units)"
    typer.echo(f"{enrollment_id}: {units} units at {isoformat_utc(moment)} under key {key!r}: {outcome}")
