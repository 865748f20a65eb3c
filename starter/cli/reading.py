"""Commands that read enrollments: ``status`` and ``access`` ask the workflow, ``list`` reads the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from activities.persistence import Store
from adapters.domain import Enrollment, EnrollmentStatus, Order, describe_status, isoformat_utc
from adapters.dunning import dunning_summary
from adapters.lifecycle import EnrollmentView
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_client, with_store
from starter.cli.output import echo_lines, table, table_lines, when
from starter.cli.parsing import EnrollmentArgument, choice, parse_aware_datetime

MAX_PAGE_SIZE = 500
MAX_OFFSET = 10**15
"""Largest ``--offset``: far beyond any table, well inside the databases' 64-bit OFFSET."""


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(access)
    app.command("list")(list_enrollments)


def _order_line(order: Order) -> str:
    window = f"{when(order.period_start)} → {when(order.period_end)}"
    return f"  {order.number}  {order.status}  {window}  id {order.id}"


def status(ctx: typer.Context, enrollment_id: EnrollmentArgument, as_json: JsonOption = False) -> None:
    """Show an enrollment as its workflow sees it: status, periods, orders, next wake-up, log."""
    view = with_client(ctx, lambda client: client.get_enrollment(enrollment_id))
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    rows = [
        ["id", view.id],
        ["number", view.number or "—"],
        ["status", describe_status(view.status, view.pause_reason)],
        ["product", f"{view.product_id} × {view.quantity}"],
        ["user", view.user_id],
        ["timezone", view.timezone],
        ["adapter", view.adapter_key or "—"],
        ["next wake-up", when(view.next_wake_up)],
        ["expires", when(view.expires)],
    ]
    if view.scheduled is not None:
        rows.append(["scheduled", f"{view.scheduled.kind} at {when(view.scheduled.at)}"])
    lines = [*table_lines(["FIELD", "VALUE"], rows), ""]
    if view.history_trimmed:
        lines.append("(the latest periods, orders and log entries; every one is in the database)")
    lines.append(f"periods ({len(view.periods)}):")
    for period in view.periods:
        trial = " trial" if period.is_trial else ""
        order = f"  order {period.order_id} {period.order_status or ''}".rstrip() if period.order_id else ""
        lines.append(f"  {when(period.start)} → {when(period.end)}{trial}{order}")
    lines.append(f"orders ({len(view.orders)}):")
    lines += [_order_line(order) for order in view.orders]
    if view.dunning:
        lines.append(f"dunning ({len(view.dunning)}):")
        lines += [f"  {dunning_summary(entry, when)}" for entry in view.dunning]
    if view.log:
        lines.append("log:")
        lines += [f"  {when(entry.at)}  {entry.status}  {entry.info}" for entry in view.log]
    echo_lines(lines)


def access(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
    at: Annotated[str | None, typer.Option("--at", help="When, ISO 8601 with offset (default: now).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the enrollment grants access at a moment (the adapter's rule: the workflow, or the database for
    moments older than the periods the workflow carries)."""
    moment = parse_aware_datetime("--at", at) if at is not None else datetime.now(UTC)
    valid = with_client(ctx, lambda client: client.is_valid_for_activation(enrollment_id, moment))
    if as_json:
        echo_json({"valid": valid, "at": isoformat_utc(moment)})
    else:
        typer.echo(f"{'valid' if valid else 'not valid'} at {isoformat_utc(moment)}")


def _view_from_row(enrollment: Enrollment, orders: list[Order]) -> EnrollmentView:
    return EnrollmentView(**enrollment.model_dump(), orders=orders)


def list_enrollments(
    ctx: typer.Context,
    status_filter: Annotated[
        EnrollmentStatus | None,
        typer.Option(
            "--status",
            parser=choice(EnrollmentStatus),
            help="Only this status (any case).",
        ),
    ] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user.")] = None,
    due_before: Annotated[
        str | None,
        typer.Option("--due-before", help="Only those whose workflow next acts on its own before this ISO time."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE_SIZE, help="Page size.")] = 50,
    offset: Annotated[
        int | None, typer.Option("--offset", min=0, max=MAX_OFFSET, help="Skip this many (oldest first).")
    ] = None,
    page: Annotated[
        int | None,
        typer.Option("--page", min=1, max=MAX_OFFSET // MAX_PAGE_SIZE, help="Page number (1-based), not --offset."),
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, with a progress display.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List enrollments from the database, oldest first, a page at a time."""
    if page is not None and offset is not None:
        raise CliError("--page and --offset exclude each other: --page N is --offset (N-1)×--limit")
    first = (page - 1) * limit if page is not None else offset or 0
    due = parse_aware_datetime("--due-before", due_before) if due_before is not None else None

    async def read(store: Store) -> list[EnrollmentView]:
        views: list[EnrollmentView] = []
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
            transient=True,
            disable=not all_pages,
        ) as progress:
            task = progress.add_task("reading enrollments", total=None)
            position = first
            while True:
                rows = await store.enrollments.matching(
                    status=status_filter,
                    product_id=product,
                    user_id=user,
                    due_before=due,
                    offset=position,
                    limit=limit,
                )
                for row in rows:
                    orders = await store.billing.list_orders(row.id) if as_json else []
                    views.append(_view_from_row(row, orders))
                position += len(rows)
                progress.update(task, description=f"reading enrollments: {len(views)}")
                if not all_pages or len(rows) < limit:
                    return views

    views = with_store(ctx, read)
    if as_json:
        echo_json([view.model_dump(mode="json") for view in views])
        return
    if not views:
        typer.echo("no enrollments match")
        return
    rows = []
    for view in views:
        latest = view.latest_period
        rows.append(
            [
                view.id,
                view.number or "",
                describe_status(view.status, view.pause_reason),
                view.product_id,
                view.user_id,
                when(latest.end) if latest else "—",
            ]
        )
    typer.echo(table(["ID", "NUMBER", "STATUS", "PRODUCT", "USER", "PERIOD ENDS"], rows))
    if not all_pages and len(views) == limit:
        next_page = f"--page {page + 1}" if page is not None else f"--offset {first + limit}"
        typer.echo(f"(more with {next_page} or --all)", err=True)
