"""Payments from a service: an amount received for an order, or a failed attempt (soft or hard decline).

:class:`PaymentsMixin` is part of :class:`starter.client.EnrollmentsClient`. The order's enrollment records the
payment in its workflow (update), which runs the order's dunning schedule (docs/dunning.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from adapters.dunning import Decline
from adapters.lifecycle import EnrollmentView, PaymentCommand
from starter.client.references import order_and_enrollment

if TYPE_CHECKING:
    from activities.persistence import Store
    from adapters.lifecycle import Command


class PaymentsMixin:
    """Payments on the enrollments client (it looks the order's enrollment up in its database)."""

    if TYPE_CHECKING:

        def store(self) -> Store: ...

        async def send(self, enrollment_id: str, command: Command) -> EnrollmentView: ...

        @property
        def _has_database(self) -> bool: ...

    async def report_payment(
        self,
        order_id: str,
        *,
        received: int | None = None,
        failed: Decline | str | None = None,
        code: str | None = None,
        enrollment_id: str | None = None,
        at: datetime | None = None,
    ) -> EnrollmentView:
        """Tell an order's enrollment that a payment was ``received`` (minor units) or ``failed`` (soft or hard).

        A payment lowers the order's open balance and skips no dunning step; the whole balance makes the order
        CONFIRMED, ends its dunning and lifts a pause it made. A hard decline skips the order's remaining
        ``retry_payment`` steps; a soft one changes none. ``order_id`` may be the order's number; ``at`` a past
        instant the payment took effect (default: when the workflow receives it). An amount above the open
        balance, an order that is paid or rejected, or an order of another enrollment raise
        :class:`~starter.client.EnrollmentCommandRejected`, and nothing is recorded.
        """
        command = PaymentCommand(at=at, order_id=order_id, received=received, failed=failed, code=code)
        store = self.store if self._has_database else None
        identifier, enrollment_id = await order_and_enrollment(store, order_id, enrollment_id, "report_payment")
        return await self.send(enrollment_id, command.model_copy(update={"order_id": identifier}))
