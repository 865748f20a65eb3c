"""Billing rules the workflow and the store both apply: each one here, once, as a pure function.

The workflow checks them against its state before it asks for a write; the store checks them again under the
enrollment's row lock, against what is committed. Both call the same function, so the two can never disagree
on what the rule is. Each returns None when the rule is met, else the reason, phrased for the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.domain import (
    EnrollmentStatus,
    PauseReason,
    Period,
    ProductPlan,
    StatusChange,
    UsageCalculationType,
    isoformat_utc,
)


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
) -> str | None:
    """Why usage at ``at`` can never be billed for an enrollment, or None when it can.

    ``containing`` is the period with ``start <= at < end`` (None: none), ``first_start`` and ``latest_end``
    bound the enrollment's periods (None: it has none yet). Refused: a plan that is not METERED; ``at`` at or
    after ``expires``; ``at`` in a period that is billed already (late usage); before the first period (or
    the start); in a gap no period covers (a manual pause); after the latest period of a manually PAUSED
    enrollment. Usage after the latest period of an enrollment that keeps getting periods is accepted: the
    period that covers it is not made yet.
    """
    if plan is None or plan.usage_calculation_type is not UsageCalculationType.METERED:
        kind = "no plan" if plan is None else f"a {plan.usage_calculation_type.value} plan"
        return f"its product {product_id!r} has {kind}; usage is recorded for METERED plans only"
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
