"""The library services import to drive enrollments: the typed client, its errors, checkout orders."""

from starter.client.checkout import CheckoutEnrollment, EnrollmentsFromOrder, SkippedPosition
from starter.client.client import EnrollmentsClient
from starter.client.errors import (
    EnrollmentClientError,
    EnrollmentCommandRejected,
    EnrollmentNotFound,
    OrderNotFound,
)
from starter.client.payload_limits import PayloadTooLarge

__all__ = [
    "CheckoutEnrollment",
    "EnrollmentClientError",
    "EnrollmentCommandRejected",
    "EnrollmentNotFound",
    "EnrollmentsClient",
    "EnrollmentsFromOrder",
    "OrderNotFound",
    "PayloadTooLarge",
    "SkippedPosition",
]
