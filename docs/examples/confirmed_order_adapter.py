"""A custom enrollment adapter: access only while the enrollment's latest order is confirmed.

The "custom subscription" of the reference documentation, for prepaid LICENSED plans: an order at the
start of each billable period (inherited from the licensed adapter), and access only while ``at`` lies in a
period **and** the latest order is CONFIRMED. FULFILLED counts too: it follows CONFIRMED once the order is
delivered, and a paid subscription should not lose access because its order shipped.

Register it in front of the built-in adapters, so that it wins the plans it is activated for:

    from adapters.builtin import director_from_names
    from adapters.director import EnrollmentDirector
    from starter.runtime.worker import build_worker

    director = EnrollmentDirector([ConfirmedOrderAdapter, *director_from_names(["licensed", "metered"]).adapters])
    resources = build_worker(client, database_url=url, task_queue="enrollments", director=director)

See docs/adapters.md for what runs where. ``tests/workflows/test_custom_adapter.py`` runs this file on the real
workflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from adapters.base import EnrollmentAdapter
from adapters.domain import Enrollment, OrderStatus, ProductPlan, UsageCalculationType
from adapters.licensed import LicensedAdapter

PAID = frozenset({OrderStatus.CONFIRMED, OrderStatus.FULFILLED})


class ConfirmedOrderAdapter(LicensedAdapter):
    """LICENSED plans: valid while in a period and the latest order is CONFIRMED (or FULFILLED)."""

    # Keys are unique across every adapter a process registers: use your shop's own namespace.
    key: ClassVar[str] = "my-shop.enrollments.confirmed-order"
    version: ClassVar[str] = "1.0.0"
    label: ClassVar[str] = "Access while the latest order is confirmed"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.usage_calculation_type is UsageCalculationType.LICENSED

    @classmethod
    def is_valid_for_activation(cls, enrollment: Enrollment, at: datetime) -> bool:
        # Runs in the workflow's query, inside the sandbox: pure, no I/O. The order status is part of the
        # snapshot (Period.order_status), kept current by the order_status_changed signal/update.
        if not EnrollmentAdapter.is_valid_for_activation(enrollment, at):  # status, expiry, in a period
            return False
        latest = next((period for period in reversed(enrollment.periods) if period.order_id is not None), None)
        return latest is not None and latest.order_status in PAID
