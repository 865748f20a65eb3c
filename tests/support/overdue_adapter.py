"""A test adapter that makes payment overdue one day into an unpaid period (weekly plans only).

It exercises the workflow's overdue path (PAUSED(overdue) and back) independently of the built-in
adapters: activated for WEEKS plans, overdue when the latest billable period's order is not paid (PENDING
or REJECTED) one day after the period started.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from adapters.domain import BillingInterval, Enrollment, ProductPlan
from adapters.licensed import LicensedAdapter

GRACE = timedelta(days=1)


class OverdueAfterOneDayAdapter(LicensedAdapter):
    key: ClassVar[str] = "tests.enrollments.overdue-after-one-day"
    label: ClassVar[str] = "Test: overdue one day into an unpaid period"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.billing_interval is BillingInterval.WEEKS

    @classmethod
    def deadline_after(cls, enrollment: Enrollment, now: datetime) -> datetime | None:
        billable = [period for period in enrollment.periods if period.order_id]
        if not billable:
            return None
        deadline = billable[-1].start + GRACE
        return deadline if deadline > now else None

    async def is_overdue(self) -> bool:
        billable = [period for period in self.context.enrollment.periods if period.order_id]
        if not billable or self.context.services is None:
            return False
        latest = billable[-1]
        assert latest.order_id is not None
        order = await self.context.services.find_order(latest.order_id)
        return order is not None and not order.status.is_paid and self.context.now >= latest.start + GRACE
