"""Metered usage: records appended by the metering source, idempotent by key, summed when a period is billed."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.billing import usage_total
from activities.persistence.errors import UsageConflict, UsageRefused
from activities.persistence.models import KEY_LENGTH, EnrollmentRow, PeriodRow, ProductRow, UsageRecordRow
from activities.persistence.rows import lock_enrollment, period_of, product_of
from activities.persistence.transactions import Transactions, require_aware, require_key
from adapters.domain import MAX_UNITS, EnrollmentStatus, PauseReason
from adapters.rules import usage_refusal


class UsageRepository:
    """Usage records of metered enrollments; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def record(
        self, enrollment_id: str, units: int, idempotency_key: str, at: datetime, *, now: datetime
    ) -> bool:
        """Record usage of a metered enrollment under the billing rules; True when new, False for a repeat.

        This is how usage enters the system (client library, CLI, simulator): the metering source appends the
        record to the database directly, never through the enrollment's workflow, so a busy meter costs the
        workflow nothing. Checked under the enrollment's lock (see :meth:`BillingRepository.bill_period`):

        - the same key with the same units is one record (False); with other units :class:`UsageConflict`;
          a repeat is answered before any other rule, so retrying an accepted record always succeeds;
        - :class:`UsageRefused` with the reason of :func:`adapters.rules.usage_refusal` (not METERED, after
          ``expires``, late for a billed period, before the start, in a pause);
        - :class:`EnrollmentNotFound` for an unknown enrollment, ``ValueError`` for units out of 0…2⁶³−1, a bad key or
          a naive ``at``.
        """
        if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= MAX_UNITS:
            raise ValueError(f"usage units must be an integer from 0 to {MAX_UNITS} (2^63 - 1), got {units!r}")
        require_key("idempotency_key", idempotency_key, KEY_LENGTH)
        require_aware("at", at)
        require_aware("now", now)

        async def record(session: AsyncSession) -> bool:
            enrollment = await lock_enrollment(session, enrollment_id)
            recorded = await session.scalar(
                select(UsageRecordRow.units).where(
                    UsageRecordRow.enrollment_id == enrollment_id, UsageRecordRow.idempotency_key == idempotency_key
                )
            )
            if recorded is not None:
                if recorded != units:
                    raise UsageConflict(enrollment_id, idempotency_key, recorded, units)
                return False
            reason = await _refusal(session, enrollment, at, units)
            if reason is not None:
                raise UsageRefused(enrollment_id, idempotency_key, reason)
            session.add(
                UsageRecordRow(
                    enrollment_id=enrollment_id, idempotency_key=idempotency_key, units=units, at=at, created=now
                )
            )
            await session.flush()
            return True

        return await self._transactions.write(record)

    async def recorded_at(self, enrollment_id: str, idempotency_key: str) -> datetime | None:
        """When the usage recorded under ``idempotency_key`` happened (its ``at``), or None when there is none."""
        async with self._transactions.read() as session:
            found: datetime | None = await session.scalar(
                select(UsageRecordRow.at).where(
                    UsageRecordRow.enrollment_id == enrollment_id, UsageRecordRow.idempotency_key == idempotency_key
                )
            )
            return found

    async def units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        """Units used with ``start <= at < end``."""
        async with self._transactions.read() as session:
            return await usage_total(session, enrollment_id, start, end)


async def _refusal(session: AsyncSession, enrollment: EnrollmentRow, at: datetime, units: int) -> str | None:
    """What the store knows around ``at``, judged by :func:`adapters.rules.usage_refusal`."""
    product = await session.get(ProductRow, enrollment.product_id)
    periods = PeriodRow.enrollment_id == enrollment.id
    containing = await session.scalar(select(PeriodRow).where(periods, PeriodRow.start <= at, PeriodRow.end > at))
    first = await session.scalar(select(PeriodRow.start).where(periods).order_by(PeriodRow.start).limit(1))
    latest = await session.scalar(select(PeriodRow.end).where(periods).order_by(PeriodRow.start.desc()).limit(1))
    # The window ``at`` is billed in: its period, or everything after the latest period (not made yet).
    window_start = containing.start if containing is not None else latest or enrollment.anchor
    window_end = containing.end if containing is not None else datetime.max.replace(tzinfo=UTC)
    window_units = await usage_total(session, enrollment.id, max(window_start, enrollment.anchor), window_end)
    return usage_refusal(
        product_id=enrollment.product_id,
        plan=None if product is None else product_of(product).plan,
        status=EnrollmentStatus(enrollment.status),
        pause_reason=None if enrollment.pause_reason is None else PauseReason(enrollment.pause_reason),
        anchor=enrollment.anchor,
        expires=enrollment.expires,
        at=at,
        containing=None if containing is None else period_of(containing, None),
        first_start=first,
        latest_end=latest,
        units=units,
        window_units=window_units,
    )
