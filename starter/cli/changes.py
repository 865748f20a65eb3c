"""``enrollments change`` and ``enrollments upcoming``: change a plan, quantity or terms, preview it, see the
next order.

``change ID [--product P] [--quantity N] [--terms JSON] --when now|period-end [--proration prorate|none]
[--at ISO] [--dry-run] [--json]`` and ``change ID --cancel``. A dry run prints what the change would do — the
period that ends, the one that starts, the order with its lines and total, or the change left pending —
computed by the code the change runs from the database alone (no Temporal server needed), and writes
nothing; ``upcoming`` too reads the database alone. Amounts print in the currency's units (``16.52 CHF``);
``--json`` gives them in minor units. Refusals exit 1, invalid input 2.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from adapters.changes import ChangeOutcome, UpcomingOrder
from adapters.domain import OrderConfiguration, PeriodWindow
from adapters.lifecycle import ChangeProration, ChangeWhen, EnrollmentView
from adapters.pricing import format_money, order_total
from adapters.validation import describe_validation_error
from starter.cli.errors import CliError
from starter.cli.execution import JsonOption, echo_json, with_client, with_store
from starter.cli.output import echo_lines, when
from starter.cli.parsing import EnrollmentArgument, choice, parse_aware_datetime
from starter.client.changes import change_command, stored_preview, stored_upcoming

WHEN = {"now": ChangeWhen.NOW, "period-end": ChangeWhen.PERIOD_END}


def register(app: typer.Typer) -> None:
    app.command()(change)
    app.command()(upcoming)


def change(
    ctx: typer.Context,
    enrollment_id: EnrollmentArgument,
    product: Annotated[str | None, typer.Option("--product", help="The new plan product.")] = None,
    quantity: Annotated[int | None, typer.Option("--quantity", help="The new quantity (at least 1).")] = None,
    terms: Annotated[
        str | None,
        typer.Option("--terms", help="JSON: billing_address, contact, payment, delivery, meta (applied at once)."),
    ] = None,
    when_: Annotated[
        str | None, typer.Option("--when", help="now | period-end (required unless --cancel).", show_default=False)
    ] = None,
    proration: Annotated[
        str | None, typer.Option("--proration", help="prorate (default) | none; for --when now only.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Take effect at this past instant (ISO 8601; default: now).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what the change would do; change nothing.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Withdraw the change pending at period end.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Change an enrollment's plan, quantity or terms, now or at period end (or withdraw a pending change)."""
    if when_ is None and not cancel:
        raise CliError("--when: is required (now or period-end), or --cancel to withdraw a pending change")
    if cancel and dry_run:
        raise CliError("--dry-run: previews a change, not --cancel")
    moment = parse_aware_datetime("--at", at) if at is not None else None
    try:
        command = change_command(
            product,
            quantity,
            _terms(terms),
            _when(when_) if when_ is not None else ChangeWhen.NOW,
            choice(ChangeProration)(proration) if proration is not None else None,
            cancel,
            moment,
        )
    except ValueError as error:
        if isinstance(error, ValidationError):
            raise CliError(describe_validation_error(error)) from error
        raise CliError(f"--proration: {error}") from error
    arguments: dict[str, Any] = {
        "product_id": command.product_id,
        "quantity": command.quantity,
        "terms": command.terms,
        "when": command.when,
        "proration": command.proration,
        "at": command.at,
    }
    if dry_run:  # the database alone: no Temporal server needed
        moment = command.at or datetime.now(UTC)
        outcome = with_store(ctx, lambda store: stored_preview(store, enrollment_id, command, moment))
        _print_outcome(outcome, as_json)
        return
    view = with_client(ctx, lambda client: client.change_enrollment(enrollment_id, cancel=cancel, **arguments))
    _print_view(view, as_json)


def upcoming(ctx: typer.Context, enrollment_id: EnrollmentArgument, as_json: JsonOption = False) -> None:
    """The next period and the order it will bring, on the plan it will be on (a pending change included)."""
    found: UpcomingOrder = with_store(ctx, lambda store: stored_upcoming(store, enrollment_id))
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    if found.period is None:
        echo_lines(["no next period: the enrollment has ended"])
        return
    lines = [f"next period {_window(found.period)}: {found.product_id} × {found.quantity}"]
    if found.order is None:
        lines.append("  no order in advance (a trial, or usage billed after the period ends)")
    else:
        lines += _order_lines(found.order)
    echo_lines(lines)


def _when(text: str) -> ChangeWhen:
    try:
        return WHEN[text.strip().casefold().replace("_", "-")]
    except KeyError:
        raise CliError(f"--when: {text!r} is not one of now, period-end") from None


def _terms(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"--terms: not JSON: {error}") from error
    if not isinstance(value, dict):
        raise CliError("--terms: must be a JSON object")
    return value


def _window(window: PeriodWindow) -> str:
    return f"{when(window.start)} to {when(window.end)}"


def _order_lines(order: OrderConfiguration) -> list[str]:
    currency = order.currency
    lines = [f"order {_window(order.period)}" + (f" ({currency})" if currency else "")]
    for line in order.order_position_templates:
        unit = format_money(line.unit_amount, currency)
        lines.append(
            f"  {line.product_id} × {line.quantity} at {unit}: {format_money(line.amount, currency)}"
            + (f"  ({line.description})" if line.description else "")
        )
    lines.append(f"  total {format_money(order_total(order.order_position_templates), currency)}")
    return lines


def _print_outcome(outcome: ChangeOutcome, as_json: bool) -> None:
    if as_json:
        echo_json(outcome.model_dump(mode="json"))
        return
    lines = [f"dry run at {when(outcome.at)}: {outcome.info}"]
    if outcome.pending is not None:
        lines.append(f"pending until {when(outcome.pending.at)}; nothing is billed now")
    if outcome.ended is not None:
        lines.append(f"period {when(outcome.ended.start)} ends at {when(outcome.ended.end)}")
    if outcome.period is not None:
        lines.append(f"new period {_window(outcome.period)}")
    if outcome.anchor is not None:
        lines.append(f"schedule anchored at {when(outcome.anchor)}")
    lines += _order_lines(outcome.order) if outcome.order is not None else ["no order"]
    echo_lines(lines)


def _print_view(view: EnrollmentView, as_json: bool) -> None:
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    line = f"{view.id} ({view.number}): {view.product_id} × {view.quantity}"
    if view.pending_change is not None:
        pending = view.pending_change
        line += f"; changes to {pending.product_id} × {pending.quantity} at {when(pending.at)}"
    lines = [line, f"  {view.log[-1].info}" if view.log else ""]
    latest: datetime | None = view.log[-1].at if view.log else None
    made = [order for order in view.orders if latest is not None and order.created == latest]
    for order in made:
        lines.append(f"  order {order.number}: total {format_money(order.total, order.currency)}")
    echo_lines([text for text in lines if text])
