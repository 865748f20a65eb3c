"""The library services import to drive enrollments: the typed client, its errors, checkout orders, events."""

from adapters.events import Event, EventPage, EventType
from starter.client.checkout import CheckoutEnrollment, EnrollmentsFromOrder, SkippedPosition
from starter.client.client import EnrollmentsClient
from starter.client.errors import (
    EnrollmentClientError,
    EnrollmentCommandRejected,
    EnrollmentNotFound,
    OrderNotFound,
)
from starter.client.payload_limits import PayloadTooLarge
from starter.client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "CheckoutEnrollment",
    "EnrollmentClientError",
    "EnrollmentCommandRejected",
    "EnrollmentNotFound",
    "EnrollmentsClient",
    "EnrollmentsFromOrder",
    "Event",
    "EventPage",
    "EventType",
    "OrderNotFound",
    "PayloadTooLarge",
    "SkippedPosition",
    "WebhookVerificationError",
    "verify_webhook",
]
