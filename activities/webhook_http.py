"""One signed POST of one event to a webhook endpoint, and what came of it.

Redirects are not followed (a 3xx is a failed attempt naming where it pointed), the response body is read up
to a small limit (to explain a failure; a longer one is cut and its connection dropped), and the whole exchange
has one deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from adapters.events import Event
from adapters.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, DeliveryPolicy, signature_header

USER_AGENT = "durable-enrollments-webhooks/1"
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class PostResult:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_http_client(policy: DeliveryPolicy) -> httpx.AsyncClient:
    """The HTTP client a worker delivers with: no redirects, the policy's timeout, pooled connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=policy.timeout_seconds,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        headers={"User-Agent": USER_AGENT},
    )


def event_body(event: Event) -> bytes:
    """The exact bytes POSTed (and signed): the event as compact JSON."""
    return event.model_dump_json().encode()


def signed_headers(secret: str, event: Event, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
        EVENT_ID_HEADER: event.id,
    }


async def post_event(
    http: httpx.AsyncClient, url: str, secret: str, event: Event, policy: DeliveryPolicy
) -> PostResult:
    """POST ``event`` to ``url`` signed with ``secret``; never raises for what the receiver or network did."""
    body = event_body(event)
    headers = signed_headers(secret, event, body, int(time.time()))
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            async with http.stream("POST", url, content=body, headers=headers) as response:
                status_code = response.status_code
                # Read to the end when it is short (the connection is then reused), else only the start.
                excerpt = await _read_at_most(response, policy.response_limit_bytes)
                if 300 <= status_code < 400:
                    error = f"HTTP {status_code}: redirect to {response.headers.get('location', '?')!r} not followed"
                elif not 200 <= status_code < 300:
                    error = f"HTTP {status_code}: {excerpt.decode(errors='replace').strip()}".strip()
    except (TimeoutError, httpx.TimeoutException):
        if status_code is None or not 200 <= status_code < 300:  # a 2xx whose body was slow still counts
            status_code, error = None, f"no response within {policy.timeout_seconds:g} s"
    except httpx.HTTPError as failure:
        status_code = None
        error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    elapsed = round((time.perf_counter() - started) * 1000)
    return PostResult(
        status_code=status_code, error=None if error is None else error[:MAX_ERROR_LENGTH], duration_ms=elapsed
    )


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; the rest is not read (the connection is dropped instead)."""
    read = bytearray()
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= limit:
            break
    return bytes(read[:limit])
