"""``enrollments usage record``: record usage of a metered enrollment, from the shell.

Usage goes straight into the database (``--database-url``), like ``EnrollmentsClient.record_usage``:
the enrollment's workflow reads the totals when it bills a period after the period ends. The idempotency
key makes a repeat harmless (reported as ``duplicate``, with the time stored the first time); the same key
with other units, late usage for a period that is billed already, and every other refusal exit 1 with the
reason on one line, as does an unknown enrollment (given by id or number); invalid input (negative units,
an ``--at`` without offset) exits 2.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from activities.persistence import Store
from adapters.domain import isoformat_utc
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_store
from starter.cli.output import echo_lines
from starter.cli.parsing import EnrollmentArgument, parse_aware_datetime
from starter.client.references import enrollment_id_of

usage_app = typer.Typer(name="usage", help="Usage of metered enrollments (billed after each period).")


def register(app: typer.Typer) -> None:
    app.add_typer(usage_app)


@usage_app.command("record")
def record(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
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

    async def record_usage(store: Store) -> tuple[str, bool, datetime]:
        identifier = await enrollment_id_of(store, enrollment_id)
        recorded = await store.usage.record(identifier, units, key, moment, now=datetime.now(UTC))
        stored_at = moment if recorded else await store.usage.recorded_at(identifier, key)
        return identifier, recorded, stored_at or moment

    identifier, recorded, stored_at = with_store(ctx, record_usage)
    if as_json:
        payload = {
            "enrollment_id": identifier,
            "key": key,
            "units": units,
            "at": isoformat_utc(stored_at),
            "recorded": recorded,
        }
        echo_json(payload)
        return
    outcome = "recorded" if recorded else "duplicate (already recorded with these units; the time is the stored one)"
    echo_lines([f"{identifier}: {units} units at {isoformat_utc(stored_at)} under key {key!r}: {outcome}"])
