"""The floors' local activities: a period's rows (order, position, period, its two events) or a new
enrollment's rows written by plain INSERTs in one transaction — what the engine writes, without its reads,
checks and ORM. ``python -m bench.floor`` runs the floor workflows in a worker process of their own
(``TEMPORAL_ADDRESS``, ``DATABASE_URL``, ``ENROLLMENTS_TASK_QUEUE``), as ``enrollments worker`` runs ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.persistence import create_engine
from bench.baseline import FLOOR_PERIOD_ACTIVITY, FLOOR_START_ACTIVITY, FLOOR_WORKFLOWS

RAW_ORDER = text(
    "INSERT INTO orders (id, number, enrollment_id, period_start, period_end, status, context, created, updated) "
    "VALUES (:id, :number, :enrollment_id, :start, :end, 'PENDING', CAST(:context AS JSON), :now, :now)"
)
RAW_POSITION = text(
    "INSERT INTO order_positions (order_id, position, product_id, original_product_id, quantity, configuration) "
    "VALUES (:order_id, 0, :product_id, :product_id, 1, CAST(:configuration AS JSON))"
)
RAW_PERIOD = text(
    'INSERT INTO enrollment_periods (enrollment_id, start, "end", is_trial, order_id) '
    "VALUES (:enrollment_id, :start, :end, false, :order_id)"
)
_RAW_EVENT = text(
    "INSERT INTO events (id, tx_order, enrollment_id, sequence, type, occurred_at, recorded_at, data) "
    "VALUES (:id, pg_current_xact_id()::text::bigint, :enrollment_id, :sequence, :type, :start, :now, "
    "CAST(:data AS JSON))"
)
_RAW_ENROLLMENT = text(
    "INSERT INTO enrollments (id, number, user_id, product_id, quantity, configuration, status, timezone, meta, "
    "activate_on_payment, adapter_key, anchor, next_wake_up, created, updated) VALUES (:enrollment_id, :number, "
    "'floor', :product_id, 1, CAST('[]' AS JSON), 'ACTIVE', 'UTC', CAST('{}' AS JSON), false, 'licensed', :start, "
    ":end, :now, :now)"
)


async def write_period(
    connection: AsyncConnection, enrollment_id: str, start: datetime, end: datetime, sequence: int, product_id: str
) -> None:
    """A period with its order, position and the two events (order created, period started)."""
    order_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    values = {"enrollment_id": enrollment_id, "start": start, "end": end, "now": now}
    await connection.execute(RAW_ORDER, {**values, "id": order_id, "number": f"F-{order_id[:12]}", "context": "{}"})
    await connection.execute(RAW_POSITION, {"order_id": order_id, "product_id": product_id, "configuration": "[]"})
    await connection.execute(RAW_PERIOD, {**values, "order_id": order_id})
    window = {"start": start.isoformat(), "end": end.isoformat()}
    events = [("order.created", {"id": order_id, "period": window}), ("enrollment.period_started", window)]
    await connection.execute(
        _RAW_EVENT,
        [
            {**values, "id": uuid.uuid4().hex, "sequence": sequence + index, "type": kind, "data": json.dumps(data)}
            for index, (kind, data) in enumerate(events, start=1)
        ],
    )


class FloorActivities:
    """The floors' local activities on one engine (the pool the engine's own activities would use)."""

    def __init__(self, engine: AsyncEngine, product_id: str) -> None:
        self.engine = engine
        self.product_id = product_id

    def all(self) -> list[Callable[..., Any]]:
        return [self.period, self.start]

    @activity.defn(name=FLOOR_PERIOD_ACTIVITY)
    async def period(self, enrollment_id: str, start: str, end: str, sequence: int) -> None:
        async with self.engine.begin() as connection:
            await write_period(
                connection,
                enrollment_id,
                datetime.fromisoformat(start),
                datetime.fromisoformat(end),
                sequence,
                self.product_id,
            )

    @activity.defn(name=FLOOR_START_ACTIVITY)
    async def start(self, enrollment_id: str, product_id: str, start: str) -> None:
        """The enrollment (ACTIVE, with its created event) and its first period with order and events."""
        began = datetime.fromisoformat(start)
        end = began.replace(year=began.year + 1)
        async with self.engine.begin() as connection:
            values = {"enrollment_id": enrollment_id, "product_id": product_id, "start": began, "end": end}
            await connection.execute(
                _RAW_ENROLLMENT, {**values, "number": f"FE-{uuid.uuid4().hex[:20]}", "now": datetime.now(UTC)}
            )
            await connection.execute(
                _RAW_EVENT,
                {
                    **values,
                    "id": uuid.uuid4().hex,
                    "sequence": 1,
                    "type": "enrollment.created",
                    "now": datetime.now(UTC),
                    "data": json.dumps({"product_id": product_id, "status": "ACTIVE"}),
                },
            )
            await write_period(connection, enrollment_id, began, end, 1, product_id)


async def insert_floor_enrollments(engine: AsyncEngine, ids: Sequence[str], product_id: str) -> None:
    """Enrollment rows for floor workflows to write periods for (one transaction; not timed)."""
    now = datetime.now(UTC)
    rows = [
        {
            "enrollment_id": enrollment_id,
            "number": f"FE-{uuid.uuid4().hex[:20]}",
            "product_id": product_id,
            "start": now,
            "end": now,
            "now": now,
        }
        for enrollment_id in ids
    ]
    async with engine.begin() as connection:
        await connection.execute(_RAW_ENROLLMENT, rows)


def floor_worker(client: Client, engine: AsyncEngine, task_queue: str, product_id: str) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(FLOOR_WORKFLOWS),
        activities=FloorActivities(engine, product_id).all(),
    )


async def _main() -> None:
    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"], data_converter=pydantic_data_converter)
    engine = create_engine(os.environ["DATABASE_URL"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        worker = floor_worker(client, engine, os.environ["ENROLLMENTS_TASK_QUEUE"], os.environ["BENCH_PRODUCT"])
        async with worker:
            await stop.wait()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main())
