"""Webhook delivery throughput (``webhook_ratio``): the engine's delivery vs a bare httpx loop, same POSTs.

A backlog of events is written through the outbox (enrollments and their period events: no Temporal
involved). Ours: a new endpoint is added on a running worker and asked to send the backlog (``redeliver`` since
the beginning); timed until the loopback receiver has acknowledged every event. Baseline: the same signed bodies
POSTed to the same receiver by ``concurrency`` plain loops over httpx, each loop one enrollment's events in order
at a time, as the delivery does. Two alternating rounds per side.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import WorkflowEnvironment

from activities.persistence import Store, open_store
from activities.persistence.events import NewEvent, record_events
from activities.persistence.rows import lock_enrollment
from activities.webhook_http import event_body, signed_headers
from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, EnrollmentStatus, EnrollmentTerms, Product, ProductPlan
from adapters.events import Event, EventType, PeriodStarted, time_key
from adapters.webhooks import DeliveryPolicy
from bench.harness import bounded, ratio
from starter.client import EnrollmentsClient
from starter.devtools.receiver import WebhookReceiver
from starter.runtime.worker import build_worker

PRODUCT = "bench-webhooks"
SECRET = "bench-webhook-secret"
ORIGIN = datetime(2030, 1, 1, tzinfo=UTC)


async def _backlog(store: Store, enrollments: int, events_each: int) -> list[Event]:
    """``enrollments`` enrollments (created, activated) with ``events_each`` more events each, written through the
    outbox (one transaction per enrollment, as a catch-up writes them); every event, in cursor order."""
    await store.products.upsert(
        Product(id=PRODUCT, plan=ProductPlan(billing_interval=BillingInterval.DAYS)), now=ORIGIN
    )

    async def one(index: int) -> None:
        enrollment_id = f"wh-{uuid.uuid4().hex[:12]}"
        terms = EnrollmentTerms(user_id=f"user-{index}", product_id=PRODUCT)
        await store.enrollments.create(
            enrollment_id, terms, anchor=ORIGIN, adapter_key="bench", now=ORIGIN, status=EnrollmentStatus.ACTIVE
        )
        started = [
            PeriodStarted(start=ORIGIN + timedelta(days=day), end=ORIGIN + timedelta(days=day + 1), is_trial=False)
            for day in range(events_each)
        ]

        async def write(session: AsyncSession) -> None:
            await lock_enrollment(session, enrollment_id)
            await record_events(
                session,
                enrollment_id,
                *(
                    NewEvent(EventType.ENROLLMENT_PERIOD_STARTED, time_key(data.start), data.start, data)
                    for data in started
                ),
            )

        await store.transactions.write(write)

    await bounded([functools.partial(one, index) for index in range(enrollments)], 8)
    expected = enrollments * (2 + events_each)
    events: list[Event] = []
    cursor: str | None = None
    deadline = time.monotonic() + 60
    while len(events) < expected and time.monotonic() < deadline:
        page = await store.events.page(after=cursor, limit=1_000)
        events += page.events
        cursor = page.next_cursor
        if not page.events:
            await asyncio.sleep(0.05)
    return events


async def _acknowledged(receiver: WebhookReceiver, path: str, count: int) -> None:
    """Until the receiver has answered ``count`` POSTs to ``path`` with 2xx (a cheap check: the side being
    timed shares this process)."""
    deadline = time.monotonic() + 300
    while receiver.acknowledged(path) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{receiver.acknowledged(path)} of {count} events acknowledged at {path}")
        await asyncio.sleep(0.02)


async def _bare_loop(url: str, events: list[Event], concurrency: int) -> None:
    """The same POSTs from plain httpx loops: each takes an enrollment and sends its events in order."""
    by_enrollment: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_enrollment[event.enrollment_id].append(event)
    queue = list(by_enrollment.values())

    async def loop(http: httpx.AsyncClient) -> None:
        while queue:
            for event in queue.pop():
                body = event_body(event)
                response = await http.post(
                    url, content=body, headers=signed_headers(SECRET, event, body, int(time.time()))
                )
                response.raise_for_status()

    async with httpx.AsyncClient(follow_redirects=False, timeout=10.0) as http:
        await asyncio.gather(*(loop(http) for _ in range(concurrency)))


async def webhook_throughput(
    env: WorkflowEnvironment, database_url: str, *, enrollments: int, events_each: int, concurrency: int
) -> dict[str, Any]:
    """Events per second to a loopback receiver: a new endpoint delivering a backlog vs a bare httpx loop."""
    queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    policy = DeliveryPolicy(concurrency=concurrency, poll_seconds=0.2)
    receiver = WebhookReceiver().start()
    resources = build_worker(
        env.client, database_url=database_url, task_queue=queue, director=director_from_names(["licensed"]),
        delivery_policy=policy,
    )  # fmt: skip
    client = EnrollmentsClient(env.client, task_queue=queue, database_url=database_url)
    seconds = {"ours": 0.0, "baseline": 0.0}
    try:
        async with open_store(database_url) as store:
            events = await _backlog(store, enrollments, events_each)
        async with resources.running():
            # Warm-up (not timed): connections pooled, code paths loaded.
            await _bare_loop(f"{receiver.url}/warm-up", events[:20], 2)
            for round_ in range(2):
                sides = ["ours", "baseline"] if round_ == 0 else ["baseline", "ours"]
                for side in sides:
                    path = f"/hooks/{side}-{round_}"
                    url = f"http://127.0.0.1:{receiver.port}{path}"
                    started = time.perf_counter()
                    if side == "ours":
                        endpoint = await client.add_webhook(url, SECRET)
                        await client.redeliver_events(endpoint.id, since=datetime(2000, 1, 1, tzinfo=UTC))
                    else:
                        await _bare_loop(url, events, concurrency)
                    await _acknowledged(receiver, path, len(events))
                    seconds[side] += time.perf_counter() - started
                    if side == "ours":
                        await client.remove_webhook(endpoint.id)
    finally:
        receiver.stop()
        await client.close()
        await resources.close()
    delivered = 2 * len(events)
    rates = {side: round(delivered / value, 1) for side, value in seconds.items()}
    return {
        "server": "dev server",
        "events_per_side": delivered,
        "enrollments": enrollments,
        "concurrency": concurrency,
        "per_second": rates,
        "webhook_ratio": ratio(rates["ours"], rates["baseline"]),
    }
