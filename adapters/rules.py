"""Billing rules the workflow and the store both apply: each one here, once, as a pure function.

The workflow checks them against its state before it asks for a write; the store checks them again under the
enrollment's row lock, against what is committed. Both call the same function, so the two can never disagree
on what the rule is. Each returns None when the rule is met, else the reason, phrased for the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError

from adapters.calendar import CalendarRangeError, InvalidPlanError, Schedule, validate_plan
from adapters.domain import (
    MAX_UNITS,
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PauseReason,
    Period,
    Product,
    ProductPlan,
    ProductType,
    ScheduledAction,
    StatusChange,
    UsageCalculationType,
    isoformat_utc,
)
from adapters.lifecycle import ErrorType

MAX_BACKDATED_PERIODS = 1_000
"""Most periods a backdated enrollment catches up on when it is created."""
MAX_START_AHEAD = timedelta(days=3_653)
"""How far ahead an enrollment may be scheduled to start (ten years)."""


def status_change_problem(enrollment_id: str, current: EnrollmentStatus, change: StatusChange) -> str | None:
    """TERMINATED is final: why ``change`` cannot apply to an enrollment in ``current``, or None."""
    if current is EnrollmentStatus.TERMINATED and change.status is not EnrollmentStatus.TERMINATED:
        return f"enrollment {enrollment_id!r} is TERMINATED, which is final: it cannot become {change.status}"
    return None


def new_period_problem(enrollment_id: str, status: EnrollmentStatus) -> str | None:
    """No period after termination: why an enrollment in ``status`` gets no new period, or None."""
    if status is EnrollmentStatus.TERMINATED:
        return f"enrollment {enrollment_id!r} is TERMINATED: it gets no new periods"
    return None


def creates_periods(status: EnrollmentStatus, pause_reason: PauseReason | None) -> bool:
    """Whether an enrollment gets new periods: ACTIVE, or PAUSED only because a payment is overdue."""
    return status is EnrollmentStatus.ACTIVE or (
        status is EnrollmentStatus.PAUSED and pause_reason is PauseReason.OVERDUE
    )


def next_wake_up(
    enrollment: Enrollment,
    scheduled: ScheduledAction | None,
    *,
    next_period_start: datetime | None,
    deadline: datetime | None,
    billing_due: datetime | None,
    needs_attention: bool = False,
    dunning_at: datetime | None = None,
) -> datetime | None:
    """When an enrollment's workflow next acts on its own; None when nothing will happen without a command.

    For an INITIAL enrollment: its start, or, once it waits for its first order to be paid, that period's
    end. For the others, the earliest of: a pause or termination scheduled at period end, the
    next period (when it gets periods), the payment deadline, the end of a period billed in arrears, and the
    next dunning step of an unpaid order. An enrollment in need of attention waits for a command instead of its
    boundaries (they are what failed); its dunning steps still run.
    """
    status = enrollment.status
    if status is EnrollmentStatus.INITIAL:  # its start, or when the time to pay its first order ends
        return enrollment.periods[0].end if enrollment.periods else enrollment.anchor
    moments = []
    if scheduled is not None:
        moments.append(scheduled.at)
    if not needs_attention:
        if creates_periods(status, enrollment.pause_reason) and next_period_start is not None:
            moments.append(next_period_start)
        if status is not EnrollmentStatus.TERMINATED and deadline is not None:
            moments.append(deadline)
        if billing_due is not None:
            moments.append(billing_due)
    if status is not EnrollmentStatus.TERMINATED and dunning_at is not None:
        moments.append(dunning_at)
    return min(moments) if moments else None


class FirstPayment(StrEnum):
    """Where an enrollment activated on payment stands with its first order (see :func:`first_payment`)."""

    MAKE_PERIOD = "make_period"
    WAITING = "waiting"
    PAID = "paid"
    REJECTED = "rejected"
    EXPIRED = "expired"


def first_payment(enrollment: Enrollment, at: datetime) -> FirstPayment:
    """Where an INITIAL enrollment activated on payment stands at ``at``.

    Its first period (and order) is made at its start; paid, it becomes ACTIVE in that period (a first period
    without an order, a trial or usage billed in arrears, counts as paid: nothing is due up front). A rejected
    order, or one still unpaid when its period ends, ends the enrollment: it never started.
    """
    if not enrollment.periods:
        return FirstPayment.MAKE_PERIOD
    first = enrollment.periods[0]
    if first.order_id is None or (first.order_status is not None and first.order_status.is_paid):
        return FirstPayment.PAID
    if first.order_status is OrderStatus.REJECTED:
        return FirstPayment.REJECTED
    return FirstPayment.EXPIRED if at >= first.end else FirstPayment.WAITING


def order_voided_by_termination(enrollment: Enrollment, orders: list[Order], at: datetime) -> Order | None:
    """The order a termination that ends access at ``at`` rejects: the unpaid order of the period cut short.

    Its service will not be delivered, and a PENDING order left behind would still be collected (payment
    retries, dunning) from a customer who has no subscription any more. A paid order stays as it is: refunds
    are the shop's decision (it hears of the termination through its events). Orders of earlier periods were
    served and stay due. None when nothing is to be rejected.
    """
    if enrollment.expires is None or enrollment.expires > at:
        return None  # access continues to the period's end: the period is served
    period = enrollment.period_at(at)
    if period is None or period.order_id is None:
        return None
    order = next((order for order in orders if order.id == period.order_id), None)
    return order if order is not None and order.status is OrderStatus.PENDING else None


def start_problem(
    plan: ProductPlan,
    start: datetime,
    timezone: str,
    now: datetime,
    *,
    backdate: bool,
    activate_on_payment: bool = False,
) -> str | None:
    """Why an enrollment on ``plan`` cannot start at ``start`` (seen at ``now``), or None when it can.

    A start in the first period of its schedule or ahead of ``now`` is plain; one more than a period in the
    past must be asked for (``backdate``) and may catch up on at most :data:`MAX_BACKDATED_PERIODS` periods,
    each with its order; an enrollment activated on payment cannot be backdated (its first period must still
    be open to be paid). A start more than :data:`MAX_START_AHEAD` ahead, or one whose schedule leaves the
    calendar (years 1 to 9999), is refused: those are typing errors, not plans.
    """
    when = isoformat_utc(start)
    if start > now + MAX_START_AHEAD:
        return f"start {when} is more than {MAX_START_AHEAD.days // 365} years ahead; check the year"
    try:
        schedule = Schedule(plan=plan, anchor=start, timezone=timezone)
        schedule.periods(2)
        behind = schedule.index_of_period_containing(now) if start <= now else 0
    except CalendarRangeError:
        return f"start {when} in {timezone} is outside the supported calendar (years 1 to 9999)"
    if behind >= MAX_BACKDATED_PERIODS:
        return (
            f"start {when} is {behind} periods in the past; at most {MAX_BACKDATED_PERIODS} periods are caught up "
            "on (check the year, or start it later)"
        )
    if behind >= 1 and activate_on_payment:
        return (
            f"start {when} is {behind} periods in the past: an enrollment activated on payment starts in a period "
            "still open, to be paid"
        )
    if behind >= 1 and not backdate:
        return (
            f"start {when} is {behind} periods in the past: creating it makes {behind + 1} periods and their orders "
            "at once; ask for that explicitly (backdate)"
        )
    return None


def plan_product_problem(product_id: str, product: Product | None) -> tuple[ErrorType, str] | None:
    """Why ``product`` cannot drive an enrollment (error type and message), or None when it can."""
    if product is None:
        return ErrorType.PRODUCT_NOT_FOUND, f"product {product_id!r} does not exist"
    if product.type is not ProductType.PLAN_PRODUCT or product.plan is None:
        return ErrorType.NOT_A_PLAN_PRODUCT, f"product {product_id!r} is a {product.type}, not a PLAN_PRODUCT"
    try:
        validate_plan(product.plan)
    except InvalidPlanError as error:
        return ErrorType.INVALID_PLAN, f"product {product_id!r} has an invalid plan: {error}"
    return None


def stored_plan_problem(product_id: str, error: ValidationError) -> tuple[ErrorType, str]:
    """A stored product whose plan does not validate (a row written by another tool), as a problem."""
    problems = "; ".join(f"plan.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return ErrorType.INVALID_PLAN, f"product {product_id!r} has an invalid plan: {problems}"


def describe_window(start: datetime, end: datetime) -> str:
    """``[2031-01-01T00:00:00+00:00, 2031-02-01T00:00:00+00:00)``: a period in messages."""
    return f"[{start.astimezone(UTC).isoformat()}, {end.astimezone(UTC).isoformat()})"


def usage_refusal(
    *,
    product_id: str,
    plan: ProductPlan | None,
    status: EnrollmentStatus,
    pause_reason: PauseReason | None,
    anchor: datetime,
    expires: datetime | None,
    at: datetime,
    containing: Period | None,
    first_start: datetime | None,
    latest_end: datetime | None,
    units: int = 0,
    window_units: int = 0,
) -> str | None:
    """Why usage at ``at`` can never be billed for an enrollment, or None when it can.

    ``containing`` is the period with ``start <= at < end`` (None: none), ``first_start`` and ``latest_end``
    bound the enrollment's periods (None: it has none yet). Refused: a plan that is not METERED; ``at`` at or
    after ``expires``; ``at`` in a period that is billed already (late usage); before the first period (or
    the start); in a gap no period covers (a manual pause); after the latest period of a manually PAUSED
    enrollment. Usage after the latest period of an enrollment that keeps getting periods is accepted: the
    period that covers it is not made yet. ``units`` more on top of the ``window_units`` already recorded for
    the same unbilled window must stay within :data:`~adapters.domain.MAX_UNITS` (64 bits), so a period's sum
    and its order's quantity always fit.
    """
    if plan is None or plan.usage_calculation_type is not UsageCalculationType.METERED:
        kind = "no plan" if plan is None else f"a {plan.usage_calculation_type.value} plan"
        return f"its product {product_id!r} has {kind}; usage is recorded for METERED plans only"
    if units + window_units > MAX_UNITS:
        return (
            f"{units} more units would bring the usage of its billing window to {units + window_units}, above the "
            f"{MAX_UNITS} (2^63 - 1) one period can bill"
        )
    when = isoformat_utc(at)
    if expires is not None and at >= expires:
        return f"{when} is not before the enrollment's expiry {isoformat_utc(expires)}"
    if containing is not None:
        if containing.billed_at is None:
            return None
        return (
            f"late: the period {describe_window(containing.start, containing.end)} containing {when} was billed "
            f"at {isoformat_utc(containing.billed_at)}; record it with a time in an open period"
        )
    if first_start is None or latest_end is None:
        return None if at >= anchor else f"{when} is before the enrollment starts ({isoformat_utc(anchor)})"
    if at < first_start:
        return f"{when} is before the enrollment's first period starts ({isoformat_utc(first_start)})"
    if at < latest_end:
        return f"no period covers {when} (the enrollment was paused then)"
    if status is EnrollmentStatus.PAUSED and pause_reason is PauseReason.MANUAL:
        return f"the enrollment is PAUSED (manual) since its latest period ended; no period covers {when}"
    return None
