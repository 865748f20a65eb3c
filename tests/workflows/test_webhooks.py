"""Webhooks end to end on the Temporal dev server (real time) and a real HTTP receiver on loopback.

The worker runs both task queues (enrollments, webhook delivery) as in production, with a fast delivery policy so
that retries take milliseconds. Nothing is mocked: the receiver is a real HTTP server that goes down, answers
500, answers late, redirects; the engine's worker crashes activities after their commit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from activities.faults import FaultPoint, fault_injector
from activities.persistence import Store, open_store
from adapters.domain import BillingInterval, OrderStatus, ProductPlan
from adapters.events import Event
from adapters.webhooks import DeliveryAttempt, DeliveryPolicy, WebhookEndpoint, webhook_workflow_id
from starter.client import EnrollmentsClient, WebhookVerificationError, verify_webhook
from starter.devtools.receiver import Answer, Received, WebhookReceiver
from tests.conftest import Databases
from tests.support.events import settled_events
from tests.support.temporal_env import add_product, running_worker

T = TypeVar("T")

SECRET = "a-shared-secret-of-some-length"
PRODUCT = "webhook-monthly"
FAST = DeliveryPolicy(
    timeout_seconds=0.5,
    retry_initial_seconds=0.05,
    retry_max_seconds=0.2,
    retry_for_seconds=3_600,
    concurrency=4,
    poll_seconds=0.1,
)
PATIENT = FAST.model_copy(update={"timeout_seconds": 10.0})
"""For tests where a slow answer on a busy machine must not count as a timeout."""
EVENTS_PER_ENROLLMENT = 4  # created, activated, order.created, period_started


@pytest.fixture
async def postgres_url(test_databases: Databases) -> str:
    await test_databases.clear("postgresql")
    return await test_databases.url("postgresql")


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    try:
        yield started
    finally:
        started.stop()


async def make_changes(client: EnrollmentsClient, count: int) -> list[str]:
    """``count`` enrollments, each with its first period and order; the first paused and resumed, the second's
    order paid: 4 events each, plus 2 and 1."""
    ids = [await client.create_enrollment(product_id=PRODUCT, user_id=f"user-{index}") for index in range(count)]
    await client.pause(ids[0], reason="holiday")
    await client.resume(ids[0])
    view = await client.get_enrollment(ids[1])
    await client.order_status_changed(view.orders[0].id, OrderStatus.CONFIRMED, enrollment_id=ids[1])
    return ids


def expected_count(enrollments: int) -> int:
    return enrollments * EVENTS_PER_ENROLLMENT + 3


def event_of(request: Received) -> Event:
    return Event.model_validate_json(request.body)


def assert_in_order_per_enrollment(requests: list[Received]) -> None:
    """Event n+1 of an enrollment was never sent before event n had been answered 2xx."""
    acknowledged: dict[str, set[int]] = defaultdict(set)
    for request in requests:
        event = event_of(request)
        if event.sequence > 1:
            assert event.sequence - 1 in acknowledged[event.enrollment_id], (event.enrollment_id, event.sequence)
        if 200 <= request.status < 300:
            acknowledged[event.enrollment_id].add(event.sequence)


async def all_delivered(receiver: WebhookReceiver, store: Store, count: int) -> list[Event]:
    """The outbox's events once the receiver has acknowledged each of them."""
    events = await settled_events(store, count)
    assert len(events) == count
    wanted = {event.id for event in events}
    await receiver.wait_for(lambda got: wanted <= {event_of(r).id for r in got if 200 <= r.status < 300}, seconds=60)
    return events


async def eventually(check: Callable[[], Awaitable[T]]) -> T:
    """``check()`` once it returns something true (its last value after 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def recorded(client: EnrollmentsClient, delivered: int) -> WebhookEndpoint:
    """The one endpoint once ``delivered`` deliveries are stored as delivered: attempts are stored after the
    receiver has acknowledged them."""

    async def endpoint() -> WebhookEndpoint | None:
        (listed,) = await client.webhooks()
        return listed if listed.delivered >= delivered else None

    found = await eventually(endpoint)
    assert found is not None
    return found


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_every_event_reaches_a_new_endpoint_signed_and_in_order(
    dev_server_env, test_databases: Databases, receiver: WebhookReceiver, backend: str
) -> None:
    await test_databases.clear(backend)
    database_url = await test_databases.url(backend)
    await add_product(database_url, PRODUCT, ProductPlan(billing_interval=BillingInterval.MONTHS))
    async with (
        running_worker(dev_server_env, database_url, delivery_policy=PATIENT) as (client, _),
        open_store(database_url) as store,
    ):
        endpoint = await client.add_webhook(receiver.url, SECRET)  # the worker is running already
        await make_changes(client, 3)
        events = await all_delivered(receiver, store, expected_count(3))
        requests = receiver.received
        assert len(requests) == len(events)  # nothing failed, so nothing was sent twice
        for request, in_order in zip(
            sorted(requests, key=lambda r: event_of(r).id), sorted(events, key=lambda e: e.id), strict=True
        ):
            assert request.headers["content-type"] == "application/json"
            assert verify_webhook(SECRET, request.headers, request.body) == in_order
            assert json.loads(request.body).keys() == {"id", "type", "enrollment_id", "sequence", "occurred_at", "data"}
        assert_in_order_per_enrollment(requests)

        sample = requests[0]
        with pytest.raises(WebhookVerificationError, match="signature does not match"):
            verify_webhook(SECRET, sample.headers, sample.body.replace(b'"sequence":', b'"sequence": '))
        with pytest.raises(WebhookVerificationError, match="signature does not match"):
            verify_webhook("another-secret-of-16+", sample.headers, sample.body)
        timestamp = int(sample.headers["enrollments-signature"].split(",")[0].removeprefix("t="))
        with pytest.raises(WebhookVerificationError, match="tolerance 300"):
            verify_webhook(SECRET, sample.headers, sample.body, now=timestamp + 301)

        listed = await recorded(client, len(events))
        assert (listed.id, listed.status, listed.delivered, listed.pending) == (endpoint.id, "active", len(events), 0)
        attempts = await client.webhook_attempts(endpoint.id, limit=1_000)
        assert len(attempts) == len(events) and all(attempt.status_code == 200 for attempt in attempts)
        assert (await client.events(limit=1_000)).events == events


async def test_a_receiver_that_is_down_errs_and_times_out_gets_everything_in_order(
    dev_server_env, postgres_url: str, receiver: WebhookReceiver
) -> None:
    await add_product(postgres_url, PRODUCT, ProductPlan(billing_interval=BillingInterval.MONTHS))
    receiver.stop()
    async with (
        running_worker(dev_server_env, postgres_url, delivery_policy=FAST) as (client, _),
        open_store(postgres_url) as store,
    ):
        endpoint = await client.add_webhook(receiver.url, SECRET)
        await make_changes(client, 3)
        count = expected_count(3)
        await settled_events(store, count)

        async def refused() -> list[DeliveryAttempt]:
            return [attempt for attempt in await client.webhook_attempts(endpoint.id) if attempt.status_code is None]

        assert all("Connect" in (attempt.error or "") for attempt in await eventually(refused))

        async def all_pending() -> WebhookEndpoint | None:
            (listed,) = await client.webhooks()  # delivery rows appear as the delivery workflow reaches them
            return listed if listed.pending == count and listed.last_error else None

        down = await eventually(all_pending)
        assert down is not None, "every event waits for the receiver, with the connection error"

        receiver.answer_next(
            Answer(status=500, body=b"overloaded " * 10_000),
            Answer(delay_seconds=FAST.timeout_seconds * 2),
            Answer(status=302, location=f"{receiver.url}/elsewhere"),
            Answer(status=503),
        )
        receiver.start()
        events = await all_delivered(receiver, store, count)

    requests = receiver.received
    assert_in_order_per_enrollment(requests)
    assert not any(request.path.endswith("/elsewhere") for request in requests)  # the redirect was not followed
    late = requests[1]
    repeats = [request for request in requests if event_of(request).id == event_of(late).id]
    assert len(repeats) >= 2 and {request.body for request in repeats} == {late.body}
    errors = [attempt.error or "" for attempt in await client.webhook_attempts(endpoint.id, limit=1_000)]
    assert any(error.startswith("HTTP 500: overloaded") and len(error) <= 500 for error in errors)
    assert any(error == f"no response within {FAST.timeout_seconds:g} s" for error in errors)
    assert any("redirect to" in error and "not followed" in error for error in errors)
    assert {event_of(request).id for request in requests} == {event.id for event in events}


async def test_crashes_after_commit_write_exactly_one_event_per_change(
    dev_server_env, postgres_url: str, receiver: WebhookReceiver
) -> None:
    await add_product(postgres_url, PRODUCT, ProductPlan(billing_interval=BillingInterval.MONTHS))
    async with (
        running_worker(dev_server_env, postgres_url, delivery_policy=PATIENT) as (client, _),
        open_store(postgres_url) as store,
    ):
        await client.add_webhook(receiver.url, SECRET)
        # Every other activity crashes right after its commit (dispatch passes too): each is retried.
        fault_injector.arm(FaultPoint.AFTER_COMMIT, times=6, spacing=1)
        try:
            await make_changes(client, 3)
            events = await all_delivered(receiver, store, expected_count(3))
        finally:
            fired = fault_injector.fired.get(FaultPoint.AFTER_COMMIT, 0)
            fault_injector.disarm()
    assert fired == 6
    assert len(events) == expected_count(3)  # no change wrote a second event
    by_enrollment: dict[str, list[int]] = defaultdict(list)
    for event in events:
        by_enrollment[event.enrollment_id].append(event.sequence)
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_enrollment.values())
    received: dict[str, set[bytes]] = defaultdict(set)
    for request in receiver.received:
        received[event_of(request).id].add(request.body)
    assert set(received) == {event.id for event in events}
    assert all(len(bodies) == 1 for bodies in received.values())  # a repeat is the same event under the same id
    assert_in_order_per_enrollment(receiver.received)


async def test_an_endpoint_that_keeps_failing_is_marked_failing_until_redelivered(
    dev_server_env, postgres_url: str, receiver: WebhookReceiver
) -> None:
    await add_product(postgres_url, PRODUCT, ProductPlan(billing_interval=BillingInterval.MONTHS))
    short = FAST.model_copy(update={"retry_for_seconds": 0.5})
    receiver.answer = Answer(status=500, body=b"broken")
    async with (
        running_worker(dev_server_env, postgres_url, delivery_policy=short) as (client, _),
        open_store(postgres_url) as store,
    ):
        endpoint = await client.add_webhook(receiver.url, SECRET)
        enrollment_id = await client.create_enrollment(product_id=PRODUCT, user_id="u")
        await settled_events(store, EVENTS_PER_ENROLLMENT)
        handle = client.client.get_workflow_handle(webhook_workflow_id(endpoint.id))

        async def details() -> str:
            metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
            return str(metadata.current_details)

        for _ in range(200):
            (listed,) = await client.webhooks()
            if listed.status == "failing" and "FAILING" in await details():
                break
            await asyncio.sleep(0.05)
        assert listed.status == "failing" and listed.last_error == "HTTP 500: broken"
        assert f"events redeliver --endpoint {endpoint.id}" in await details()
        tried = len(receiver.received)
        await asyncio.sleep(5 * FAST.poll_seconds)
        assert len(receiver.received) == tried  # failing: nothing is sent until redeliver

        receiver.answer = Answer()
        assert await client.redeliver_events(endpoint.id) == EVENTS_PER_ENROLLMENT
        events = await all_delivered(receiver, store, EVENTS_PER_ENROLLMENT)
        assert {event.enrollment_id for event in events} == {enrollment_id}
        healthy = await recorded(client, EVENTS_PER_ENROLLMENT)
        assert (healthy.status, healthy.pending, healthy.last_error) == ("active", 0, None)

        # Sent again on request: the same events under the same ids.
        before = len(receiver.received)
        assert await client.redeliver_events(endpoint.id, since=events[0].occurred_at.replace(year=2000)) == len(events)
        again = await receiver.wait_for(lambda got: len(got) >= before + len(events))
        assert {event_of(request).id for request in again[before:]} == {event.id for event in events}
        await client.remove_webhook(endpoint.id)
        assert await client.webhooks() == []
        await handle.result()  # the delivery workflow ends with its endpoint
