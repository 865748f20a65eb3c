"""The trial-with-grace adapter: LICENSED plans with a trial; unpaid periods get a grace period.

- Access (pure, the workflow's query): during the trial; during a billable period whose order is paid
  (CONFIRMED or FULFILLED) and for ``grace`` past its end; during the first ``grace`` of a billable period
  whose order is not paid (yet). Never while INITIAL or PAUSED, never from ``expires`` on.
- Overdue: the grace is a one-step dunning policy, ``pause`` ``grace`` after an unpaid order's period started
  (:attr:`TrialGraceAdapter.dunning`, the same mechanism as a plan's own policy): the workflow wakes then and
  pauses the enrollment (overdue). An enrollment that is PAUSED because overdue stays overdue until its latest
  order is paid (:meth:`TrialGraceAdapter.is_overdue`), so a new period (whose own grace is still running) does
  not lift the pause; a REJECTED order keeps it paused.

The grace is 7 days; :func:`trial_grace_adapter` makes a variant with another grace (its own key, so each
enrollment keeps the grace it was registered with). ``ENROLLMENT_ADAPTERS=trial_grace:14,…`` selects one.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import ClassVar, cast

from adapters.domain import (
    Enrollment,
    EnrollmentStatus,
    OrderStatus,
    PauseReason,
    Period,
    ProductPlan,
    UsageCalculationType,
)
from adapters.dunning_policy import DunningAction, DunningPolicy, DunningStep
from adapters.licensed import LicensedAdapter

DEFAULT_GRACE_DAYS = 7
MAX_GRACE_DAYS = 366


def _latest_billable(enrollment: Enrollment) -> Period | None:
    """The latest period that has an order to pay (trials and periods without an order have none)."""
    return next((period for period in reversed(enrollment.periods) if period.order_id is not None), None)


def _is_paid(status: OrderStatus | None) -> bool:
    return status is not None and status.is_paid


def grace_policy(days: int) -> DunningPolicy:
    """The grace as a dunning policy: pause ``days`` after an unpaid period started."""
    return DunningPolicy(steps=[DunningStep(after=f"P{days}D", action=DunningAction.PAUSE)])


class TrialGraceAdapter(LicensedAdapter):
    """LICENSED plans with a trial: valid in the trial and in paid periods plus a grace; overdue after it."""

    key: ClassVar[str] = "shop.unchained.enrollments.trial-grace"
    version: ClassVar[str] = "1.0.0"
    label: ClassVar[str] = "Trial Subscription with Grace Period"
    grace: ClassVar[timedelta] = timedelta(days=DEFAULT_GRACE_DAYS)
    dunning: ClassVar[DunningPolicy | None] = grace_policy(DEFAULT_GRACE_DAYS)

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.usage_calculation_type is UsageCalculationType.LICENSED and plan.has_trial

    @classmethod
    def access_end(cls, period: Period) -> datetime:
        """Until when ``period`` grants access (from its start): see the module docstring."""
        if period.is_trial:
            return period.end
        if period.order_id is None or _is_paid(period.order_status):
            return period.end + cls.grace
        return period.start + cls.grace

    @classmethod
    def is_valid_for_activation(cls, enrollment: Enrollment, at: datetime) -> bool:
        if enrollment.status in (EnrollmentStatus.INITIAL, EnrollmentStatus.PAUSED):
            return False
        if enrollment.expires is not None and at >= enrollment.expires:
            return False
        return any(period.start <= at < cls.access_end(period) for period in enrollment.periods)

    async def is_overdue(self) -> bool:
        """An overdue pause holds until the latest billable order is paid (the grace's step makes the pause)."""
        enrollment = self.context.enrollment
        if enrollment.status is not EnrollmentStatus.PAUSED or enrollment.pause_reason is not PauseReason.OVERDUE:
            return False
        latest = _latest_billable(enrollment)
        if latest is None or latest.order_id is None:
            return False
        status = latest.order_status
        if self.context.services is not None:
            order = await self.context.services.find_order(latest.order_id)
            status = None if order is None else order.status
        return not _is_paid(status)


@functools.cache
def trial_grace_adapter(days: int = DEFAULT_GRACE_DAYS) -> type[TrialGraceAdapter]:
    """The trial-with-grace adapter with a grace of ``days`` (0 to 366); the same class for the same days.

    The default grace is :class:`TrialGraceAdapter` itself; any other is a subclass keyed
    ``shop.unchained.enrollments.trial-grace.<days>d``, since an enrollment records its adapter's key.
    """
    if isinstance(days, bool) or not 0 <= days <= MAX_GRACE_DAYS:
        raise ValueError(f"the grace period must be 0 to {MAX_GRACE_DAYS} days, got {days!r}")
    if days == DEFAULT_GRACE_DAYS:
        return TrialGraceAdapter
    variant = type(
        f"TrialGraceAdapter{days}d",
        (TrialGraceAdapter,),
        {
            "__module__": __name__,
            "__doc__": f"{TrialGraceAdapter.__doc__} (grace: {days} days)",
            "key": f"{TrialGraceAdapter.key}.{days}d",
            "label": f"{TrialGraceAdapter.label} ({days} days)",
            "grace": timedelta(days=days),
            "dunning": grace_policy(days),
        },
    )
    return cast(type[TrialGraceAdapter], variant)
