"""The event outbox on real PostgreSQL and SQLite: one event per change, in the change's transaction, gapless
sequences, ids from business keys, a cursor that never skips a late commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from activities.persistence import Store, open_store
from activities.persistence.events import NewEvent, record_events
from activities.persistence.models import EventRow
from activities.persistence.rows import lock_enrollment
from adapters.domain import (
    BillingInterval,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PauseReason,
    PeriodWindow,
    Product,
    ProductPlan,
    StatusChange,
    UsageCalculationType,
)
from adapters.events import EventType, PeriodStarted, event_id_for
from tests.conftest import Databases
from tests.support.events import settled_events

T0 = datetime(2031, 1, 31, 9, 0, tzinfo=UTC)
PLAN = Product(id="events-monthly", plan=ProductPlan(billing_interval=BillingInterval.MONTHS))
METERED = Product(
    id="events-metered",
    plan=ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.DAYS),
)


def window(index: int, days: int = 30) -> PeriodWindow:
    return PeriodWindow(start=T0 + timedelta(days=days * index), end=T0 + timedelta(days=days * (index + 1)))


def order_for(period: PeriodWindow, product_id: str = PLAN.id) -> OrderConfiguration:
    position = OrderPosition(product_id=product_id, original_product_id=product_id, quantity=1)
    return OrderConfiguration(period=period, order_position_templates=[position])


async def enroll(store: Store, enrollment_id: str, *, status: EnrollmentStatus, product: Product = PLAN) -> None:
    await store.products.upsert(product, now=T0)
    terms = EnrollmentTerms(user_id="u-1", product_id=product.id)
    await store.enrollments.create(enrollment_id, terms, anchor=T0, adapter_key="test", now=T0, status=status)


async def events_of(store: Store, enrollment_id: str, expected: int) -> list[tuple[int, str, datetime]]:
    events = await settled_events(store, expected, enrollment_id=enrollment_id)
    return [(event.sequence, event.type, event.occurred_at) for event in events]


async def test_every_change_writes_one_event_in_order_with_business_times(store: Store) -> None:
    await enroll(store, "e-1", status=EnrollmentStatus.ACTIVE)
    first, order = await store.billing.add_period("e-1", window(0), order_for(window(0)), now=T0)
    assert order is not None
    paid_at = T0 + timedelta(days=2)
    await store.billing.set_order_status(order.id, OrderStatus.CONFIRMED, now=paid_at)
    await store.billing.set_order_status(order.id, OrderStatus.CONFIRMED, now=paid_at)  # the same: no event
    paused_at = T0 + timedelta(days=3)
    pause = StatusChange(
        status=EnrollmentStatus.PAUSED,
        event_key="k-pause",
        at=paused_at,
        info="paused",
        pause_reason=PauseReason.MANUAL,
    )
    await store.enrollments.change_status("e-1", pause)

    # Everything again, as retried activities do: nothing new.
    await store.enrollments.create(
        "e-1", EnrollmentTerms(user_id="u-1", product_id=PLAN.id), anchor=T0, adapter_key="test", now=T0
    )
    await store.billing.add_period("e-1", window(0), order_for(window(0)), now=T0)
    await store.enrollments.change_status("e-1", pause)

    assert await events_of(store, "e-1", 6) == [
        (1, "enrollment.created", T0),
        (2, "enrollment.activated", T0),
        (3, "order.created", window(0).start),
        (4, "enrollment.period_started", window(0).start),
        (5, "order.status_changed", paid_at),
        (6, "enrollment.status_changed", paused_at),
    ]
    events = await settled_events(store, 6, enrollment_id="e-1")
    assert events[0].id == event_id_for("e-1", EventType.ENROLLMENT_CREATED, "created")
    assert events[3].typed_data() == PeriodStarted(start=first.start, end=first.end, is_trial=False, order_id=order.id)
    assert events[4].data == {"id": order.id, "number": order.number, "from": "PENDING", "to": "CONFIRMED"}
    assert events[5].data == {
        "from": "ACTIVE",
        "to": "PAUSED",
        "reason": "paused",
        "pause_reason": "manual",
        "expires": None,
    }
    assert all(event.typed_data() for event in events)  # every stored data validates as its type's model


async def test_a_scheduled_start_reports_the_change_and_the_activation(store: Store) -> None:
    await enroll(store, "e-2", status=EnrollmentStatus.INITIAL)
    start = StatusChange(status=EnrollmentStatus.ACTIVE, event_key="k-start", at=T0, info="started")
    await store.enrollments.change_status("e-2", start)
    paused = StatusChange(
        status=EnrollmentStatus.PAUSED,
        event_key="k-pause",
        at=T0 + timedelta(minutes=30),
        info="x",
        pause_reason=PauseReason.MANUAL,
    )
    await store.enrollments.change_status("e-2", paused)
    resumed = StatusChange(status=EnrollmentStatus.ACTIVE, event_key="k-again", at=T0 + timedelta(hours=1), info="x")
    await store.enrollments.change_status("e-2", resumed)
    types = [kind for _, kind, _ in await events_of(store, "e-2", 5)]
    assert types == [
        "enrollment.created",
        "enrollment.status_changed",
        "enrollment.activated",
        "enrollment.status_changed",
        "enrollment.status_changed",  # a later change to ACTIVE is no second activation
    ]


async def test_billing_in_arrears_reports_the_usage_and_its_order_at_the_service_end(store: Store) -> None:
    await enroll(store, "e-3", status=EnrollmentStatus.ACTIVE, product=METERED)
    day = window(0, days=1)
    await store.billing.add_period("e-3", day, None, now=day.start)
    await store.usage.record("e-3", 7, "u-1", day.start + timedelta(hours=1), now=day.start)
    await store.usage.record("e-3", 5, "u-2", day.start + timedelta(hours=2), now=day.start)

    async def make_order(period: PeriodWindow, _services: object) -> OrderConfiguration:
        return order_for(period, METERED.id)

    later = day.end + timedelta(minutes=5)
    await store.billing.bill_period("e-3", day.start, make_order, now=later)
    await store.billing.bill_period("e-3", day.start, make_order, now=later)  # retried: nothing new
    events = await settled_events(store, 5, enrollment_id="e-3")
    assert [(event.type, event.occurred_at) for event in events[2:]] == [
        ("enrollment.period_started", day.start),
        ("order.created", day.end),
        ("usage.billed", day.end),
    ]
    assert events[-1].data["units"] == 12 and events[-1].data["order_id"] == events[-2].data["id"]


async def test_a_rolled_back_change_leaves_no_event_and_no_gap(store: Store) -> None:
    await enroll(store, "e-4", status=EnrollmentStatus.ACTIVE)
    await store.billing.add_period("e-4", window(0), order_for(window(0)), now=T0)
    overlapping = PeriodWindow(start=window(0).start + timedelta(days=1), end=window(1).end)
    with pytest.raises(ValueError, match="overlaps"):
        await store.billing.add_period("e-4", overlapping, None, now=T0)
    await store.billing.add_period("e-4", window(1), order_for(window(1)), now=T0)
    assert [sequence for sequence, _, _ in await events_of(store, "e-4", 6)] == [1, 2, 3, 4, 5, 6]


async def test_concurrent_writers_of_one_enrollment_number_events_without_gaps(store: Store) -> None:
    await enroll(store, "e-5", status=EnrollmentStatus.ACTIVE)
    await asyncio.gather(
        *(store.billing.add_period("e-5", window(index), order_for(window(index)), now=T0) for index in range(8)),
        *(
            store.enrollments.change_status(
                "e-5",
                # Each moves the anchor, so none is a change the row already shows (those write nothing).
                StatusChange(
                    status=EnrollmentStatus.ACTIVE,
                    event_key=f"k-{index}",
                    at=T0,
                    info="again",
                    anchor=T0 + timedelta(minutes=index + 1),
                ),
            )
            for index in range(4)
        ),
    )
    expected = 2 + 8 * 2 + 4
    sequences = [sequence for sequence, _, _ in await events_of(store, "e-5", expected)]
    assert sequences == list(range(1, expected + 1))


async def test_pages_follow_a_stable_cursor_with_filters(store: Store) -> None:
    for enrollment_id in ("p-1", "p-2"):
        await enroll(store, enrollment_id, status=EnrollmentStatus.ACTIVE)
        for index in range(3):
            await store.billing.add_period(enrollment_id, window(index), order_for(window(index)), now=T0)
    total = 2 * (2 + 3 * 2)
    await settled_events(store, total)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.events.page(after=cursor, limit=5)
        seen += [event.id for event in page.events]
        if not page.events:
            assert page.next_cursor == cursor
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == total
    orders = await store.events.page(types=[EventType.ORDER_CREATED], enrollment_id="p-2")
    assert [event.type for event in orders.events] == ["order.created"] * 3
    assert {event.enrollment_id for event in orders.events} == {"p-2"}
    later = await store.events.page(after=cursor)
    assert later.events == [] and later.next_cursor == cursor
    with pytest.raises(ValueError, match="cursor"):
        await store.events.page(after="not-a-cursor")
    with pytest.raises(ValueError, match="not a valid EventType"):
        await store.events.page(types=["order.exploded"])


async def test_an_event_of_a_transaction_still_running_holds_back_later_commits(test_databases: Databases) -> None:
    """PostgreSQL assigns positions at insert, not at commit: a reader must not pass an event that is still to
    commit, or a cursor would skip it for good. (SQLite runs one writer at a time: there, insertion order is
    commit order.)"""
    await test_databases.clear("postgresql")
    async with open_store(await test_databases.url("postgresql")) as store:
        for enrollment_id in ("slow", "fast"):
            await enroll(store, enrollment_id, status=EnrollmentStatus.ACTIVE)
        assert len(await settled_events(store, 4)) == 4
        cursor = (await store.events.page(limit=1_000)).next_cursor
        started = PeriodStarted(start=T0, end=T0 + timedelta(days=1), is_trial=False)
        async with store.transactions.sessions() as slow, slow.begin():
            await lock_enrollment(slow, "slow")
            await record_events(slow, "slow", NewEvent(EventType.ENROLLMENT_PERIOD_STARTED, "slow-key", T0, started))
            await store.billing.add_period("fast", window(0), order_for(window(0)), now=T0)  # commits first
            await asyncio.sleep(0.3)
            assert (await store.events.page(after=cursor)).events == []
        events = await settled_events(store, 3, after=cursor)
        assert [event.enrollment_id for event in events] == ["slow", "fast", "fast"]
        async with store.transactions.sessions() as session:
            assert await session.scalar(select(func.count(EventRow.position))) == 2 * 2 + 3
