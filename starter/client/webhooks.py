"""For services that receive webhooks: check that a delivery is genuine and recent, and read its event.

    from starter.client import verify_webhook, WebhookVerificationError

    event = verify_webhook(SECRET, request.headers, await request.body())  # raises on a forgery or a replay

It connects to nothing: a receiver needs the secret only, not Temporal or the database.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from pydantic import ValidationError

from adapters.events import Event
from adapters.webhooks import SIGNATURE_HEADER, signature


class WebhookVerificationError(ValueError):
    """The delivery is not from the engine with this secret, or it is too old (a replay)."""


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes | str, tolerance: int = 300, *, now: float | None = None
) -> Event:
    """The event a webhook delivered, once its ``Enrollments-Signature`` matches ``body`` under ``secret`` and
    its timestamp is within ``tolerance`` seconds of ``now`` (default: the clock); else
    :class:`WebhookVerificationError` saying why. Pass the raw body, exactly as received."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    header = next((value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER.lower()), None)
    if header is None:
        raise WebhookVerificationError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} is not t=<unix seconds>,v1=<hex signature>")
    expected = signature(secret, timestamp, raw)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookVerificationError("the signature does not match the body under this secret")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise WebhookVerificationError(f"the timestamp is {age:.0f} s away from now (tolerance {tolerance} s)")
    try:
        return Event.model_validate_json(raw)
    except ValidationError as error:
        raise WebhookVerificationError(f"the body is not an event: {error.error_count()} problems") from None
