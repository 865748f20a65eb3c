"""The one place that owns a database transaction: begin, commit or roll back, and retry a lost race.

Every repository reads and writes through :class:`Transactions`. A write is a function of a session that
runs inside one transaction; when it loses a unique-key race to a concurrent writer (both inserted the same
business key), the transaction is rolled back and the function runs once more, and then finds the winner's
row. Reads run in a transaction that takes no write lock (a deferred transaction on SQLite).

An activity that makes several repository calls runs them as one unit of work (:meth:`Transactions.unit`):
every read and write inside it joins the unit's one transaction, committed when the unit ends, so a period's
reads, its rows and its bookkeeping cost one round of begin and commit, and a crash leaves all or nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.persistence.database import READ_ONLY_OPTION

T = TypeVar("T")

Work = Callable[[AsyncSession], Awaitable[T]]


class Transactions:
    """Sessions on one engine, each used for exactly one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        # The session of the unit of work running in this task (asyncio copies it into tasks it starts: a unit
        # must not start concurrent repository calls).
        self._unit: ContextVar[AsyncSession | None] = ContextVar(f"unit-of-work-{id(self)}", default=None)

    async def unit(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` (repository calls) in one transaction, committed when it returns; once more, from the
        start, after a lost key race. Inside a unit already, ``work`` simply joins it."""
        if self._unit.get() is not None:
            return await work()

        async def in_session(session: AsyncSession) -> T:
            token = self._unit.set(session)
            try:
                return await work()
            finally:
                self._unit.reset(token)

        return await self.write(in_session)

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` in one transaction (committed when it returns); once more after a lost key race.
        Inside a unit of work, ``work`` runs in the unit's transaction (the unit retries)."""
        session = self._unit.get()
        if session is not None:
            return await work(session)
        try:
            return await self._write_once(work)
        except IntegrityError:
            return await self._write_once(work)

    async def _write_once(self, work: Work[T]) -> T:
        async with self.sessions() as session, session.begin():
            return await work(session)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session in a read-only transaction (inside a unit of work: the unit's)."""
        session = self._unit.get()
        if session is not None:
            yield session
            return
        async with self.sessions() as session, session.begin():
            # A read needs no write lock: on SQLite it begins a deferred transaction instead of an immediate one.
            await session.connection(execution_options={READ_ONLY_OPTION: True})
            yield session


def require_aware(name: str, value: datetime) -> datetime:
    """``value`` when it is timezone-aware; ``ValueError`` naming ``name`` when it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value


def require_key(name: str, value: str, max_length: int) -> str:
    """``value`` when it is 1 to ``max_length`` characters; ``ValueError`` naming ``name`` otherwise."""
    if not value or len(value) > max_length:
        raise ValueError(f"{name} must be 1 to {max_length} characters, got {value!r}")
    return value
