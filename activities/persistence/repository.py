"""The enrollment store: one transaction per method, pydantic domain models in and out.

Every write the workflow repeats on a retry is idempotent by a natural key: an enrollment by its id, a
period and its order by ``(enrollment_id, period start)``, a log entry by ``(enrollment_id, event_key)``,
a usage record by ``(enrollment_id, idempotency_key)``. Unique constraints back each key, so two racing
calls still leave one row: the loser's transaction fails on the constraint, is rolled back and runs once
more, and then finds the winner's row. Writes to one enrollment also lock its row (PostgreSQL
``FOR NO KEY UPDATE``; SQLite serialises writers with ``BEGIN IMMEDIATE``), so checks such as "no
overlapping period" see every committed period.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from activities.persistence.database import READ_ONLY_OPTION
from activities.persistence.errors import (
    EnrollmentConflict,
    EnrollmentNotFound,
    OrderNotFound,
    ProductNotFound,
    UsageConflict,
    UsageRefused,
)
from activities.persistence.models import (
    ID_LENGTH,
    KEY_LENGTH,
    EnrollmentLogRow,
    EnrollmentRow,
    OrderPositionRow,
    OrderRow,
    PeriodRow,
    ProductRow,
    UsageRecordRow,
)
from activities.persistence.numbers import ENROLLMENT_PREFIX, ORDER_PREFIX, candidate_numbers
from adapters.domain import (
    Enrollment,
    EnrollmentLogEntry,
    EnrollmentStatus,
    EnrollmentTerms,
    Order,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PauseReason,
    Period,
    PeriodWindow,
    Product,
    ProductPlan,
    ProductType,
    UsageCalculationType,
    isoformat_utc,
)

T = TypeVar("T")

CREATED_EVENT = "created"
"""Event key of the log entry that ``create_enrollment`` writes."""

_ORDER_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:durable-enrollments:order")


def order_id_for(enrollment_id: str, period_start: datetime) -> str:
    """The id of the order that bills the period of ``enrollment_id`` starting at ``period_start``.

    Derived from the period's key, so every attempt to create that order names the same order.
    """
    start = _aware("period_start", period_start).astimezone(UTC)
    return str(uuid.uuid5(_ORDER_ID_NAMESPACE, f"{enrollment_id}@{start.isoformat()}"))


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


def _check_key(name: str, value: str, max_length: int) -> None:
    if not value or len(value) > max_length:
        raise ValueError(f"{name} must be 1 to {max_length} characters, got {value!r}")


def _describe(start: datetime, end: datetime) -> str:
    return f"[{start.astimezone(UTC).isoformat()}, {end.astimezone(UTC).isoformat()})"


async def _retry_on_race(operation: Callable[[], Awaitable[T]]) -> T:
    """Run ``operation``; when a concurrent writer won a unique-key race, run it once more to find its row."""
    try:
        return await operation()
    except IntegrityError:
        return await operation()


# Row ⇄ domain conversions. Terms are stored as their JSON form, so a read-back equals what was written.


def _product(row: ProductRow) -> Product:
    return Product(
        id=row.id,
        type=ProductType(row.type),
        plan=None if row.plan is None else ProductPlan.model_validate(row.plan),
        title=row.title,
        price_amount=row.price_amount,
        price_currency=row.price_currency,
    )


def _terms_json(terms: EnrollmentTerms) -> dict[str, Any]:
    return terms.model_dump(mode="json")


def _stored_terms_json(row: EnrollmentRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in EnrollmentTerms.model_fields}


def _order(row: OrderRow) -> Order:
    return Order(
        id=row.id,
        number=row.number,
        enrollment_id=row.enrollment_id,
        period_start=row.period_start,
        period_end=row.period_end,
        status=OrderStatus(row.status),
        positions=[
            OrderPosition(
                product_id=position.product_id,
                original_product_id=position.original_product_id,
                quantity=position.quantity,
                configuration=position.configuration,
            )
            for position in row.positions
        ],
        context=row.context,
        created=row.created,
    )


def _period(row: PeriodRow, order_status: str | None) -> Period:
    return Period(
        start=row.start,
        end=row.end,
        is_trial=row.is_trial,
        order_id=row.order_id,
        order_status=None if order_status is None else OrderStatus(order_status),
        billed_at=row.billed_at,
    )


def _enrollment(row: EnrollmentRow, periods: list[Period], log: list[EnrollmentLogEntry]) -> Enrollment:
    return Enrollment.model_validate(
        {
            **_stored_terms_json(row),
            "id": row.id,
            "number": row.number,
            "status": row.status,
            "pause_reason": row.pause_reason,
            "anchor": row.anchor,
            "expires": row.expires,
            "adapter_key": row.adapter_key,
            "created": row.created,
            "updated": row.updated,
            "periods": periods,
            "log": log,
        }
    )


class EnrollmentRepository:
    """Reads and writes enrollments, periods, orders, usage and logs; each method is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            # A read needs no write lock: on SQLite it begins a deferred transaction instead of an immediate one.
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            yield session

    # Products

    async def upsert_product(self, product: Product, *, now: datetime) -> Product:
        """Insert ``product`` or replace the stored one with the same id (``created`` is kept)."""
        _aware("now", now)

        async def upsert() -> Product:
            async with self._write() as session:
                row = await session.get(ProductRow, product.id)
                if row is None:
                    row = ProductRow(id=product.id, created=now)
                    session.add(row)
                row.type = product.type.value
                row.plan = None if product.plan is None else product.plan.model_dump(mode="json")
                row.title = product.title
                row.price_amount = product.price_amount
                row.price_currency = product.price_currency
                row.updated = now
                return _product(row)

        return await _retry_on_race(upsert)

    async def get_product(self, product_id: str) -> Product | None:
        async with self._read() as session:
            row = await session.get(ProductRow, product_id)
            return None if row is None else _product(row)

    async def list_products(self) -> list[Product]:
        """All products, ordered by id."""
        async with self._read() as session:
            rows = await session.scalars(select(ProductRow).order_by(ProductRow.id))
            return [_product(row) for row in rows]

    async def delete_product(self, product_id: str) -> None:
        """Delete a product no enrollment refers to; raises ``ValueError`` naming it when one does."""

        async def delete() -> None:
            async with self._write() as session:
                row = await session.get(ProductRow, product_id)
                if row is None:
                    raise ProductNotFound(product_id)
                referrer = await session.scalar(
                    select(EnrollmentRow.id).where(EnrollmentRow.product_id == product_id).limit(1)
                )
                if referrer is not None:
                    raise ValueError(f"product {product_id!r} cannot be deleted: enrollment {referrer!r} refers to it")
                await session.delete(row)

        await _retry_on_race(delete)

    # Enrollments

    async def create_enrollment(
        self,
        enrollment_id: str,
        terms: EnrollmentTerms,
        *,
        anchor: datetime,
        adapter_key: str,
        now: datetime,
        status: EnrollmentStatus = EnrollmentStatus.INITIAL,
    ) -> Enrollment:
        """Create the enrollment, or return the existing one when ``enrollment_id`` was created with ``terms``.

        Raises :class:`EnrollmentConflict` when the id exists with other terms, :class:`ProductNotFound` for
        an unknown product and ``ValueError`` for a product that is not a plan product. A new enrollment gets
        its number and a ``created`` log entry; the existing one is returned as it is (same number, status).
        """
        _check_key("enrollment_id", enrollment_id, ID_LENGTH)
        _check_key("adapter_key", adapter_key, KEY_LENGTH)
        _aware("anchor", anchor)
        _aware("now", now)
        if status not in (EnrollmentStatus.INITIAL, EnrollmentStatus.ACTIVE):
            raise ValueError(f"an enrollment starts INITIAL or ACTIVE, not {status.value}")
        wanted = _terms_json(terms)

        async def create() -> Enrollment:
            async with self._write() as session:
                row = await session.get(EnrollmentRow, enrollment_id)
                if row is not None:
                    stored = _stored_terms_json(row)
                    differing = [name for name in wanted if stored[name] != wanted[name]]
                    if differing:
                        raise EnrollmentConflict(enrollment_id, differing)
                    return await self._snapshot(session, row)

                product_row = await session.get(ProductRow, terms.product_id)
                if product_row is None:
                    raise ProductNotFound(terms.product_id)
                _product(product_row).require_plan()

                number = await _free_number(session, EnrollmentRow.number, ENROLLMENT_PREFIX, enrollment_id)
                row = EnrollmentRow(
                    id=enrollment_id,
                    number=number,
                    status=status.value,
                    pause_reason=None,
                    adapter_key=adapter_key,
                    anchor=anchor,
                    expires=None,
                    created=now,
                    updated=now,
                    **wanted,
                )
                session.add(row)
                await session.flush()
                session.add(
                    EnrollmentLogRow(
                        enrollment_id=enrollment_id,
                        event_key=CREATED_EVENT,
                        at=now,
                        status=status.value,
                        info=(
                            f"created {number}: {terms.quantity} × {terms.product_id} for user {terms.user_id} "
                            f"(adapter {adapter_key})"
                        ),
                    )
                )
                await session.flush()
                return await self._snapshot(session, row)

        return await _retry_on_race(create)

    async def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        """The full snapshot: terms, lifecycle, periods by start (with their orders' status) and the log."""
        async with self._read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            return None if row is None else await self._snapshot(session, row)

    async def get_enrollment_by_number(self, number: str) -> Enrollment | None:
        """The full snapshot of the enrollment with ``number`` (as stored, e.g. ``E-7KQ2M9XA``)."""
        async with self._read() as session:
            row = await session.scalar(select(EnrollmentRow).where(EnrollmentRow.number == number))
            return None if row is None else await self._snapshot(session, row)

    async def enrollment_exists(self, enrollment_id: str) -> bool:
        async with self._read() as session:
            found = await session.scalar(select(EnrollmentRow.id).where(EnrollmentRow.id == enrollment_id))
            return found is not None

    async def page_enrollments(
        self, statuses: Sequence[EnrollmentStatus], *, after_id: str | None, limit: int
    ) -> list[Enrollment]:
        """Up to ``limit`` enrollments in ``statuses`` with id > ``after_id``, by id (keyset paging).

        Pass the last id of a page as ``after_id`` for the next one. Snapshots carry periods but no log.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if not statuses:
            return []
        query = (
            select(EnrollmentRow)
            .where(EnrollmentRow.status.in_([status.value for status in statuses]))
            .order_by(EnrollmentRow.id)
            .limit(limit)
        )
        if after_id is not None:
            query = query.where(EnrollmentRow.id > after_id)
        async with self._read() as session:
            rows = list(await session.scalars(query))
            return await self._snapshots(session, rows, with_log=False)

    async def list_enrollments(
        self,
        *,
        status: EnrollmentStatus | None = None,
        product_id: str | None = None,
        user_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[Enrollment]:
        """Enrollments matching every given filter, oldest first. Snapshots carry periods but no log."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        query = select(EnrollmentRow).order_by(EnrollmentRow.created, EnrollmentRow.id).offset(offset).limit(limit)
        if status is not None:
            query = query.where(EnrollmentRow.status == status.value)
        if product_id is not None:
            query = query.where(EnrollmentRow.product_id == product_id)
        if user_id is not None:
            query = query.where(EnrollmentRow.user_id == user_id)
        async with self._read() as session:
            rows = list(await session.scalars(query))
            return await self._snapshots(session, rows, with_log=False)

    async def change_status(
        self,
        enrollment_id: str,
        status: EnrollmentStatus,
        *,
        event_key: str,
        at: datetime,
        info: str,
        pause_reason: PauseReason | None = None,
        expires: datetime | None = None,
        anchor: datetime | None = None,
    ) -> Enrollment:
        """Set the status (and pause reason, expiry, anchor) and log it under ``event_key``.

        A second call with the same ``event_key`` changes nothing and returns the current snapshot. The
        pause reason is required for PAUSED and cleared for every other status; ``expires`` and ``anchor``
        change only when given. TERMINATED is final: moving away from it raises ``ValueError``.
        """
        _check_key("event_key", event_key, KEY_LENGTH)
        _aware("at", at)
        if expires is not None:
            _aware("expires", expires)
        if anchor is not None:
            _aware("anchor", anchor)
        if status is EnrollmentStatus.PAUSED and pause_reason is None:
            raise ValueError(f"pausing enrollment {enrollment_id!r} needs a pause_reason (manual or overdue)")

        async def change() -> Enrollment:
            async with self._write() as session:
                row = await _lock_enrollment(session, enrollment_id)
                if await _has_event(session, enrollment_id, event_key):
                    return await self._snapshot(session, row)
                if row.status == EnrollmentStatus.TERMINATED.value and status is not EnrollmentStatus.TERMINATED:
                    raise ValueError(
                        f"enrollment {enrollment_id!r} is TERMINATED, which is final: it cannot become {status.value}"
                    )
                row.status = status.value
                row.pause_reason = pause_reason.value if status is EnrollmentStatus.PAUSED and pause_reason else None
                if expires is not None:
                    row.expires = expires
                if anchor is not None:
                    row.anchor = anchor
                row.updated = at
                session.add(
                    EnrollmentLogRow(
                        enrollment_id=enrollment_id, event_key=event_key, at=at, status=status.value, info=info
                    )
                )
                await session.flush()
                return await self._snapshot(session, row)

        return await _retry_on_race(change)

    async def append_log(self, enrollment_id: str, *, event_key: str, at: datetime, info: str) -> None:
        """Log ``info`` with the current status; a second call with the same ``event_key`` is a no-op."""
        _check_key("event_key", event_key, KEY_LENGTH)
        _aware("at", at)

        async def append() -> None:
            async with self._write() as session:
                row = await _lock_enrollment(session, enrollment_id)
                if await _has_event(session, enrollment_id, event_key):
                    return
                session.add(
                    EnrollmentLogRow(
                        enrollment_id=enrollment_id, event_key=event_key, at=at, status=row.status, info=info
                    )
                )

        await _retry_on_race(append)

    # Periods and orders

    async def add_period(
        self,
        enrollment_id: str,
        period: PeriodWindow,
        order: OrderConfiguration | None,
        *,
        now: datetime,
        order_status: OrderStatus = OrderStatus.PENDING,
    ) -> tuple[Period, Order | None]:
        """Store ``period`` and, if given, the order that bills it (with ``order_status``), in one transaction.

        Keyed by ``(enrollment_id, period.start)``: when that period exists it is returned with its order
        (possibly None) and nothing is created. Raises ``ValueError`` when ``period`` overlaps another period
        of the enrollment (a different end for the same start counts), when the order is for another window,
        or when the enrollment is TERMINATED; :class:`EnrollmentNotFound` for an unknown enrollment.
        """
        _aware("now", now)
        if order is not None:
            _check_order_window(enrollment_id, period, order)

        async def add() -> tuple[Period, Order | None]:
            async with self._write() as session:
                enrollment = await _lock_enrollment(session, enrollment_id)
                existing = await _period_row(session, enrollment_id, period.start)
                if existing is not None:
                    if existing.end != period.end or existing.is_trial != period.is_trial:
                        raise ValueError(
                            f"period {_window(period)} of enrollment {enrollment_id!r} conflicts with the stored "
                            f"period {_describe(existing.start, existing.end)} (trial={existing.is_trial})"
                        )
                    order_row = None if existing.order_id is None else await session.get(OrderRow, existing.order_id)
                    return _period_with(existing, order_row), None if order_row is None else _order(order_row)

                if enrollment.status == EnrollmentStatus.TERMINATED.value:
                    raise ValueError(f"enrollment {enrollment_id!r} is TERMINATED: it gets no new periods")
                overlapping = await session.scalar(
                    select(PeriodRow)
                    .where(
                        PeriodRow.enrollment_id == enrollment_id,
                        PeriodRow.start < period.end,
                        PeriodRow.end > period.start,
                    )
                    .order_by(PeriodRow.start)
                    .limit(1)
                )
                if overlapping is not None:
                    raise ValueError(
                        f"period {_window(period)} overlaps period {_describe(overlapping.start, overlapping.end)} "
                        f"of enrollment {enrollment_id!r}"
                    )

                order_row = (
                    None
                    if order is None
                    else await _insert_order(session, enrollment_id, period, order, now, status=order_status)
                )
                period_row = PeriodRow(
                    enrollment_id=enrollment_id,
                    start=period.start,
                    end=period.end,
                    is_trial=period.is_trial,
                    order_id=None if order_row is None else order_row.id,
                )
                session.add(period_row)
                enrollment.updated = now
                await session.flush()
                return _period_with(period_row, order_row), None if order_row is None else _order(order_row)

        return await _retry_on_race(add)

    async def attach_order(
        self, enrollment_id: str, period_start: datetime, order: OrderConfiguration, *, now: datetime
    ) -> Order:
        """Create the order of an existing period that has none (billing in arrears); idempotent.

        Returns the period's order when it already has one. Raises ``ValueError`` when the enrollment has no
        period starting at ``period_start`` or ``order`` is for another window.
        """
        _aware("period_start", period_start)
        _aware("now", now)

        async def attach() -> Order:
            async with self._write() as session:
                enrollment = await _lock_enrollment(session, enrollment_id)
                period_row = await _period_row(session, enrollment_id, period_start)
                if period_row is None:
                    raise ValueError(
                        f"enrollment {enrollment_id!r} has no period starting at {period_start.astimezone(UTC)}"
                    )
                window = PeriodWindow(start=period_row.start, end=period_row.end, is_trial=period_row.is_trial)
                _check_order_window(enrollment_id, window, order)
                if period_row.order_id is not None:
                    existing = await session.get(OrderRow, period_row.order_id)
                    if existing is None:  # pragma: no cover - the foreign key rules it out
                        raise OrderNotFound(period_row.order_id)
                    return _order(existing)
                order_row = await _insert_order(session, enrollment_id, window, order, now)
                period_row.order_id = order_row.id
                enrollment.updated = now
                await session.flush()
                return _order(order_row)

        return await _retry_on_race(attach)

    async def bill_period(
        self,
        enrollment_id: str,
        period_start: datetime,
        make_order: Callable[[PeriodWindow], Awaitable[OrderConfiguration | None]],
        *,
        now: datetime,
    ) -> tuple[Period, Order | None]:
        """Close the period starting at ``period_start`` for billing in arrears, with the order ``make_order`` makes.

        ``make_order`` gets the period's window and returns its order (None: nothing to bill, e.g. no usage).
        The order, if any, and ``billed_at = now`` are stored in one transaction. While ``make_order`` runs,
        the enrollment's row stays locked, so no usage of the enrollment can be recorded in between
        (:meth:`record_metered_usage` takes the same lock): every unit is either in the total ``make_order``
        read or refused as late afterwards. Idempotent: a period that is billed already (or has an order)
        is returned as it is and ``make_order`` is not called. Works on TERMINATED enrollments (their last
        period is billed after they end). Raises ``ValueError`` when there is no such period or the order is
        for another window, :class:`EnrollmentNotFound` for an unknown enrollment.
        """
        _aware("period_start", period_start)
        _aware("now", now)

        async def bill() -> tuple[Period, Order | None]:
            async with self._write() as session:
                enrollment = await _lock_enrollment(session, enrollment_id)
                period_row = await _period_row(session, enrollment_id, period_start)
                if period_row is None:
                    raise ValueError(
                        f"enrollment {enrollment_id!r} has no period starting at {isoformat_utc(period_start)}"
                    )
                if period_row.billed_at is not None or period_row.order_id is not None:
                    order_row = (
                        None if period_row.order_id is None else await session.get(OrderRow, period_row.order_id)
                    )
                    return _period_with(period_row, order_row), None if order_row is None else _order(order_row)
                window = PeriodWindow(start=period_row.start, end=period_row.end, is_trial=period_row.is_trial)
                order = await make_order(window)
                order_row = None
                if order is not None:
                    _check_order_window(enrollment_id, window, order)
                    order_row = await _insert_order(session, enrollment_id, window, order, now)
                    period_row.order_id = order_row.id
                period_row.billed_at = now
                enrollment.updated = now
                await session.flush()
                return _period_with(period_row, order_row), None if order_row is None else _order(order_row)

        return await _retry_on_race(bill)

    async def set_order_status(self, order_id: str, status: OrderStatus, *, now: datetime) -> Order:
        """Record the order's new status (e.g. paid); :class:`OrderNotFound` when it does not exist."""
        _aware("now", now)
        async with self._write() as session:
            row = await session.get(OrderRow, order_id)
            if row is None:
                raise OrderNotFound(order_id)
            if row.status != status.value:
                row.status = status.value
                row.updated = now
            return _order(row)

    async def get_order(self, order_id: str) -> Order | None:
        async with self._read() as session:
            row = await session.get(OrderRow, order_id)
            return None if row is None else _order(row)

    async def list_orders(self, enrollment_id: str) -> list[Order]:
        """The enrollment's orders in creation order (by period start)."""
        async with self._read() as session:
            rows = await session.scalars(
                select(OrderRow).where(OrderRow.enrollment_id == enrollment_id).order_by(OrderRow.period_start)
            )
            return [_order(row) for row in rows]

    # Usage

    async def record_metered_usage(
        self, enrollment_id: str, units: int, idempotency_key: str, at: datetime, *, now: datetime
    ) -> bool:
        """Record usage of a metered enrollment under the billing rules; True when new, False for a repeat.

        This is how usage enters the system (client library, CLI, simulator): the metering source appends
        the record to the database directly, never through the enrollment's workflow, so a busy meter costs
        the workflow nothing. The rules, checked under the enrollment's lock (see :meth:`bill_period`):

        - the same key with the same units is one record (False); with other units :class:`UsageConflict`;
          a repeat is answered before any other rule, so retrying an accepted record always succeeds;
        - :class:`UsageRefused` when the enrollment's plan is not METERED, when ``at`` is at or after the
          enrollment's ``expires``, when the period containing ``at`` is billed already (late usage), when
          ``at`` is before the enrollment's first period (or start), when it falls in a gap no period covers
          (a manual pause), or when it lies after the latest period of a manually PAUSED enrollment;
        - :class:`EnrollmentNotFound` for an unknown enrollment, ``ValueError`` for units < 0, a bad key or
          a naive ``at``.

        Usage at a time after the latest period of an enrollment that keeps getting periods (ACTIVE, PAUSED
        because overdue, INITIAL before its start) is accepted: the period that covers it is not made yet.
        """
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise ValueError(f"usage units must be an integer >= 0, got {units!r}")
        _check_key("idempotency_key", idempotency_key, KEY_LENGTH)
        _aware("at", at)
        _aware("now", now)

        async def record() -> bool:
            async with self._write() as session:
                enrollment = await _lock_enrollment(session, enrollment_id)
                recorded = await session.scalar(
                    select(UsageRecordRow.units).where(
                        UsageRecordRow.enrollment_id == enrollment_id,
                        UsageRecordRow.idempotency_key == idempotency_key,
                    )
                )
                if recorded is not None:
                    if recorded != units:
                        raise UsageConflict(enrollment_id, idempotency_key, recorded, units)
                    return False
                reason = await _usage_refusal(session, enrollment, at)
                if reason is not None:
                    raise UsageRefused(enrollment_id, idempotency_key, reason)
                session.add(
                    UsageRecordRow(
                        enrollment_id=enrollment_id, idempotency_key=idempotency_key, units=units, at=at, created=now
                    )
                )
                await session.flush()
                return True

        return await _retry_on_race(record)

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        """Units used with ``start <= at < end``."""
        _aware("start", start)
        _aware("end", end)
        async with self._read() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(UsageRecordRow.units), 0)).where(
                    UsageRecordRow.enrollment_id == enrollment_id,
                    UsageRecordRow.at >= start,
                    UsageRecordRow.at < end,
                )
            )
            return int(total or 0)

    # Snapshots

    async def _snapshot(self, session: AsyncSession, row: EnrollmentRow) -> Enrollment:
        (snapshot,) = await self._snapshots(session, [row], with_log=True)
        return snapshot

    async def _snapshots(self, session: AsyncSession, rows: list[EnrollmentRow], *, with_log: bool) -> list[Enrollment]:
        """Snapshots of ``rows`` with two more queries in all (periods, log), not two per enrollment."""
        if not rows:
            return []
        ids = [row.id for row in rows]
        periods: dict[str, list[Period]] = defaultdict(list)
        period_rows = await session.execute(
            select(PeriodRow, OrderRow.status)
            .outerjoin(OrderRow, OrderRow.id == PeriodRow.order_id)
            .where(PeriodRow.enrollment_id.in_(ids))
            .order_by(PeriodRow.enrollment_id, PeriodRow.start)
        )
        for period_row, order_status in period_rows:
            periods[period_row.enrollment_id].append(_period(period_row, order_status))
        logs: dict[str, list[EnrollmentLogEntry]] = defaultdict(list)
        if with_log:
            log_rows = await session.scalars(
                select(EnrollmentLogRow).where(EnrollmentLogRow.enrollment_id.in_(ids)).order_by(EnrollmentLogRow.id)
            )
            for log_row in log_rows:
                logs[log_row.enrollment_id].append(
                    EnrollmentLogEntry(at=log_row.at, status=EnrollmentStatus(log_row.status), info=log_row.info)
                )
        return [_enrollment(row, periods[row.id], logs[row.id]) for row in rows]


# Helpers that run inside a repository transaction.


async def _lock_enrollment(session: AsyncSession, enrollment_id: str) -> EnrollmentRow:
    # NO KEY UPDATE: serialises writers of this enrollment without blocking inserts that only reference it.
    row = await session.scalar(
        select(EnrollmentRow).where(EnrollmentRow.id == enrollment_id).with_for_update(key_share=True)
    )
    if row is None:
        raise EnrollmentNotFound(enrollment_id)
    return row


async def _usage_refusal(session: AsyncSession, enrollment: EnrollmentRow, at: datetime) -> str | None:
    """Why usage at ``at`` can never be billed for ``enrollment`` (see ``record_metered_usage``), or None."""
    product = await session.get(ProductRow, enrollment.product_id)
    plan = None if product is None else _product(product).plan
    if plan is None or plan.usage_calculation_type is not UsageCalculationType.METERED:
        kind = "no plan" if plan is None else f"a {plan.usage_calculation_type.value} plan"
        return f"its product {enrollment.product_id!r} has {kind}; usage is recorded for METERED plans only"
    when = isoformat_utc(at)
    if enrollment.expires is not None and at >= enrollment.expires:
        return f"{when} is not before the enrollment's expiry {isoformat_utc(enrollment.expires)}"
    periods = PeriodRow.enrollment_id == enrollment.id
    containing = await session.scalar(select(PeriodRow).where(periods, PeriodRow.start <= at, PeriodRow.end > at))
    if containing is not None:
        if containing.billed_at is None:
            return None
        return (
            f"late: the period {_describe(containing.start, containing.end)} containing {when} was billed at "
            f"{isoformat_utc(containing.billed_at)}; record it with a time in an open period"
        )
    first = await session.scalar(select(PeriodRow).where(periods).order_by(PeriodRow.start).limit(1))
    if first is None:
        return (
            None
            if at >= enrollment.anchor
            else f"{when} is before the enrollment starts ({isoformat_utc(enrollment.anchor)})"
        )
    if at < first.start:
        return f"{when} is before the enrollment's first period starts ({isoformat_utc(first.start)})"
    latest = await session.scalar(select(PeriodRow).where(periods).order_by(PeriodRow.start.desc()).limit(1))
    assert latest is not None
    if at < latest.end:
        return f"no period covers {when} (the enrollment was paused then)"
    if enrollment.status == EnrollmentStatus.PAUSED.value and enrollment.pause_reason == PauseReason.MANUAL.value:
        return f"the enrollment is PAUSED (manual) since its latest period ended; no period covers {when}"
    return None


async def _has_event(session: AsyncSession, enrollment_id: str, event_key: str) -> bool:
    found = await session.scalar(
        select(EnrollmentLogRow.id).where(
            EnrollmentLogRow.enrollment_id == enrollment_id, EnrollmentLogRow.event_key == event_key
        )
    )
    return found is not None


async def _period_row(session: AsyncSession, enrollment_id: str, start: datetime) -> PeriodRow | None:
    return await session.scalar(
        select(PeriodRow).where(PeriodRow.enrollment_id == enrollment_id, PeriodRow.start == start)
    )


async def _free_number(session: AsyncSession, column: InstrumentedAttribute[str], prefix: str, entity_id: str) -> str:
    """The first candidate number for ``entity_id`` that no row holds yet (one query for all candidates)."""
    candidates = list(candidate_numbers(prefix, entity_id))
    taken = set(await session.scalars(select(column).where(column.in_(candidates))))
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"all {len(candidates)} candidate numbers for {entity_id!r} are taken")


async def _insert_order(
    session: AsyncSession,
    enrollment_id: str,
    period: PeriodWindow,
    order: OrderConfiguration,
    now: datetime,
    *,
    status: OrderStatus = OrderStatus.PENDING,
) -> OrderRow:
    order_id = order_id_for(enrollment_id, period.start)
    payload = order.model_dump(mode="json")
    row = OrderRow(
        id=order_id,
        number=await _free_number(session, OrderRow.number, ORDER_PREFIX, order_id),
        enrollment_id=enrollment_id,
        period_start=period.start,
        period_end=period.end,
        status=status.value,
        context=payload["order_context"],
        created=now,
        updated=now,
        positions=[
            OrderPositionRow(
                position=index,
                product_id=position["product_id"],
                original_product_id=position["original_product_id"],
                quantity=position["quantity"],
                configuration=position["configuration"],
            )
            for index, position in enumerate(payload["order_position_templates"])
        ],
    )
    session.add(row)
    await session.flush()
    return row


def _check_order_window(enrollment_id: str, period: PeriodWindow, order: OrderConfiguration) -> None:
    if order.period.start != period.start or order.period.end != period.end:
        raise ValueError(
            f"order for {_window(order.period)} does not bill period {_window(period)} of enrollment {enrollment_id!r}"
        )


def _window(period: PeriodWindow) -> str:
    return _describe(period.start, period.end)


def _period_with(row: PeriodRow, order_row: OrderRow | None) -> Period:
    return _period(row, None if order_row is None else order_row.status)
