"""Changes of plan, quantity and terms: what one does to periods and orders, decided by one pure function.

:func:`plan_change` turns an enrollment's stored state (:class:`ChangeInputs`) and a :class:`ChangeCommand` at
an instant into a :class:`ChangeOutcome`: the product and quantity after it, the anchor when it moves, the
period that ends early and the one that starts, the order it makes, or the change left pending at period end.
The change activity stores exactly that; a preview (``--dry-run``) returns it without storing. Money follows
:mod:`adapters.pricing`. Pure, safe in the workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

from pydantic import Field

from adapters.calendar import Schedule, next_period_window
from adapters.domain import (
    DomainModel,
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PendingChange,
    Period,
    PeriodWindow,
    Product,
    ProductPlan,
    UsageCalculationType,
    UtcDatetime,
    isoformat_utc,
)
from adapters.lifecycle import ChangeCommand, ChangeProration, ChangeWhen, ErrorType, TermsChange
from adapters.metered import usage_order
from adapters.pricing import line_amount, order_total, period_fraction, plan_price, price_problem, priced_order
from adapters.rules import plan_product_problem

CHARGED = "changeCharged"
"""Order context key: what an order that starts within a period charges for the rest of it (credits excluded)."""


class ChangeRefused(ValueError):
    """A change the enrollment cannot take: the error type and a message naming the problem."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class ChangeInputs(DomainModel):
    """What a change is decided on, as stored: the enrollment, its product, the new one, the current period's orders."""

    enrollment: Enrollment
    product: Product
    new_product: Product | None = Field(description="None: the product named does not exist")
    orders: list[Order] = Field(default_factory=list, description="orders starting within the period running at `at`")
    usage_units: int = Field(default=0, description="usage from the start of the period running at `at` to `at`")


class ChangeOutcome(DomainModel):
    """What a change does; the change activity stores it, a preview shows it."""

    at: UtcDatetime
    when: ChangeWhen
    proration: ChangeProration | None = None
    from_product_id: str
    from_quantity: int
    from_plan_version: int | None = None
    product_id: str
    quantity: int
    plan_version: int | None = Field(default=None, description="the version of the product's plan it is on after")
    currency_code: str | None = Field(default=None, description="the currency it is billed in from now on")
    terms: TermsChange | None = None
    pending: PendingChange | None = Field(default=None, description="left for period end (nothing changes now)")
    anchor: UtcDatetime | None = Field(default=None, description="the new anchor, when the schedule moves")
    ended: PeriodWindow | None = Field(default=None, description="the period running at `at`, now ending there")
    period: PeriodWindow | None = Field(default=None, description="the period starting at `at`")
    order: OrderConfiguration | None = Field(default=None, description="the adjustment order or the new period's")
    total: int | None = Field(default=None, description="the order's total (minor units)")
    usage_billed: bool = Field(default=False, description="the usage of the period that ended is billed (its order)")
    info: str = Field(description="the log line")


class ChangeRequest(DomainModel):
    enrollment_id: str
    command: ChangeCommand
    at: UtcDatetime
    event_key: str = Field(min_length=1, max_length=255)


class ChangeResult(DomainModel):
    """The enrollment after a change (recent history) and the order the change made."""

    enrollment: Enrollment
    order: Order | None = None
    outcome: ChangeOutcome | None = Field(default=None, description="None: a retry found the change stored already")


def _refuse(error_type: ErrorType, message: str) -> ChangeRefused:
    return ChangeRefused(error_type, message)


def _same_interval(old: ProductPlan, new: ProductPlan) -> bool:
    return (old.billing_interval, old.billing_interval_count) == (new.billing_interval, new.billing_interval_count)


def billing_currency(currency_code: str | None, product: Product) -> str | None:
    """The currency an enrollment is billed in: its own, else that of its plan's only price (which a change to
    a plan priced in more currencies keeps)."""
    if currency_code is not None:
        return currency_code.upper()
    prices = product.require_plan().prices
    return prices[0].currency if len(prices) == 1 else None


def _check(inputs: ChangeInputs, command: ChangeCommand) -> Product:
    """The new product, once every rule a change must pass holds; :class:`ChangeRefused` naming the first that fails."""
    enrollment = inputs.enrollment
    name = f"enrollment {enrollment.id!r}"
    if enrollment.status is EnrollmentStatus.TERMINATED:
        raise _refuse(ErrorType.INVALID_TRANSITION, f"{name} is TERMINATED; it accepts no change")
    product_id = command.product_id or enrollment.product_id
    problem = plan_product_problem(product_id, inputs.new_product)
    if problem is not None:
        raise _refuse(*problem)
    new_product = inputs.new_product
    assert new_product is not None
    old_plan, new_plan = inputs.product.require_plan(), new_product.require_plan()
    if old_plan.usage_calculation_type is not new_plan.usage_calculation_type:
        raise _refuse(
            ErrorType.INVALID_CHANGE,
            f"{name} is on a {old_plan.usage_calculation_type} plan and product {product_id!r} is "
            f"{new_plan.usage_calculation_type}: terminate it and enroll anew",
        )
    no_price = price_problem(new_product, billing_currency(enrollment.currency_code, inputs.product))
    if no_price is not None:
        raise _refuse(ErrorType.NO_PRICE, no_price)
    return new_product


def plan_change(inputs: ChangeInputs, command: ChangeCommand, at: datetime) -> ChangeOutcome:
    """What ``command`` at ``at`` does to the enrollment in ``inputs``; raises :class:`ChangeRefused`."""
    enrollment = inputs.enrollment
    new_product = _check(inputs, command)
    quantity = command.quantity or enrollment.quantity
    base = ChangeOutcome(
        at=at,
        when=command.when,
        from_product_id=enrollment.product_id,
        from_quantity=enrollment.quantity,
        from_plan_version=inputs.product.version,
        product_id=new_product.id,
        quantity=quantity,
        plan_version=new_product.version,
        currency_code=billing_currency(enrollment.currency_code, inputs.product),
        terms=command.terms if command.terms is not None and command.terms.given() else None,
        info="",
    )
    what = _describe(base)
    same = (new_product.id, new_product.version, quantity) == (
        inputs.product.id,
        inputs.product.version,
        enrollment.quantity,
    )
    if not command.plan_changes or same:
        return base.model_copy(update={"info": f"changed {what}"})
    current = enrollment.period_at(at)
    if command.when is ChangeWhen.PERIOD_END and current is not None:
        pending = PendingChange(
            at=current.end, product_id=new_product.id, quantity=quantity, plan_version=new_product.version
        )
        return base.model_copy(update={"pending": pending, "info": f"change at {isoformat_utc(current.end)}: {what}"})
    old_plan, new_plan = inputs.product.require_plan(), new_product.require_plan()
    same_interval = _same_interval(old_plan, new_plan)
    if current is None:  # nothing runs: the next period is on the new plan (its own schedule when that differs)
        latest = enrollment.latest_period
        anchor = None if same_interval or latest is None else max(latest.end, at)
        return base.model_copy(update={"anchor": anchor, "info": f"changed {what}"})
    proration = command.proration or ChangeProration.PRORATE
    base = base.model_copy(update={"proration": proration})
    if current.is_trial and new_plan.has_trial:
        return base.model_copy(update={"info": f"changed {what} (its trial goes on)"})
    if at == current.start:
        raise _refuse(
            ErrorType.INVALID_CHANGE,
            f"the change falls on the first instant of the period starting {isoformat_utc(at)}: "
            "change it at period end instead (--when period-end)",
        )
    if old_plan.usage_calculation_type is UsageCalculationType.METERED and not current.is_trial:
        return _split_metered(inputs, base, current, same_interval, new_plan, what)
    if current.is_trial or not same_interval:
        if not current.is_trial and proration is ChangeProration.NONE:
            anchor = current.end  # the paid period runs out; the new schedule starts at its end
            return base.model_copy(update={"anchor": anchor, "info": f"changed {what}; new schedule from its end"})
        return _new_period(inputs, base, new_product, current, what)
    if proration is ChangeProration.NONE:
        return base.model_copy(update={"info": f"changed {what}; the new price applies from the next period"})
    return _adjustment(inputs, base, new_product, current, what)


def _split_metered(
    inputs: ChangeInputs, base: ChangeOutcome, current: Period, same_interval: bool, new_plan: ProductPlan, what: str
) -> ChangeOutcome:
    """Usage billed in arrears: the running period ends at the change and its usage so far is billed now on the
    old plan; a period of the new plan starts there (to the old end, or a schedule of its own from there)."""
    enrollment, at = inputs.enrollment, base.at
    ended = PeriodWindow(start=current.start, end=at)
    order = usage_order(enrollment, ended, at, inputs.usage_units)
    if order is not None:
        order = priced_order(order, inputs.product, base.currency_code)
    if same_interval:
        period, anchor = PeriodWindow(start=at, end=current.end), None
    else:
        period = Schedule(plan=new_plan, anchor=at, timezone=enrollment.timezone, with_trial=False).periods(1)[0]
        anchor = at
    info = f"changed {what}; usage to {isoformat_utc(at)} billed on the old plan"
    update = {
        "proration": None,
        "usage_billed": True,
        "anchor": anchor,
        "ended": ended,
        "period": period,
        "order": order,
        "info": info,
    }
    return base.model_copy(update={**update, "total": None if order is None else _total(order)})


def _require_prices(product: Product) -> None:
    if not product.require_plan().prices:
        raise _refuse(
            ErrorType.NO_PRICE,
            f"product {product.id!r} has no prices, so a change to it cannot be prorated: "
            "change with --proration none or at period end",
        )


def _new_period(
    inputs: ChangeInputs, base: ChangeOutcome, new_product: Product, current: Period, what: str
) -> ChangeOutcome:
    """The running period ends at the change; a period of the new plan starts there, its order crediting the rest."""
    enrollment, at = inputs.enrollment, base.at
    plan = new_product.require_plan()
    window = Schedule(plan=plan, anchor=at, timezone=enrollment.timezone, with_trial=False).periods(1)[0]
    ended = PeriodWindow(start=current.start, end=at, is_trial=current.is_trial)
    info = f"changed {what}; new period {isoformat_utc(window.start)} to {isoformat_utc(window.end)}"
    if plan.usage_calculation_type is UsageCalculationType.METERED:  # billed when it ends
        return base.model_copy(update={"anchor": at, "ended": ended, "period": window, "info": info})
    charge = _line(new_product, base.currency_code, base.quantity, Fraction(1), window, at)
    lines = [charge]
    if not current.is_trial and base.proration is ChangeProration.PRORATE:
        _require_prices(new_product)
        lines.insert(0, _credit(inputs, current, at))
    order = _order(window, lines, charge, new_product, base.currency_code)
    return base.model_copy(
        update={"anchor": at, "ended": ended, "period": window, "order": order, "total": _total(order), "info": info}
    )


def _adjustment(
    inputs: ChangeInputs, base: ChangeOutcome, new_product: Product, current: Period, what: str
) -> ChangeOutcome:
    """Same interval: one order for the rest of the period, the unused part credited and the new plan charged."""
    enrollment, at = inputs.enrollment, base.at
    _require_prices(new_product)
    plan = new_product.require_plan()
    fraction = period_fraction(plan.proration, current.start, current.end, at, current.end, enrollment.timezone)
    window = PeriodWindow(start=at, end=current.end)
    charge = _line(new_product, base.currency_code, base.quantity, fraction, window, at)
    order = _order(window, [_credit(inputs, current, at), charge], charge, new_product, base.currency_code)
    info = f"changed {what}; prorated to {isoformat_utc(current.end)}"
    return base.model_copy(update={"order": order, "total": _total(order), "info": info})


def _line(
    product: Product, currency_code: str | None, quantity: int, fraction: Fraction, window: PeriodWindow, at: datetime
) -> OrderPosition:
    price = plan_price(product.id, product.require_plan(), currency_code)
    unit = None if price is None else price.amount
    amount = None if unit is None else line_amount(quantity, unit, fraction)
    description = f"{product.id} × {quantity} from {isoformat_utc(window.start)} to {isoformat_utc(window.end)}"
    return OrderPosition(
        product_id=product.id,
        original_product_id=product.id,
        quantity=quantity,
        unit_amount=unit,
        amount=amount,
        description=description,
    )


def _credit(inputs: ChangeInputs, current: Period, at: datetime) -> OrderPosition:
    """The credit for ``[at, end)`` of the running period at what was actually charged for it (not today's price)."""
    enrollment = inputs.enrollment
    charged_order = _charged_order(inputs.orders, current)
    name = f"enrollment {enrollment.id!r}"
    if charged_order is None or order_total(_charges(charged_order)) is None:
        raise _refuse(
            ErrorType.NO_PRICE,
            f"{name}: the period {isoformat_utc(current.start)} to {isoformat_utc(current.end)} was billed without "
            "amounts, so it cannot be prorated: change with --proration none or at period end",
        )
    charged = int(charged_order.context.get(CHARGED, charged_order.total or 0))
    if charged_order.status is OrderStatus.REJECTED:
        charged = 0  # nothing was paid for it: nothing to credit
    since = charged_order.period_start or current.start
    plan = inputs.product.require_plan()
    fraction = period_fraction(plan.proration, since, current.end, at, current.end, enrollment.timezone)
    amount = -line_amount(1, charged, fraction)
    line = _charges(charged_order)[0]
    return OrderPosition(
        product_id=line.product_id,
        original_product_id=line.original_product_id,
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        amount=amount,
        description=f"unused {line.product_id} × {line.quantity} from {isoformat_utc(at)} to "
        f"{isoformat_utc(current.end)} (credit of {charged} charged)",
    )


def _charged_order(orders: list[Order], current: Period) -> Order | None:
    """The order that charged the rest of ``current`` last: the latest starting within it and ending with it."""
    within = [
        order
        for order in orders
        if order.period_start is not None
        and current.start <= order.period_start < current.end
        and order.period_end == current.end
    ]
    return max(within, key=lambda order: order.period_start or current.start, default=None)


def _charges(order: Order) -> list[OrderPosition]:
    return [position for position in order.positions if position.amount is None or position.amount >= 0]


def _order(
    window: PeriodWindow, lines: list[OrderPosition], charge: OrderPosition, product: Product, currency: str | None
) -> OrderConfiguration:
    price = plan_price(product.id, product.require_plan(), currency)
    context: dict[str, Any] = {} if charge.amount is None else {CHARGED: charge.amount}
    return OrderConfiguration(
        period=window,
        order_context=context,
        order_position_templates=lines,
        currency=None if price is None else price.currency,
    )


def _total(order: OrderConfiguration) -> int | None:
    return order_total(order.order_position_templates)


def _describe(outcome: ChangeOutcome) -> str:
    parts = []
    if outcome.product_id != outcome.from_product_id:
        parts.append(f"product {outcome.from_product_id} → {outcome.product_id}")
    elif outcome.plan_version != outcome.from_plan_version:
        parts.append(f"plan version {outcome.from_plan_version} → {outcome.plan_version}")
    if outcome.quantity != outcome.from_quantity:
        parts.append(f"quantity {outcome.from_quantity} → {outcome.quantity}")
    if outcome.terms is not None:
        parts.append("terms (" + ", ".join(outcome.terms.given()) + ")")
    return ", ".join(parts) or "nothing"


class UpcomingOrder(DomainModel):
    """The next period and the order it will bring (``enrollments upcoming``), on the plan it will be on."""

    period: PeriodWindow | None = Field(description="None: the enrollment makes no more periods")
    product_id: str
    quantity: int
    order: OrderConfiguration | None = Field(default=None, description="None: a trial, or billed in arrears")
    total: int | None = None


def upcoming_order(enrollment: Enrollment, product: Product, next_product: Product) -> UpcomingOrder:
    """The period after the enrollment's latest and its order in advance, priced as the advance activity prices it.

    ``next_product`` is the product of the change pending at that period's start (else ``product``).
    """
    pending = enrollment.pending_change
    quantity, plan = enrollment.quantity, product.require_plan()
    anchor = enrollment.anchor
    window = None if enrollment.status is EnrollmentStatus.TERMINATED else _next_window(enrollment, plan, anchor)
    if window is not None and pending is not None and pending.at <= window.start:
        quantity, new_plan = pending.quantity, next_product.require_plan()
        if not _same_interval(plan, new_plan):
            anchor = pending.at
        product, plan = next_product, new_plan
        window = _next_window(enrollment, plan, anchor)
    if window is not None and enrollment.expires is not None and window.start >= enrollment.expires:
        window = None
    upcoming = UpcomingOrder(period=window, product_id=product.id, quantity=quantity)
    if window is None or window.is_trial or plan.usage_calculation_type is not UsageCalculationType.LICENSED:
        return upcoming
    position = OrderPosition(
        product_id=product.id,
        original_product_id=product.id,
        quantity=quantity,
        configuration=list(enrollment.configuration),
    )
    order = priced_order(
        OrderConfiguration(period=window, order_position_templates=[position]), product, enrollment.currency_code
    )
    return upcoming.model_copy(update={"order": order, "total": _total(order)})


def _next_window(enrollment: Enrollment, plan: ProductPlan, anchor: datetime) -> PeriodWindow:
    return next_period_window(plan, anchor, enrollment.timezone, enrollment.periods)
