"""The fault suite's command check: every answer the driver got is in the database, once, and usage is billed once.

- Each answered pause, resume or terminate returned the enrollment with its log; the log's latest entry (time and
  status) must be stored. A status change that repeats the status before it would be a command applied twice.
- Each order's status must be the one last acknowledged for it.
- The metered enrollments' usage records must be exactly the acknowledged ones (same units; a refused record is
  not stored), and every billed period's order must carry exactly the units recorded in it. A period that ended
  by the cutoff must be billed.

Lost and duplicated findings count into the same :class:`~tests.chaos.harness.Report` as the periods and orders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text

from activities.persistence import CREATED_EVENT, create_engine
from tests.chaos.driver import Ledger
from tests.chaos.harness import Population, Report, utc


async def check_commands(
    database_url: str, population: Population, ledger: Ledger, cutoff: datetime, report: Report
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            log = list(
                await connection.execute(
                    text("SELECT enrollment_id, event_key, at, status FROM enrollment_log ORDER BY id")
                )
            )
            orders = {row.id: row.status for row in await connection.execute(text("SELECT id, status FROM orders"))}
            usage = list(
                await connection.execute(text("SELECT enrollment_id, idempotency_key, units, at FROM usage_records"))
            )
            periods = list(
                await connection.execute(
                    text('SELECT enrollment_id, start, "end", order_id, billed_at FROM enrollment_periods')
                )
            )
            quantities = {
                row.order_id: int(row.units)
                for row in await connection.execute(
                    text("SELECT order_id, SUM(quantity) AS units FROM order_positions GROUP BY order_id")
                )
            }
    finally:
        await engine.dispose()
    report.commands = ledger.commands
    _check_status_entries(report, ledger, log)
    for order_id, wanted in sorted(ledger.order_statuses.items()):
        if orders.get(order_id) != wanted.value:
            report.lost += 1
            report.problems.append(f"order {order_id}: {wanted.value} was acknowledged, stored {orders.get(order_id)}")
    _check_usage(report, population, ledger, usage, periods, quantities, cutoff)


def _check_status_entries(report: Report, ledger: Ledger, log: Sequence[Any]) -> None:
    stored = {(row.enrollment_id, utc(row.at), row.status) for row in log}
    for enrollment_id, at, status in ledger.status_entries:
        if (enrollment_id, at, status.value) not in stored:
            report.lost += 1
            report.problems.append(f"{enrollment_id}: acknowledged {status.value} at {at.isoformat()} is not logged")
    previous: dict[str, str] = {}
    for row in log:
        if row.event_key != CREATED_EVENT and previous.get(row.enrollment_id) == row.status:
            report.duplicated += 1
            report.problems.append(
                f"{row.enrollment_id}: {row.status} logged twice in a row ({utc(row.at).isoformat()})"
            )
        previous[row.enrollment_id] = row.status


def _check_usage(
    report: Report,
    population: Population,
    ledger: Ledger,
    usage: Sequence[Any],
    periods: Sequence[Any],
    quantities: dict[str, int],
    cutoff: datetime,
) -> None:
    stored = {(row.enrollment_id, row.idempotency_key): int(row.units) for row in usage}
    for key, units in sorted(ledger.usage.items()):
        if stored.get(key) != units:
            report.lost += 1
            report.problems.append(f"usage {key}: {units} units acknowledged, stored {stored.get(key)}")
    for key in sorted(set(stored) - set(ledger.usage)):
        report.duplicated += 1
        why = "was refused" if key in ledger.refused_usage else "was never acknowledged"
        report.problems.append(f"usage {key} is stored but {why}")
    recorded: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in usage:
        recorded[row.enrollment_id].append((utc(row.at), int(row.units)))
    for row in periods:
        if row.enrollment_id not in population.metered:
            continue
        start, end = utc(row.start), utc(row.end)
        used = sum(units for at, units in recorded[row.enrollment_id] if start <= at < end)
        if row.billed_at is None:
            if end <= cutoff:
                report.lost += 1
                report.problems.append(f"{row.enrollment_id}: period {start.isoformat()} ended but was never billed")
            continue
        billed = quantities.get(row.order_id, 0) if row.order_id else 0
        if billed < used:
            report.lost += 1
        elif billed > used:
            report.duplicated += 1
        if billed != used:
            report.problems.append(
                f"{row.enrollment_id}: period {start.isoformat()} used {used} units, its order bills {billed}"
            )
