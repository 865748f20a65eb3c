"""The change activity: a plan, quantity or terms change decided by :func:`adapters.changes.plan_change` and
stored in one transaction (:class:`activities.persistence.changes.ChangeRepository`), idempotent by event key.

A change the enrollment cannot take (unknown product, no price in its currency, a TERMINATED enrollment, …)
is a non-retryable ``ApplicationError`` typed with the reason, raised before anything is written.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.faults import FaultPoint, fault_injector
from activities.persistence import EnrollmentNotFound, Store
from adapters.changes import ChangeRefused, ChangeRequest, ChangeResult
from adapters.lifecycle import ActivityName, ErrorType


class ChangeActivities:
    """The change activity on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name=ActivityName.CHANGE)
    async def change_enrollment(self, request: ChangeRequest) -> ChangeResult:
        """Apply a change taking effect at ``request.at`` (or leave it pending at period end, or withdraw that)."""
        changes, command, enrollment_id = self.store.changes, request.command, request.enrollment_id
        try:
            made = await changes.made(enrollment_id, request.event_key, request.at)
            if made is not None:
                return made
            if command.cancel:
                info = "withdrew the change at period end"
                return await changes.withdraw(enrollment_id, request.event_key, at=request.at, info=info)
            outcome = await changes.decide(enrollment_id, command, request.at)
            result = await changes.apply(enrollment_id, outcome, request.event_key, now=request.at)
        except EnrollmentNotFound as error:
            raise ApplicationError(str(error), type=ErrorType.ENROLLMENT_NOT_FOUND, non_retryable=True) from None
        except ChangeRefused as refused:
            raise ApplicationError(refused.message, type=refused.error_type, non_retryable=True) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return result.model_copy(update={"outcome": outcome})
