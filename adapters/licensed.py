"""The licensed adapter: prepaid periods, an order at the start of each, access while in a period."""

from __future__ import annotations

from typing import ClassVar

from adapters.base import EnrollmentAdapter
from adapters.domain import ProductPlan, UsageCalculationType


class LicensedAdapter(EnrollmentAdapter):
    """LICENSED plans: valid while ``at`` lies in a period; one order position per billable period."""

    key: ClassVar[str] = "shop.unchained.enrollments.licensed"
    version: ClassVar[str] = "1.0.0"
    label: ClassVar[str] = "Licensed Enrollments"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.usage_calculation_type is UsageCalculationType.LICENSED
