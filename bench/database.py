"""The database measurement: ``add_period`` against plain INSERTs of the same rows on the same pool."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from activities.persistence import Store, create_engine, session_factory
from adapters.domain import OrderConfiguration, OrderPosition, PeriodWindow
from bench.floor import RAW_ORDER, RAW_PERIOD, RAW_POSITION
from bench.harness import add_enrollment_rows, add_product, ratio, timed
from bench.scenarios import MONTHLY, PRODUCT

# --- 6. database ----------------------------------------------------------------------------------


async def _each(write: Callable[[str], Awaitable[None]], ids: list[str]) -> None:
    await asyncio.gather(*(write(enrollment_id) for enrollment_id in ids))


async def database_throughput(database_url: str, periods: int, concurrency: int) -> dict[str, Any]:
    """Periods with their order persisted per second: ``Store.add_period`` vs plain INSERTs of the
    same rows (order, position, period; one transaction per period) through the same engine and pool.

    ``concurrency`` enrollments are written at once, each one's periods in sequence; two alternating rounds.
    """
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    await add_product(database_url, PRODUCT, MONTHLY)
    now = datetime.now(UTC)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    per_enrollment = max(periods // (2 * concurrency), 1)

    async def enrollments(count: int) -> list[str]:
        ids = [uuid.uuid4().hex for _ in range(count)]
        await add_enrollment_rows(engine, ids, product_id=PRODUCT, anchor=base)
        return ids

    def window(index: int) -> PeriodWindow:
        return PeriodWindow(start=base + timedelta(days=30 * index), end=base + timedelta(days=30 * (index + 1)))

    async def ours(enrollment_id: str) -> None:
        for index in range(per_enrollment):
            period = window(index)
            order = OrderConfiguration(
                period=period,
                order_position_templates=[OrderPosition(product_id=PRODUCT, original_product_id=PRODUCT, quantity=1)],
            )
            await store.billing.add_period(enrollment_id, period, order, now=now)

    async def raw(enrollment_id: str) -> None:
        for index in range(per_enrollment):
            period = window(index)
            order_id = uuid.uuid4().hex
            async with engine.begin() as connection:
                values = {"enrollment_id": enrollment_id, "start": period.start, "end": period.end, "now": now}
                await connection.execute(
                    RAW_ORDER, {**values, "id": order_id, "number": f"B-{order_id[:10]}", "context": "{}"}
                )
                await connection.execute(
                    RAW_POSITION, {"order_id": order_id, "product_id": PRODUCT, "configuration": "[]"}
                )
                await connection.execute(RAW_PERIOD, {**values, "order_id": order_id})

    seconds = {"ours": 0.0, "baseline": 0.0}
    try:
        for round_ in range(2):
            sides: list[tuple[str, Callable[[str], Awaitable[None]]]] = [("ours", ours), ("baseline", raw)]
            for name, write in sides if round_ == 0 else reversed(sides):
                ids = await enrollments(concurrency)
                seconds[name] += await timed(functools.partial(_each, write, ids))
    finally:
        await engine.dispose()
    written = 2 * concurrency * per_enrollment
    rates = {name: round(written / value, 1) for name, value in seconds.items()}
    return {
        "backend": "postgresql (asyncpg)",
        "periods_per_side": written,
        "concurrency": concurrency,
        "per_second": rates,
        "db_ratio": ratio(rates["ours"], rates["baseline"]),
    }
