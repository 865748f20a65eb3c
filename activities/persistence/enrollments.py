"""Enrollments and their log: create (idempotent by id), read snapshots, page and filter, change status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.dunning_rows import end_all_dunning
from activities.persistence.errors import EnrollmentConflict, EnrollmentTerminated, ProductNotFound
from activities.persistence.events import NewEvent, record_events
from activities.persistence.models import ID_LENGTH, KEY_LENGTH, EnrollmentLogRow, EnrollmentRow, ProductRow
from activities.persistence.numbers import ENROLLMENT_PREFIX
from activities.persistence.rows import (
    free_number,
    lock_enrollment,
    product_of,
    recent_snapshot,
    snapshot,
    snapshots,
    stored_terms_json,
    terms_json,
)
from activities.persistence.transactions import Transactions, require_aware, require_key
from adapters.domain import (
    Enrollment,
    EnrollmentStatus,
    EnrollmentTerms,
    PauseReason,
    ScheduledAction,
    StatusChange,
)
from adapters.events import EnrollmentActivated, EnrollmentCreated, EnrollmentStatusChanged, EventType
from adapters.rules import status_change_problem

CREATED_EVENT = "created"
"""Event key of the log entry that :meth:`EnrollmentRepository.create` writes."""


class EnrollmentRepository:
    """Enrollments with their log; each method is one transaction (or joins the unit of work it runs in)."""

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
                _require_same_terms(row, terms)
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
                plan_version=product_row.version,
                next_wake_up=anchor,  # the start: registration advances at once when it is due
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
            created = EnrollmentCreated(
                number=number,
                user_id=terms.user_id,
                product_id=terms.product_id,
                quantity=terms.quantity,
                status=status,
                anchor=anchor,
                timezone=terms.timezone,
                origin_order_id=terms.origin_order_id,
            )
            events = [NewEvent(EventType.ENROLLMENT_CREATED, CREATED_EVENT, now, created)]
            if status is EnrollmentStatus.ACTIVE:
                events.append(_activated(anchor, "created"))
            await session.flush()
            await record_events(session, enrollment_id, *events)
            return await snapshot(session, row)

        return await self._transactions.write(create)

    async def get(self, enrollment_id: str, *, with_log: bool = True) -> Enrollment | None:
        """The full snapshot: terms, lifecycle, periods by start (with their orders' status) and the log."""
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is None:
                return None
            (found,) = await snapshots(session, [row], with_log=with_log)
            return found

    async def get_recent(self, enrollment_id: str) -> Enrollment | None:
        """The snapshot a period's work needs, in bounded time however old the enrollment is (see
        :func:`~activities.persistence.rows.recent_snapshot`): recent and open periods, no log."""
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            return None if row is None else await recent_snapshot(session, row)

    async def existing_status(self, enrollment_id: str, terms: EnrollmentTerms) -> EnrollmentStatus | None:
        """What :meth:`create` would find: None for a new id, else the status of the enrollment with ``terms``.

        Raises :class:`EnrollmentConflict` when the id exists with other terms, as :meth:`create` would.
        """
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is None:
                return None
            _require_same_terms(row, terms)
            return EnrollmentStatus(row.status)

    async def get_by_number(self, number: str) -> Enrollment | None:
        """The full snapshot of the enrollment with ``number`` (as stored, e.g. ``E-7KQ2M9XA``)."""
        async with self._transactions.read() as session:
            row = await session.scalar(select(EnrollmentRow).where(EnrollmentRow.number == number))
            return None if row is None else await snapshot(session, row)

    async def id_for_number(self, number: str) -> str | None:
        """The id of the enrollment with ``number`` (as stored, e.g. ``E-7KQ2M9XA``), or None."""
        async with self._transactions.read() as session:
            found: str | None = await session.scalar(select(EnrollmentRow.id).where(EnrollmentRow.number == number))
            return found

    async def exists(self, enrollment_id: str) -> bool:
        async with self._transactions.read() as session:
            found = await session.scalar(select(EnrollmentRow.id).where(EnrollmentRow.id == enrollment_id))
            return found is not None

    async def page(
        self,
        statuses: Sequence[EnrollmentStatus],
        *,
        after_id: str | None,
        limit: int,
        due_by: datetime | None = None,
    ) -> list[Enrollment]:
        """Up to ``limit`` enrollments in ``statuses`` with id > ``after_id``, by id (keyset paging).

        With ``due_by``, only those whose stored next wake-up is at or before it (due, or late: their workflow
        has not advanced past it). Pass the last id of a page as ``after_id`` for the next one. Snapshots
        carry periods but no log.
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
        if due_by is not None:
            query = query.where(EnrollmentRow.next_wake_up <= due_by)
        async with self._transactions.read() as session:
            return await snapshots(session, list(await session.scalars(query)), with_log=False)

    async def matching(
        self,
        *,
        status: EnrollmentStatus | None = None,
        product_id: str | None = None,
        user_id: str | None = None,
        due_before: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[Enrollment]:
        """Enrollments matching every given filter, oldest first. Snapshots carry periods but no log.

        ``due_before``: those whose workflow next acts on its own before that moment (stored next wake-up).
        """
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
        if due_before is not None:
            query = query.where(EnrollmentRow.next_wake_up < require_aware("due_before", due_before))
        async with self._transactions.read() as session:
            return await snapshots(session, list(await session.scalars(query)), with_log=False)

    async def change_status(self, enrollment_id: str, change: StatusChange) -> Enrollment:
        """Apply ``change`` (status, pause reason, expiry, anchor) and log it under its event key.

        A second call with the same event key, or a change the enrollment already shows (its workflow was
        reset and decided it again), changes nothing and returns the current snapshot. TERMINATED is final:
        moving away from it raises :class:`EnrollmentTerminated` (:func:`adapters.rules.status_change_problem`).
        """

        async def change_status(session: AsyncSession) -> Enrollment:
            row = await lock_enrollment(session, enrollment_id)
            logged = await session.scalar(
                select(EnrollmentLogRow.id).where(
                    EnrollmentLogRow.enrollment_id == enrollment_id, EnrollmentLogRow.event_key == change.event_key
                )
            )
            fields = {name: getattr(value, "value", value) for name, value in change.changed_fields().items()}
            if logged is not None or all(getattr(row, name) == value for name, value in fields.items()):
                return await snapshot(session, row)  # a retry, or a change the row already shows (a reset)
            previous = EnrollmentStatus(row.status)
            problem = status_change_problem(enrollment_id, previous, change)
            if problem is not None:
                raise EnrollmentTerminated(problem, enrollment_id, row.expires)
            for name, value in fields.items():
                setattr(row, name, value)
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
            changed = EnrollmentStatusChanged(
                from_=previous,
                to=change.status,
                reason=change.info,
                pause_reason=None if row.pause_reason is None else PauseReason(row.pause_reason),
                expires=row.expires,
            )
            events = [NewEvent(EventType.ENROLLMENT_STATUS_CHANGED, change.event_key, change.at, changed)]
            if previous is EnrollmentStatus.INITIAL and change.status is EnrollmentStatus.ACTIVE:
                events.append(_activated(row.anchor, change.info))
            if change.status is EnrollmentStatus.TERMINATED:  # nothing is chased from an ended subscription
                await end_all_dunning(session, enrollment_id, "terminated", change.at)
            await session.flush()
            await record_events(session, enrollment_id, *events)
            return await snapshot(session, row)

        return await self._transactions.write(change_status)

    async def set_scheduled(self, enrollment_id: str, scheduled: ScheduledAction | None) -> None:
        """Store the pause or termination scheduled at period end (None: none is), so a rebuilt workflow keeps it."""

        async def set_scheduled(session: AsyncSession) -> None:
            row = await lock_enrollment(session, enrollment_id)
            row.scheduled_kind = None if scheduled is None else scheduled.kind
            row.scheduled_at = None if scheduled is None else scheduled.at
            row.scheduled_reason = None if scheduled is None else scheduled.reason

        await self._transactions.write(set_scheduled)

    async def set_next_wake_up(self, enrollment_id: str, at: datetime | None) -> None:
        """Store when the enrollment's workflow next acts on its own (None: only when a command arrives)."""

        async def set_next_wake_up(session: AsyncSession) -> None:
            # On the row itself: in a unit of work that has it already, one UPDATE at commit with its other changes.
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is not None:
                row.next_wake_up = at

        await self._transactions.write(set_next_wake_up)


def _require_same_terms(row: EnrollmentRow, terms: EnrollmentTerms) -> None:
    """Raise :class:`EnrollmentConflict` naming the fields in which ``row`` differs from ``terms``."""
    stored, wanted = stored_terms_json(row), terms_json(terms)
    differing = [name for name in wanted if stored[name] != wanted[name]]
    if differing:
        raise EnrollmentConflict(row.id, differing)


def _activated(anchor: datetime, reason: str) -> NewEvent:
    """The enrollment's one ``enrollment.activated`` event; it took effect at its anchor (its schedule's start)."""
    return NewEvent(
        EventType.ENROLLMENT_ACTIVATED, "activated", anchor, EnrollmentActivated(anchor=anchor, reason=reason)
    )
