"""The operators' commands: products, enrollments and their lifecycle, from the shell.

``product create|list|show`` and ``list`` read and write the database (``--database-url``); ``create``,
``pause``, ``resume``, ``terminate``, ``order-status``, ``status`` and ``access`` go through Temporal
(``--address``, ``--namespace``) with :class:`starter.client.EnrollmentsClient`. Every command prints
something short for people, and JSON with ``--json`` (datetimes in UTC, ``Z``).

Errors are one line on stderr: an unknown enrollment, product or order and a refused command (an invalid
transition) exit 1, as does an unreachable Temporal server or database; invalid input exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from adapters.domain import (
    Configuration,
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    Product,
    ProductType,
    isoformat_utc,
)
from starter.cli_core import (
    EXIT_RUNTIME,
    CliError,
    app,
    describe_validation_error,
    parse_aware_datetime,
    parse_plan,
    parse_timezone,
    state,
)
from starter.cli_runtime import JsonOption, connected_client, database_repository, echo_json, run_async
from starter.settings import Settings

if TYPE_CHECKING:
    from adapters.lifecycle import EnrollmentView
    from starter.client import EnrollmentsClient

T = TypeVar("T")

MAX_PAGE_SIZE = 500

product_app = typer.Typer(name="product", help="Plan products enrollments are made of (in the database).")
app.add_typer(product_app)

IdArgument = Annotated[str, typer.Argument(help="The enrollment id.", show_default=False)]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (kept in the enrollment's log).")]


class StatusChoice(StrEnum):
    INITIAL = "INITIAL"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"


class OrderStatusChoice(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FULFILLED = "FULFILLED"
    REJECTED = "REJECTED"


# --- plumbing: connections and error mapping ----------------------------------------------------------


def _settings(ctx: typer.Context) -> Settings:
    return state(ctx).effective_settings()


def _when(value: datetime | None) -> str:
    return "—" if value is None else isoformat_utc(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _status_text(status: EnrollmentStatus, pause_reason: object) -> str:
    return f"{status} ({pause_reason})" if pause_reason else str(status)


# --- products -------------------------------------------------------------------------------------------


def _product_json(product: Product) -> dict[str, Any]:
    return product.model_dump(mode="json")


def _plan_text(product: Product) -> str:
    plan = product.plan
    if plan is None:
        return "—"
    text = f"{plan.usage_calculation_type} every {plan.billing_interval_count} {plan.billing_interval}"
    if plan.has_trial:
        text += f", trial {plan.trial_interval_count} {plan.trial_interval}"
    return text


@product_app.command("create")
def product_create(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Option("--id", help="Product id.", show_default=False)],
    plan: Annotated[
        str | None,
        typer.Option("--plan", help='The plan as JSON, e.g. \'{"billing_interval": "MONTHS"}\'.', show_default=False),
    ] = None,
    product_type: Annotated[ProductType, typer.Option("--type", help="Product type.")] = ProductType.PLAN_PRODUCT,
    title: Annotated[str | None, typer.Option("--title", help="Human title.")] = None,
    price_amount: Annotated[int | None, typer.Option("--price-amount", min=0, help="Price in minor units.")] = None,
    price_currency: Annotated[str | None, typer.Option("--price-currency", help="ISO 4217 code, e.g. CHF.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a product, or replace the one with the same id."""
    try:
        product = Product(
            id=product_id,
            type=product_type,
            plan=None if plan is None else parse_plan(plan),
            title=title,
            price_amount=price_amount,
            price_currency=price_currency,
        )
    except ValidationError as error:
        raise CliError(describe_validation_error(error)) from error
    settings = _settings(ctx)

    async def work() -> Product:
        async with database_repository(settings) as repository:
            return await repository.upsert_product(product, now=datetime.now(UTC))

    saved = run_async(settings, work)
    if as_json:
        echo_json(_product_json(saved))
    else:
        typer.echo(f"product {saved.id} saved: {_plan_text(saved)}")


@product_app.command("list")
def product_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every product."""
    settings = _settings(ctx)

    async def work() -> list[Product]:
        async with database_repository(settings) as repository:
            return await repository.list_products()

    products = run_async(settings, work)
    if as_json:
        echo_json([_product_json(product) for product in products])
    elif not products:
        typer.echo("no products (add one with `enrollments product create`)")
    else:
        rows = [[product.id, str(product.type), _plan_text(product), product.title or ""] for product in products]
        typer.echo(_table(["ID", "TYPE", "PLAN", "TITLE"], rows))


@product_app.command("show")
def product_show(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Argument(help="The product id.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Show one product."""
    settings = _settings(ctx)

    async def work() -> Product | None:
        async with database_repository(settings) as repository:
            return await repository.get_product(product_id)

    product = run_async(settings, work)
    if product is None:
        raise CliError(f"product {product_id!r} not found", EXIT_RUNTIME)
    if as_json:
        echo_json(_product_json(product))
        return
    price = "—"
    if product.price_amount is not None:
        price = f"{product.price_amount} {product.price_currency or ''}".strip()
    typer.echo(
        _table(
            ["FIELD", "VALUE"],
            [
                ["id", product.id],
                ["type", str(product.type)],
                ["plan", _plan_text(product)],
                ["title", product.title or "—"],
                ["price", price],
            ],
        )
    )


# --- enrollments: create and commands ------------------------------------------------------------------


def parse_configuration(text: str) -> list[dict[str, str]]:
    """``--configuration``: a JSON object ``{"size": "L"}`` or a list ``[{"key": "size", "value": "L"}]``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"--configuration: is not valid JSON ({error.msg})") from None
    if isinstance(raw, dict):
        raw = [{"key": str(key), "value": value} for key, value in raw.items()]
    try:
        entries = TypeAdapter(Configuration).validate_python(raw)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix="--configuration")) from None
    return [entry.model_dump() for entry in entries]


@app.command()
def create(
    ctx: typer.Context,
    product: Annotated[str, typer.Option("--product", help="Product id (a PLAN_PRODUCT).", show_default=False)],
    user: Annotated[str, typer.Option("--user", help="User id.", show_default=False)],
    quantity: Annotated[int, typer.Option("--quantity", min=1, help="Quantity ordered each period.")] = 1,
    configuration: Annotated[
        str | None,
        typer.Option("--configuration", help='JSON: {"size": "L"} or [{"key": "size", "value": "L"}].'),
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone the calendar follows.")] = "UTC",
    start: Annotated[
        str | None, typer.Option("--start", help="Schedule anchor, ISO 8601 with offset (default: now).")
    ] = None,
    enrollment_id: Annotated[
        str | None, typer.Option("--id", help="Enrollment id (default: a new one); idempotent with the same terms.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an enrollment, wait until it is registered and print its id."""
    entries = parse_configuration(configuration) if configuration is not None else []
    zone = parse_timezone("--timezone", timezone)
    anchor = parse_aware_datetime("--start", start) if start is not None else None
    settings = _settings(ctx)

    async def work() -> str:
        async with connected_client(settings) as client:
            return await client.create_enrollment(
                product_id=product,
                user_id=user,
                quantity=quantity,
                configuration=entries,
                timezone=zone,
                start=anchor,
                enrollment_id=enrollment_id,
            )

    created = run_async(settings, work)
    if as_json:
        echo_json({"enrollment_id": created})
    else:
        typer.echo(created)


def _report(view: EnrollmentView, as_json: bool) -> None:
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    line = f"{view.id} ({view.number}): {_status_text(view.status, view.pause_reason)}"
    if view.scheduled is not None:
        line += f"; {view.scheduled.kind} scheduled at {_when(view.scheduled.at)}"
    if view.expires is not None:
        line += f"; expires {_when(view.expires)}"
    typer.echo(line)


def _command(ctx: typer.Context, call: Callable[[EnrollmentsClient], Awaitable[EnrollmentView]], as_json: bool) -> None:
    settings = _settings(ctx)

    async def work() -> EnrollmentView:
        async with connected_client(settings) as client:
            return await call(client)

    _report(run_async(settings, work), as_json)


@app.command()
def pause(
    ctx: typer.Context,
    enrollment_id: IdArgument,
    reason: ReasonOption = None,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="Pause when the current period ends instead of now.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Pause an enrollment (no new periods or orders, no access) now or at the end of its period."""
    _command(ctx, lambda client: client.pause(enrollment_id, reason=reason, at_period_end=at_period_end), as_json)


@app.command()
def resume(
    ctx: typer.Context, enrollment_id: IdArgument, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Resume a manual pause, or withdraw a pause or termination scheduled at period end."""
    _command(ctx, lambda client: client.resume(enrollment_id, reason=reason), as_json)


@app.command()
def terminate(
    ctx: typer.Context,
    enrollment_id: IdArgument,
    reason: ReasonOption = None,
    at_period_end: Annotated[bool, typer.Option("--at-period-end", help="Terminate when the period ends.")] = False,
    immediately: Annotated[
        bool, typer.Option("--immediately", help="End access now instead of at the end of the paid period.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Terminate an enrollment (final): access runs to the end of the paid period unless --immediately."""
    if at_period_end and immediately:
        raise CliError("--at-period-end and --immediately exclude each other")
    _command(
        ctx,
        lambda client: client.terminate(
            enrollment_id, reason=reason, at_period_end=at_period_end, immediately=immediately
        ),
        as_json,
    )


@app.command("order-status")
def order_status(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order id.", show_default=False)],
    status: Annotated[
        OrderStatusChoice, typer.Argument(help="The order's new status.", case_sensitive=False, show_default=False)
    ],
    as_json: JsonOption = False,
) -> None:
    """Tell the order's enrollment that the order changed status (e.g. paid: CONFIRMED)."""
    _command(ctx, lambda client: client.order_status_changed(order_id, OrderStatus(status.value)), as_json)


# --- enrollments: reading -------------------------------------------------------------------------------


def _order_line(order: Order) -> str:
    window = f"{_when(order.period_start)} → {_when(order.period_end)}"
    return f"  {order.number}  {order.status}  {window}  id {order.id}"


@app.command()
def status(ctx: typer.Context, enrollment_id: IdArgument, as_json: JsonOption = False) -> None:
    """Show an enrollment as its workflow sees it: status, periods, orders, next wake-up, log."""
    settings = _settings(ctx)

    async def work() -> EnrollmentView:
        async with connected_client(settings) as client:
            return await client.get_enrollment(enrollment_id)

    view = run_async(settings, work)
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    rows = [
        ["id", view.id],
        ["number", view.number or "—"],
        ["status", _status_text(view.status, view.pause_reason)],
        ["product", f"{view.product_id} × {view.quantity}"],
        ["user", view.user_id],
        ["timezone", view.timezone],
        ["adapter", view.adapter_key or "—"],
        ["next wake-up", _when(view.next_wake_up)],
        ["expires", _when(view.expires)],
    ]
    if view.scheduled is not None:
        rows.append(["scheduled", f"{view.scheduled.kind} at {_when(view.scheduled.at)}"])
    lines = [_table(["FIELD", "VALUE"], rows), ""]
    if view.history_trimmed:
        lines.append("(the latest periods, orders and log entries; every one is in the database)")
    lines.append(f"periods ({len(view.periods)}):")
    for period in view.periods:
        trial = " trial" if period.is_trial else ""
        order = f"  order {period.order_id} {period.order_status or ''}".rstrip() if period.order_id else ""
        lines.append(f"  {_when(period.start)} → {_when(period.end)}{trial}{order}")
    lines.append(f"orders ({len(view.orders)}):")
    lines += [_order_line(order) for order in view.orders]
    if view.log:
        lines.append("log:")
        lines += [f"  {_when(entry.at)}  {entry.status}  {entry.info}" for entry in view.log]
    typer.echo("\n".join(lines))


@app.command()
def access(
    ctx: typer.Context,
    enrollment_id: IdArgument,
    at: Annotated[str | None, typer.Option("--at", help="When, ISO 8601 with offset (default: now).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the enrollment grants access at a moment (the workflow's is_valid_for_activation query)."""
    moment = parse_aware_datetime("--at", at) if at is not None else datetime.now(UTC)
    settings = _settings(ctx)

    async def work() -> bool:
        async with connected_client(settings) as client:
            return await client.is_valid_for_activation(enrollment_id, moment)

    valid = run_async(settings, work)
    if as_json:
        echo_json({"valid": valid, "at": isoformat_utc(moment)})
    else:
        typer.echo(f"{'valid' if valid else 'not valid'} at {isoformat_utc(moment)}")


def _view_from_row(enrollment: Enrollment, orders: list[Order]) -> EnrollmentView:
    from adapters.lifecycle import EnrollmentView

    return EnrollmentView(**enrollment.model_dump(), orders=orders)


@app.command("list")
def list_enrollments(
    ctx: typer.Context,
    status_filter: Annotated[
        StatusChoice | None, typer.Option("--status", case_sensitive=False, help="Only this status.")
    ] = None,
    product: Annotated[str | None, typer.Option("--product", help="Only this product.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE_SIZE, help="Page size.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (oldest first).")] = 0,
    page: Annotated[int | None, typer.Option("--page", min=1, help="Page number (1-based), not --offset.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, with a progress display.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List enrollments from the database, oldest first, a page at a time."""
    settings = _settings(ctx)
    first = (page - 1) * limit if page is not None else offset
    wanted = EnrollmentStatus(status_filter.value) if status_filter is not None else None

    async def work() -> list[EnrollmentView]:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn

        views: list[EnrollmentView] = []
        async with database_repository(settings) as repository:
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
                    rows = await repository.list_enrollments(
                        status=wanted, product_id=product, user_id=user, offset=position, limit=limit
                    )
                    for row in rows:
                        orders = await repository.list_orders(row.id) if as_json else []
                        views.append(_view_from_row(row, orders))
                    position += len(rows)
                    progress.update(task, description=f"reading enrollments: {len(views)}")
                    if not all_pages or len(rows) < limit:
                        return views

    views = run_async(settings, work)
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
                _status_text(view.status, view.pause_reason),
                view.product_id,
                view.user_id,
                _when(latest.end) if latest else "—",
            ]
        )
    typer.echo(_table(["ID", "NUMBER", "STATUS", "PRODUCT", "USER", "PERIOD ENDS"], rows))
    if not all_pages and len(views) == limit:
        next_page = f"--page {page + 1}" if page is not None else f"--offset {first + limit}"
        typer.echo(f"(more with {next_page} or --all)", err=True)
