"""The errors the client library raises; each message is meant for the caller."""

from __future__ import annotations

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError


class EnrollmentClientError(Exception):
    """Base of the errors this client raises."""


class EnrollmentNotFound(EnrollmentClientError, LookupError):
    def __init__(self, enrollment_id: str) -> None:
        super().__init__(f"enrollment {enrollment_id!r} not found")
        self.enrollment_id = enrollment_id


class OrderNotFound(EnrollmentClientError, LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} not found")
        self.order_id = order_id


class EnrollmentCommandRejected(EnrollmentClientError, ValueError):
    """The enrollment refused a command (invalid transition, bad registration, …); ``error_type`` says which."""

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type


def rejection(error: WorkflowUpdateFailedError) -> EnrollmentCommandRejected:
    """The refusal an update failed with, as the client's error."""
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return EnrollmentCommandRejected(cause.message, cause.type)
    return EnrollmentCommandRejected(str(cause or error))
