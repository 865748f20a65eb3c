"""The enrollment adapter API: what a shop implements to decide periods, orders, overdue and access.

Mirrors the reference ``IEnrollmentAdapter`` in snake_case. The class-level methods (``is_activated_for``,
``transform_order_item_to_enrollment_plan``, ``is_valid_for_activation``) need no enrollment context; the
per-enrollment actions are methods of an instance built from an :class:`EnrollmentContext`.

``is_valid_for_activation`` runs inside the workflow sandbox (it answers a query): it must be a pure,
synchronous function of the snapshot and a time. The async actions run in activities and may do I/O
through ``context.services``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from adapters.calendar import next_period_window
from adapters.domain import (
    Enrollment,
    EnrollmentPlan,
    EnrollmentStatus,
    Order,
    OrderConfiguration,
    OrderPosition,
    PeriodWindow,
    Product,
    ProductPlan,
)
from adapters.dunning_policy import DunningPolicy


class EnrollmentServices(Protocol):
    """The I/O an adapter may use in its async actions (implemented by the activities)."""

    async def find_order(self, order_id: str) -> Order | None: ...

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int: ...


@dataclass(frozen=True, slots=True)
class EnrollmentContext:
    """What an adapter's actions see: the snapshot, its product, the workflow's "now", and services."""

    enrollment: Enrollment
    product: Product
    now: datetime
    services: EnrollmentServices | None = None

    @property
    def plan(self) -> ProductPlan:
        return self.product.require_plan()


class EnrollmentAdapter:
    """Base adapter: anchored periods, an order at the start of each billable period, no overdue."""

    key: ClassVar[str] = "shop.unchained.enrollments.base"
    version: ClassVar[str] = "1.0.0"
    label: ClassVar[str] = "Base enrollment adapter"
    bills_in_arrears: ClassVar[bool] = False
    """True when a period's order is made after the period ends (metered usage), not at its start."""
    dunning: ClassVar[DunningPolicy | None] = None
    """The dunning policy of unpaid orders on plans that carry none (None: such orders are not chased)."""

    def __init__(self, context: EnrollmentContext) -> None:
        self.context = context

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        """Whether this adapter handles enrollments on ``plan``; the base adapter handles none."""
        return False

    @classmethod
    async def transform_order_item_to_enrollment_plan(cls, order_position: OrderPosition) -> EnrollmentPlan:
        """An order position of a checkout as an enrollment plan; the configuration is kept."""
        return EnrollmentPlan(
            product_id=order_position.product_id,
            quantity=max(order_position.quantity, 1),
            configuration=list(order_position.configuration),
        )

    @classmethod
    def is_valid_for_activation(cls, enrollment: Enrollment, at: datetime) -> bool:
        """Pure access check: ``at`` lies in a period, the enrollment is not INITIAL or PAUSED, and not expired.

        A TERMINATED enrollment keeps access until ``expires`` (the end of what was paid).
        """
        if enrollment.status in (EnrollmentStatus.INITIAL, EnrollmentStatus.PAUSED):
            return False
        if enrollment.expires is not None and at >= enrollment.expires:
            return False
        return enrollment.period_at(at) is not None

    @classmethod
    def deadline_after(cls, enrollment: Enrollment, now: datetime) -> datetime | None:
        """The next moment after ``now`` (other than a period boundary) at which ``is_overdue`` may change."""
        return None

    async def next_period(self) -> PeriodWindow | None:
        """The period after the enrollment's latest one, anchored on its schedule; None when it ended."""
        enrollment = self.context.enrollment
        if enrollment.status is EnrollmentStatus.TERMINATED:
            return None
        window = next_period_window(self.context.plan, enrollment.anchor, enrollment.timezone, enrollment.periods)
        if enrollment.expires is not None and window.start >= enrollment.expires:
            return None
        return window

    async def configuration_for_order(self, period: PeriodWindow) -> OrderConfiguration | None:
        """The order for ``period``: one position at the beginning of a billable period, else None."""
        if period.is_trial or period.start > self.context.now:
            return None
        enrollment = self.context.enrollment
        return OrderConfiguration(
            period=period,
            order_context={},
            order_position_templates=[
                OrderPosition(
                    product_id=enrollment.product_id,
                    original_product_id=enrollment.product_id,
                    quantity=enrollment.quantity,
                    configuration=list(enrollment.configuration),
                )
            ],
        )

    async def is_overdue(self) -> bool:
        """Whether payment is overdue; the base adapter never is."""
        return False
