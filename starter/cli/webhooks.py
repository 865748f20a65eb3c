"""``enrollments webhook``: register, list and remove webhook endpoints, and show their delivery attempts.

``list`` and ``deliveries`` read the database only; ``add`` and ``remove`` also reach Temporal.

``add`` stores the endpoint and starts its delivery workflow (a running worker delivers from then on); a URL
that is not http(s) or carries credentials, or a secret under 16 characters, is refused (exit 2) and nothing is
stored.
"""

from __future__ import annotations

from typing import Annotated

import typer

from starter.cli.events import parse_types
from starter.cli.execution import JsonOption, echo_json, with_client, with_store
from starter.cli.output import table, when

webhook_app = typer.Typer(name="webhook", help="Webhook endpoints: signed POSTs of every event.", no_args_is_help=True)

EndpointArgument = Annotated[str, typer.Argument(help="The endpoint id.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app)


@webhook_app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST: an http:// or https:// URL.", show_default=False)],
    secret: Annotated[
        str, typer.Option("--secret", help="Shared secret the signature uses (16+ characters).", show_default=False)
    ],
    events: Annotated[
        str | None, typer.Option("--events", help="Only these event types, comma-separated (default: all).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint for every event from now on; print its id."""
    wanted = parse_types([events] if events is not None else None)
    endpoint = with_client(ctx, lambda client: client.add_webhook(url, secret, events=wanted))
    if as_json:
        echo_json({"endpoint_id": endpoint.id})
    else:
        typer.echo(endpoint.id)


@webhook_app.command("list")
def list_endpoints(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every endpoint: status (failing once retries ran out), pending and delivered events, the last error."""
    endpoints = with_store(ctx, lambda store: store.webhooks.all())
    if as_json:
        echo_json([{**endpoint.model_dump(mode="json"), "status": endpoint.status} for endpoint in endpoints])
        return
    if not endpoints:
        typer.echo("no webhook endpoints")
        return
    rows = [
        [
            endpoint.id,
            endpoint.status if endpoint.failing_since is None else f"failing since {when(endpoint.failing_since)}",
            endpoint.url,
            "all" if endpoint.event_types is None else ",".join(endpoint.event_types),
            str(endpoint.pending),
            str(endpoint.delivered),
            endpoint.last_error or "",
        ]
        for endpoint in endpoints
    ]
    typer.echo(table(["ID", "STATUS", "URL", "EVENTS", "PENDING", "DELIVERED", "LAST ERROR"], rows))


@webhook_app.command("remove")
def remove(ctx: typer.Context, endpoint_id: EndpointArgument) -> None:
    """Delete an endpoint and its delivery records; its delivery workflow ends."""
    with_client(ctx, lambda client: client.remove_webhook(endpoint_id))
    typer.echo(f"removed webhook endpoint {endpoint_id}")


@webhook_app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    endpoint_id: EndpointArgument,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1_000, help="Attempts to show.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """An endpoint's latest delivery attempts, newest first: status code or error, and when."""
    attempts = with_store(ctx, lambda store: store.webhooks.attempts(endpoint_id, limit=limit))
    if as_json:
        echo_json([attempt.model_dump(mode="json") for attempt in attempts])
        return
    if not attempts:
        typer.echo("no delivery attempts yet")
        return
    rows = [
        [
            when(attempt.at),
            attempt.event_id,
            attempt.event_type,
            "—" if attempt.status_code is None else str(attempt.status_code),
            str(attempt.duration_ms),
            attempt.error or "",
        ]
        for attempt in attempts
    ]
    typer.echo(table(["AT", "EVENT", "TYPE", "STATUS", "MS", "ERROR"], rows))
