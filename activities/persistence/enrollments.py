"""Enrollments and their log: create (idempotent by id), read snapshots, page and filter, change status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.errors import EnrollmentConflict, ProductNotFound
from activities.persistence.models import ID_LENGTH, KEY_LENGTH, EnrollmentLogRow, EnrollmentRow, ProductRow
from activities.persistence.numbers import ENROLLMENT_PREFIX
from activities.persistence.rows import (
    free_number,
    lock_enrollment,
    product_of,
    snapshot,
    snapshots,
    stored_terms_json,
    terms_json,
)
from activities.persistence.transactions import Transactions, require_aware, require_key
from adapters.domain import Enrollment, EnrollmentStatus, EnrollmentTerms, StatusChange
from adapters.rules import status_change_problem

CREATED_EVENT = "created"
"""Event key of the log entry that :meth:`EnrollmentRepository.create` writes."""


class EnrollmentRepository:
    """Enrollments with their log; each method is one transaction."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def create(
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
        require_key("enrollment_id", enrollment_id, ID_LENGTH)
        require_key("adapter_key", adapter_key, KEY_LENGTH)
        require_aware("anchor", anchor)
        require_aware("now", now)
        if status not in (EnrollmentStatus.INITIAL, EnrollmentStatus.ACTIVE):
            raise ValueError(f"an enrollment starts INITIAL or ACTIVE, not {status.value}")
        wanted = terms_json(terms)

        async def create(session: AsyncSession) -> Enrollment:
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is not None:
                stored = stored_terms_json(row)
                differing = [name for name in wanted if stored[name] != wanted[name]]
                if differing:
                    raise EnrollmentConflict(enrollment_id, differing)
                return await snapshot(session, row)

            product_row = await session.get(ProductRow, terms.product_id)
            if product_row is None:
                raise ProductNotFound(terms.product_id)
            product_of(product_row).require_plan()

            number = await free_number(session, EnrollmentRow.number, ENROLLMENT_PREFIX, enrollment_id)
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
            return await snapshot(session, row)

        return await self._transactions.write(create)

    async def get(self, enrollment_id: str) -> Enrollment | None:
        """The full snapshot: terms, lifecycle, periods by start (with their orders' status) and the log."""
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            return None if row is None else await snapshot(session, row)

    async def get_by_number(self, number: str) -> Enrollment | None:
        """The full snapshot of the enrollment with ``number`` (as stored, e.g. ``E-7KQ2M9XA``)."""
        async with self._transactions.read() as session:
            row = await session.scalar(select(EnrollmentRow).where(EnrollmentRow.number == number))
            return None if row is None else await snapshot(session, row)

    async def exists(self, enrollment_id: str) -> bool:
        async with self._transactions.read() as session:
            found = await session.scalar(select(EnrollmentRow.id).where(EnrollmentRow.id == enrollment_id))
            return found is not None

    async def page(self, statuses: Sequence[EnrollmentStatus], *, after_id: str | None, limit: int) -> list[Enrollment]:
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
        async with self._transactions.read() as session:
            return await snapshots(session, list(await session.scalars(query)), with_log=False)

    async def matching(
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
        async with self._transactions.read() as session:
            return await snapshots(session, list(await session.scalars(query)), with_log=False)

    async def change_status(self, enrollment_id: str, change: StatusChange) -> Enrollment:
        """Apply ``change`` (status, pause reason, expiry, anchor) and log it under its event key.

        A second call with the same event key changes nothing and returns the current snapshot. TERMINATED
        is final: moving away from it raises ``ValueError`` (:func:`adapters.rules.status_change_problem`).
        """

        async def change_status(session: AsyncSession) -> Enrollment:
            row = await lock_enrollment(session, enrollment_id)
            logged = await session.scalar(
                select(EnrollmentLogRow.id).where(
                    EnrollmentLogRow.enrollment_id == enrollment_id, EnrollmentLogRow.event_key == change.event_key
                )
            )
            if logged is not None:
                return await snapshot(session, row)
            problem = status_change_problem(enrollment_id, EnrollmentStatus(row.status), change)
            if problem is not None:
                raise ValueError(problem)
            for name, value in change.changed_fields().items():
                setattr(row, name, getattr(value, "value", value))
            row.updated = change.at
            session.add(
                EnrollmentLogRow(
                    enrollment_id=enrollment_id,
                    event_key=change.event_key,
                    at=change.at,
                    status=change.status.value,
                    info=change.info,
                )
            )
            await session.flush()
            return await snapshot(session, row)

        return await self._transactions.write(change_status)
