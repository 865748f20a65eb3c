"""Commands that create and change enrollments, through Temporal (``--address``, ``--namespace``).

``create``, ``create-from-order``, ``pause``, ``resume``, ``terminate``, ``activate``, ``order-status`` and
``payment`` go to the enrollment's workflow with :class:`starter.client.EnrollmentsClient`. Each prints something
short for people, and JSON with ``--json`` (datetimes in UTC, ``Z``). An unknown enrollment or order and a
refused command exit 1, as does an unreachable Temporal server; invalid input exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from adapters.checkout import CheckoutOrder
from adapters.domain import EnrollmentTerms, OrderStatus, describe_status, isoformat_utc
from adapters.dunning import Decline, dunning_summary
from adapters.lifecycle import (
    ActivateCommand,
    Command,
    EnrollmentView,
    PauseCommand,
    ResumeCommand,
    TerminateCommand,
)
from adapters.validation import describe_validation_error
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_client
from starter.cli.output import echo_lines, when
from starter.cli.parsing import (
    EnrollmentArgument,
    OrderArgument,
    choice,
    not_blank,
    parse_aware_datetime,
    parse_configuration,
    parse_timezone,
)

ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (kept in the enrollment's log).")]


def register(app: typer.Typer) -> None:
    app.command()(create)
    app.command("create-from-order")(create_from_order)
    app.command()(pause)
    app.command()(resume)
    app.command()(terminate)
    app.command()(activate)
    app.command("order-status")(order_status)
    app.command("payment")(payment)


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
    currency: Annotated[
        str | None, typer.Option("--currency", help="ISO 4217 code picking the plan's price (default: its only one).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Schedule anchor, ISO 8601 with offset (default: now).")
    ] = None,
    enrollment_id: Annotated[
        str | None, typer.Option("--id", help="Enrollment id (default: a new one); idempotent with the same terms.")
    ] = None,
    backdate: Annotated[
        bool,
        typer.Option(
            "--backdate", help="Allow a --start more than a period ago: every period since then is made (≤ 1,000)."
        ),
    ] = False,
    activate_on_payment: Annotated[
        bool,
        typer.Option(
            "--activate-on-payment",
            help="Stay INITIAL (no access) until the first order is paid or `activate` is run; "
            "unpaid by the end of the first period, it ends. Default: ACTIVE at once.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create an enrollment, wait until it is registered and print its id."""
    entries = parse_configuration(configuration) if configuration is not None else []
    enrollment_id = not_blank("--id", enrollment_id)
    zone = parse_timezone("--timezone", timezone)
    anchor = parse_aware_datetime("--start", start) if start is not None else None
    terms = EnrollmentTerms(
        product_id=product,
        user_id=user,
        quantity=quantity,
        configuration=entries,
        timezone=zone,
        currency_code=None if currency is None else currency.strip().upper(),
        activate_on_payment=activate_on_payment,
    )
    created = with_client(
        ctx,
        lambda client: client.create_enrollment(terms, start=anchor, enrollment_id=enrollment_id, backdate=backdate),
    )
    if as_json:
        echo_json({"enrollment_id": created})
    else:
        typer.echo(created)


def _report(view: EnrollmentView, as_json: bool) -> None:
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    line = f"{view.id} ({view.number}): {describe_status(view.status, view.pause_reason)}"
    if view.scheduled is not None:
        line += f"; {view.scheduled.kind} scheduled at {when(view.scheduled.at)}"
    if view.expires is not None:
        line += f"; expires {when(view.expires)}"
    echo_lines([line, *(f"  dunning {dunning_summary(entry, when)}" for entry in view.dunning)])


def _send(ctx: typer.Context, enrollment_id: str, command: Command, as_json: bool) -> None:
    _report(with_client(ctx, lambda client: client.send(enrollment_id, command)), as_json)


def pause(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
    reason: ReasonOption = None,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="Pause when the current period ends instead of now.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Pause an enrollment (no new periods or orders, no access) now or at the end of its period."""
    _send(ctx, enrollment_id, PauseCommand(reason=reason, at_period_end=at_period_end), as_json)


def resume(
    ctx: typer.Context, enrollment_id: EnrollmentArgument, reason: ReasonOption = None, as_json: JsonOption = False
) -> None:
    """Resume a manual pause, or withdraw a pause or termination scheduled at period end."""
    _send(ctx, enrollment_id, ResumeCommand(reason=reason), as_json)


def terminate(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
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
    command = TerminateCommand(reason=reason, at_period_end=at_period_end, immediately=immediately)
    _send(ctx, enrollment_id, command, as_json)


def order_status(
    ctx: typer.Context,
    order_id: OrderArgument,
    status: Annotated[
        OrderStatus,
        typer.Argument(
            help="The order's new status (any case).",
            parser=choice(OrderStatus),
            metavar="STATUS",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Tell the order's enrollment that the order changed status (e.g. paid: CONFIRMED)."""
    _report(with_client(ctx, lambda client: client.order_status_changed(order_id, status)), as_json)


def payment(
    ctx: typer.Context,
    order_id: OrderArgument,
    received: Annotated[
        int | None,
        typer.Option("--received", min=1, help="An amount received, in minor units (e.g. cents).", show_default=False),
    ] = None,
    failed: Annotated[
        Decline | None,
        typer.Option("--failed", help="A failed attempt: soft or hard.", parser=choice(Decline), metavar="soft|hard"),
    ] = None,
    code: Annotated[str | None, typer.Option("--code", help="The provider's decline code (with --failed).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a payment for an order (--received AMOUNT) or a failed attempt (--failed soft|hard).

    Paying the whole open balance makes the order CONFIRMED and ends its dunning; a hard decline skips its
    remaining retry_payment steps.
    """
    if (received is None) == (failed is None):
        raise typer.BadParameter("give either --received AMOUNT or --failed soft|hard", param_hint="--received")
    if code is not None and failed is None:
        raise typer.BadParameter("goes with --failed", param_hint="--code")
    _report(
        with_client(ctx, lambda client: client.report_payment(order_id, received=received, failed=failed, code=code)),
        as_json,
    )


def _read_order(path: str) -> CheckoutOrder:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"{path}: {error.strerror or error}") from error
    try:
        return CheckoutOrder.model_validate_json(text)
    except ValidationError as error:
        raise CliError(f"{path}: {describe_validation_error(error)}") from error


def create_from_order(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="The checkout order as JSON (- reads stdin).", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Create the enrollments of a CONFIRMED or FULFILLED checkout order: one per PLAN_PRODUCT position.

    Idempotent: the same order again creates nothing new. The order pays each enrollment's first period.
    """
    order = _read_order(file)
    result = with_client(ctx, lambda client: client.create_enrollments_from_order(order))
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    echo_lines(
        [
            f"order {order.id}: {len(result.enrollments)} enrollments",
            *(f"  position {made.position}: {made.enrollment_id} ({made.product_id})" for made in result.enrollments),
            *(f"  position {left.position} skipped: {left.product_id} is {left.reason}" for left in result.skipped),
        ]
    )


def activate(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start an INITIAL enrollment now: a scheduled one anchored now, one waiting for payment in its first period."""
    view = with_client(ctx, lambda client: client.send(enrollment_id, ActivateCommand(reason=reason)))
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    first = view.periods[-1] if view.periods else None
    period = f", period {isoformat_utc(first.start)} → {isoformat_utc(first.end)}" if first else ""
    echo_lines([f"enrollment {view.number or view.id} is {view.status} since {isoformat_utc(view.anchor)}{period}"])
