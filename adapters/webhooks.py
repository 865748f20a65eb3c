"""Webhooks, the pure part: endpoint rules, the delivery policy, the signature, and the delivery contracts.

The delivery workflow (``workflows/webhook_delivery.py``) and its activity (``activities/webhook_activities.py``)
speak through the models here; the client library signs nothing but checks signatures with the same function.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from adapters.domain import DomainModel, UtcDatetime
from adapters.events import EventType

WEBHOOK_WORKFLOW_TYPE = "WebhookDelivery"
"""Workflow type of the per-endpoint delivery workflow, ``webhook-<endpoint id>`` on the webhook task queue."""
DISPATCH_ACTIVITY = "dispatch_webhook_events"
WAKE_SIGNAL = "wake"
"""Signal that makes a delivery workflow dispatch now (sent after ``redeliver`` and ``remove``)."""
WORKFLOW_ID_PREFIX = "webhook-"
SIGNATURE_HEADER = "Enrollments-Signature"
EVENT_ID_HEADER = "Enrollments-Event-Id"
MIN_SECRET_LENGTH = 16
MAX_URL_LENGTH = 2_048


def webhook_workflow_id(endpoint_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{endpoint_id}"


def webhook_task_queue(task_queue: str) -> str:
    """The delivery task queue that goes with an enrollment task queue when none is configured."""
    return f"{task_queue}-webhooks"


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {parts.scheme or 'no'} scheme")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@): authenticate receivers by the signature")
    if not parts.hostname:
        raise ValueError("has no host")
    return url.strip()


class WebhookEndpointSpec(DomainModel):
    """What a service registers: where to POST, the shared secret, and which event types (None: all)."""

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    secret: str = Field(max_length=256, repr=False)
    event_types: list[EventType] | None = Field(default=None, min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: str) -> str:
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters (it signs every delivery)")
        return value


class WebhookEndpoint(DomainModel):
    """A registered endpoint as operators see it (never its secret)."""

    id: str
    url: str
    event_types: list[EventType] | None = None
    failing_since: UtcDatetime | None = Field(default=None, description="set once retries ran out; see redeliver")
    last_error: str | None = None
    pending: int = Field(default=0, ge=0, description="deliveries waiting (new or retried)")
    delivered: int = Field(default=0, ge=0)
    created: UtcDatetime

    @property
    def status(self) -> str:
        return "failing" if self.failing_since is not None else "active"


class DeliveryAttempt(DomainModel):
    """One POST of one event to an endpoint: its status code (None: no response) or error, and when."""

    at: UtcDatetime
    event_id: str
    event_type: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = Field(ge=0)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryPolicy(DomainModel):
    """How hard the worker tries: timeout per POST, backoff between attempts, how long before giving up."""

    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retry_initial_seconds: float = Field(default=2.0, gt=0, le=3_600)
    retry_max_seconds: float = Field(default=600.0, gt=0, le=86_400)
    retry_for_seconds: float = Field(
        default=3 * 86_400.0, gt=0, description="retry an event this long after its first failure, then fail"
    )
    concurrency: int = Field(default=10, ge=1, le=200, description="enrollments delivered at once per endpoint")
    poll_seconds: float = Field(default=1.0, gt=0, le=3_600, description="how often an idle endpoint checks")
    response_limit_bytes: int = Field(default=4_096, ge=0, description="response body read at most (for errors)")

    def backoff(self, failures: int) -> timedelta:
        """The wait after the ``failures``-th failed attempt in a row: doubling from the initial wait, capped."""
        exponent = min(max(failures - 1, 0), 60)
        return timedelta(seconds=min(self.retry_initial_seconds * 2**exponent, self.retry_max_seconds))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Enrollments-Signature`` value: ``t=<unix seconds>,v1=<hex signature>``."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


# --- the delivery workflow ⇄ activity contract ---------------------------------------------------------


class WebhookDeliveryInput(DomainModel):
    """Input of an endpoint's delivery workflow; the totals are carried over continue-as-new."""

    endpoint_id: str = Field(min_length=1)
    delivered: int = Field(default=0, ge=0)
    failed_attempts: int = Field(default=0, ge=0)


class DispatchRequest(DomainModel):
    endpoint_id: str


class DispatchResult(DomainModel):
    """One dispatch pass: what it did and when the workflow should come back."""

    removed: bool = Field(default=False, description="the endpoint is gone: the workflow ends")
    url: str = ""
    delivered: int = 0
    failed_attempts: int = 0
    pending: int = 0
    more: bool = Field(default=False, description="work is due now: dispatch again at once")
    next_retry: UtcDatetime | None = Field(default=None, description="the earliest waiting retry (for operators)")
    failing_since: UtcDatetime | None = None
    last_error: str | None = None
    wait_seconds: float = Field(default=1.0, ge=0, description="until the next pass, unless woken")
