"""The fault suite's event check: exactly one event per change in the outbox, and every event at the receiver.

Event ids come from the business keys of the changes, so the check derives the ids the outbox must hold from
the changes themselves (enrollments and their log, periods, orders, billed periods) in the same snapshot and
compares: a missing id is a lost event, an id no change explains a duplicated one. Each enrollment's sequence
must run 1..n. Then the suite's receiver must have acknowledged every id (a repeat under the same id is allowed:
delivery is at least once).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from activities.persistence import CREATED_EVENT, create_engine
from adapters.events import Event, EventType, event_id_for, time_key
from starter.devtools.receiver import WebhookReceiver
from tests.chaos.harness import Report

COMPARED_TYPES = {
    EventType.ENROLLMENT_CREATED,
    EventType.ENROLLMENT_ACTIVATED,
    EventType.ENROLLMENT_STATUS_CHANGED,
    EventType.ENROLLMENT_PERIOD_STARTED,
    EventType.ORDER_CREATED,
    EventType.USAGE_BILLED,
}
"""The types whose changes the tables show (an order's status history is not kept, only its status)."""


def _utc(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def check_outbox(database_url: str, report: Report) -> set[str]:
    """The outbox against the changes, in one snapshot, counted into ``report``; returns every event id it holds."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            log = list(await connection.execute(text("SELECT enrollment_id, event_key, status FROM enrollment_log")))
            periods = list(
                await connection.execute(text("SELECT enrollment_id, start, billed_at FROM enrollment_periods"))
            )
            orders = list(await connection.execute(text("SELECT id, enrollment_id FROM orders")))
            events = list(await connection.execute(text("SELECT id, enrollment_id, sequence, type FROM events")))
    finally:
        await engine.dispose()
    expected: set[str] = set()
    activated: set[str] = set()
    for enrollment_id, event_key, status in log:
        if event_key == CREATED_EVENT:
            expected.add(event_id_for(enrollment_id, EventType.ENROLLMENT_CREATED, CREATED_EVENT))
        else:
            expected.add(event_id_for(enrollment_id, EventType.ENROLLMENT_STATUS_CHANGED, event_key))
        if status == "ACTIVE":
            activated.add(enrollment_id)
    expected |= {
        event_id_for(enrollment_id, EventType.ENROLLMENT_ACTIVATED, "activated") for enrollment_id in activated
    }
    for enrollment_id, start, billed_at in periods:
        expected.add(event_id_for(enrollment_id, EventType.ENROLLMENT_PERIOD_STARTED, time_key(_utc(start))))
        if billed_at is not None:
            expected.add(event_id_for(enrollment_id, EventType.USAGE_BILLED, time_key(_utc(start))))
    expected |= {event_id_for(enrollment_id, EventType.ORDER_CREATED, order_id) for order_id, enrollment_id in orders}

    report.events = len(events)
    stored = {event_id for event_id, _, _, event_type in events if event_type in COMPARED_TYPES}
    report.events_lost += len(expected - stored)
    report.events_duplicated += len(stored - expected)
    report.problems += [f"event {event_id} is missing" for event_id in sorted(expected - stored)[:10]]
    report.problems += [f"event {event_id} reports no change" for event_id in sorted(stored - expected)[:10]]
    sequences: dict[str, list[int]] = defaultdict(list)
    for _, enrollment_id, sequence, _ in events:
        sequences[enrollment_id].append(sequence)
    for enrollment_id, numbers in sorted(sequences.items()):
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            report.events_lost += 1
            report.problems.append(f"{enrollment_id}: event sequence is not 1..{len(numbers)}")
    return {event_id for event_id, *_ in events}


async def check_events(database_url: str, receiver: WebhookReceiver, wait_seconds: float, report: Report) -> int:
    """:func:`check_outbox`, then wait until the receiver has acknowledged every event (or the wait ran out).
    Returns how many deliveries were repeats (the same id again: allowed, delivery is at least once)."""
    ids = await check_outbox(database_url, report)
    deadline = time.monotonic() + wait_seconds
    while True:
        acknowledged: dict[str, int] = defaultdict(int)
        for request in receiver.received:
            if 200 <= request.status < 300:
                acknowledged[Event.model_validate_json(request.body).id] += 1
        missing = ids - set(acknowledged)
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    report.events_lost += len(missing)
    report.problems += [f"event {event_id} never reached the receiver" for event_id in sorted(missing)[:10]]
    return sum(count - 1 for count in acknowledged.values())
