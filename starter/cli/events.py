"""``enrollments events``: read the event stream (``list``, ``--follow``) and send events again (``redeliver``).

Events are read from the database (``--database-url``), oldest first, after a cursor that each page prints
(``--after``). ``redeliver`` also reaches Temporal: it wakes the endpoint's delivery workflow.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from activities.persistence import Store
from adapters.events import Event, EventPage, EventType
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_client, with_store
from starter.cli.output import when
from starter.cli.parsing import parse_aware_datetime

FOLLOW_SECONDS = 1.0
"""How often ``--follow`` looks for new events."""

events_app = typer.Typer(name="events", help="The event stream: what happened to enrollments and orders.")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app)


def parse_types(values: list[str] | None) -> list[EventType] | None:
    """``--type`` values (repeated or comma-separated) as event types; an unknown one names the known ones."""
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    known = ", ".join(event_type.value for event_type in EventType)
    try:
        return [EventType(name) for name in names] or None
    except ValueError:
        unknown = next(name for name in names if name not in {event_type.value for event_type in EventType})
        raise CliError(f"--type: unknown event type {unknown!r} (known: {known})") from None


def _line(event: Event) -> str:
    return f"{when(event.occurred_at)}  {event.type:<26} {event.enrollment_id}  #{event.sequence}  {event.id}"


def _print_page(page: EventPage, *, as_json: bool, compact: bool) -> None:
    if as_json:
        payload = page.model_dump(mode="json")
        if compact:
            typer.echo(json.dumps(payload, ensure_ascii=False))
        else:
            echo_json(payload)
        return
    for event in page.events:
        typer.echo(_line(event))


@events_app.command("list")
def list_events(
    ctx: typer.Context,
    enrollment: Annotated[str | None, typer.Option("--enrollment", help="Only this enrollment's events.")] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="Only these types (repeat, or comma-separate).")
    ] = None,
    after: Annotated[str | None, typer.Option("--after", help="The cursor a previous page printed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000, help="Events per page.")] = 100,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new events until Ctrl-C.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Events oldest first: a page, or with --follow everything new as it is written.

    --json prints {"events": [...], "next_cursor": …}; with --follow one such object per line and batch.
    """
    wanted = parse_types(types)

    async def read(store: Store) -> str | None:
        cursor = after
        while True:
            page = await store.events.page(after=cursor, limit=limit, types=wanted, enrollment_id=enrollment)
            if page.events or not follow:
                _print_page(page, as_json=as_json, compact=follow)
            cursor = page.next_cursor
            if not follow:
                return cursor
            if len(page.events) < limit:
                await asyncio.sleep(FOLLOW_SECONDS)

    try:
        cursor = with_store(ctx, read)
    except KeyboardInterrupt:  # --follow ends with Ctrl-C
        return
    if not as_json:
        typer.echo(f"(next: --after {cursor})", err=True)


@events_app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Option("--endpoint", help="The webhook endpoint id.", show_default=False)],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Also send again every event recorded since then (ISO 8601 with offset)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver an endpoint's waiting events now (also a failing endpoint's); with --since, older ones again."""
    moment: datetime | None = parse_aware_datetime("--since", since) if since is not None else None
    pending = with_client(ctx, lambda client: client.redeliver_events(endpoint, since=moment))
    if as_json:
        echo_json({"endpoint_id": endpoint, "pending": pending})
    else:
        typer.echo(f"endpoint {endpoint}: {pending} deliveries waiting; delivering now")
