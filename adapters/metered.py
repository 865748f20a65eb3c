"""The metered adapter: usage-based billing in arrears.

Usage is recorded with an idempotency key straight into the database (``EnrollmentsClient.record_usage``,
``enrollments usage record``); the workflow never sees single records. When a period's service has ended
the advance activity asks :meth:`MeteredAdapter.configuration_for_order` for its order: one position whose
quantity is the units recorded in ``[start, end)``; no usage, no order.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from adapters.base import EnrollmentAdapter
from adapters.domain import (
    ConfigurationEntry,
    Enrollment,
    OrderConfiguration,
    OrderPosition,
    PeriodWindow,
    ProductPlan,
    UsageCalculationType,
    isoformat_utc,
)

USAGE_UNITS = "usageUnits"
PERIOD_START = "periodStart"
PERIOD_END = "periodEnd"
USAGE_KEYS = frozenset({USAGE_UNITS, PERIOD_START, PERIOD_END})
"""Configuration keys the metered order position carries besides the enrollment's own configuration."""


class MeteredAdapter(EnrollmentAdapter):
    """METERED plans: an order after each period ends with quantity = units used; access as licensed."""

    key: ClassVar[str] = "shop.unchained.enrollments.metered"
    version: ClassVar[str] = "1.0.0"
    label: ClassVar[str] = "Metered Usage Subscription"
    bills_in_arrears: ClassVar[bool] = True

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.usage_calculation_type is UsageCalculationType.METERED

    async def configuration_for_order(self, period: PeriodWindow) -> OrderConfiguration | None:
        """The order for a period whose service has ended: the units used in it; None while it runs,
        for a trial, and when nothing was used."""
        enrollment = self.context.enrollment
        end = enrollment.service_end(period)
        if period.is_trial or end > self.context.now:
            return None
        services = self.context.services
        if services is None:
            raise RuntimeError(f"{self.key} needs the usage service to bill enrollment {enrollment.id!r}")
        units = await services.usage_units(enrollment.id, period.start, end)
        return usage_order(enrollment, period, end, units)


def usage_order(enrollment: Enrollment, period: PeriodWindow, end: datetime, units: int) -> OrderConfiguration | None:
    """The order billing ``units`` used in ``period`` up to ``end`` (its service end); None for no usage."""
    if units == 0:
        return None
    usage = {USAGE_UNITS: str(units), PERIOD_START: isoformat_utc(period.start), PERIOD_END: isoformat_utc(end)}
    configuration = [entry for entry in enrollment.configuration if entry.key not in USAGE_KEYS]
    configuration += [ConfigurationEntry(key=key, value=value) for key, value in usage.items()]
    return OrderConfiguration(
        period=PeriodWindow(start=period.start, end=period.end, is_trial=period.is_trial),
        order_context={USAGE_UNITS: units, PERIOD_START: usage[PERIOD_START], PERIOD_END: usage[PERIOD_END]},
        order_position_templates=[
            OrderPosition(
                product_id=enrollment.product_id,
                original_product_id=enrollment.product_id,
                quantity=units,
                configuration=configuration,
            )
        ],
    )
