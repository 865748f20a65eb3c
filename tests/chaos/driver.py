"""The fault suite's command driver: a caller that keeps sending commands while things break.

Through the project's client (:class:`starter.client.EnrollmentsClient`), as a service would: pause (now or at
period end), resume and terminate (at period end, by default, immediately) for the enrollments it commands,
order-status changes (PENDING → CONFIRMED → FULFILLED) for the latest order of any licensed enrollment, and
usage for the metered ones. It looks at an enrollment before it acts (the ``state`` query) and sends only what
the enrollment's state allows. A command that fails because of a fault — Temporal or PostgreSQL down, a worker
gone, an answer that never came — is sent again with backoff until it is answered; an answer (done, or
rejected: a retry of a command that took effect after all is rejected as no longer valid) goes into the
:class:`Ledger`, which ``tests/chaos/commands_check.py`` compares with the database afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from activities.persistence.errors import UsageConflict, UsageRefused
from adapters.domain import EnrollmentStatus, OrderStatus
from adapters.lifecycle import EnrollmentView
from starter.client import EnrollmentCommandRejected, EnrollmentNotFound, EnrollmentsClient, OrderNotFound
from tests.chaos.harness import Population, log

T = TypeVar("T")

ANSWERS = (EnrollmentCommandRejected, EnrollmentNotFound, OrderNotFound, UsageRefused, UsageConflict)
"""What the client answers; anything else a caller sees is a fault to retry through."""

NEXT_ORDER_STATUS = {OrderStatus.PENDING: OrderStatus.CONFIRMED, OrderStatus.CONFIRMED: OrderStatus.FULFILLED}


class GaveUp(RuntimeError):
    """A command that got no answer within the driver's patience."""


@dataclass
class Ledger:
    """Every answer the driver got."""

    answered: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    """attempts sent again, by the fault's exception type"""
    given_up: list[str] = field(default_factory=list)
    status_entries: list[tuple[str, datetime, EnrollmentStatus]] = field(default_factory=list)
    """(enrollment, at, status) of the latest log entry each answered status command returned"""
    order_statuses: dict[str, OrderStatus] = field(default_factory=dict)
    """order id → the status last acknowledged for it"""
    usage: dict[tuple[str, str], int] = field(default_factory=dict)
    """(enrollment, idempotency key) → units of every usage record acknowledged (new or a repeat)"""
    refused_usage: set[tuple[str, str]] = field(default_factory=set)

    @property
    def commands(self) -> int:
        return sum(self.answered.values()) + sum(self.rejected.values())

    def summary(self) -> str:
        return (
            f"answered {dict(self.answered)}, rejected {dict(self.rejected)}, retried {dict(self.retried)}, "
            f"gave up {len(self.given_up)}"
        )


@dataclass
class CommandDriver:
    client: EnrollmentsClient
    population: Population
    interval: float
    """seconds between two commands (they run concurrently: one waiting for a dead worker holds up no other)"""
    seed: int = 21
    attempt_timeout: float = 10.0
    """an update whose worker died mid-task is not answered: after this the driver sends it again"""
    patience: float = 300.0
    ledger: Ledger = field(default_factory=Ledger)
    _locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    _usage_count: int = 0

    async def run(self, seconds: float) -> Ledger:
        """Send commands for ``seconds``, then wait for the answers of those still in flight."""
        rng = random.Random(self.seed)
        commanded = sorted(self.population.commanded)
        licensed = self.population.licensed
        metered = sorted(self.population.metered)
        deadline = time.monotonic() + seconds
        tasks: list[asyncio.Task[None]] = []
        while time.monotonic() < deadline:
            roll = rng.random()
            if metered and roll < 0.35:
                step = self._usage(rng.choice(metered), rng.randint(1, 5))
            elif roll < 0.6:
                step = self._order_status(rng.choice(licensed))
            elif commanded:
                step = self._status_command(rng.choice(commanded), random.Random(rng.random()))
            else:
                continue
            tasks.append(asyncio.create_task(self._guarded(step)))
            await asyncio.sleep(self.interval)
        await asyncio.gather(*tasks)
        return self.ledger

    async def _guarded(self, step: Awaitable[None]) -> None:
        try:
            await step
        except GaveUp as error:
            self.ledger.given_up.append(str(error))
            log(f"driver: {error}")

    async def _answered(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until the client answers (a result or one of :data:`ANSWERS`), sent again after faults."""
        began, delay = time.monotonic(), 0.5
        while True:
            try:
                return await asyncio.wait_for(call(), self.attempt_timeout)
            except ANSWERS:
                raise
            except Exception as error:  # a fault, whatever its type: a caller retries, and so does the driver
                if time.monotonic() - began > self.patience:
                    raise GaveUp(f"{what}: no answer after {self.patience:.0f}s ({type(error).__name__})") from error
                self.ledger.retried[type(error).__name__] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _view(self, enrollment_id: str) -> EnrollmentView:
        return await self._answered(f"state of {enrollment_id}", lambda: self.client.get_enrollment(enrollment_id))

    async def _status_command(self, enrollment_id: str, rng: random.Random) -> None:
        async with self._locks[enrollment_id]:
            view = await self._view(enrollment_id)
            choice = _choose(view, rng)
            if choice is None:
                return
            kind, options = choice
            send = getattr(self.client, kind.split(" ")[0])
            what = f"{kind} {enrollment_id}"
            try:
                answer: EnrollmentView = await self._answered(what, lambda: send(enrollment_id, **options))
            except EnrollmentCommandRejected:
                self.ledger.rejected[kind] += 1
                return
            self.ledger.answered[kind] += 1
            if answer.log:
                latest = answer.log[-1]
                self.ledger.status_entries.append((enrollment_id, latest.at, latest.status))

    async def _order_status(self, enrollment_id: str) -> None:
        async with self._locks[enrollment_id]:
            view = await self._view(enrollment_id)
            if not view.orders or view.orders[-1].status not in NEXT_ORDER_STATUS:
                return
            order = view.orders[-1]
            wanted = NEXT_ORDER_STATUS[order.status]
            kind = f"order {wanted.value}"
            try:
                await self._answered(f"{kind} {order.id}", lambda: self.client.order_status_changed(order.id, wanted))
            except EnrollmentCommandRejected:  # its enrollment was terminated meanwhile
                self.ledger.rejected[kind] += 1
                return
            self.ledger.answered[kind] += 1
            self.ledger.order_statuses[order.id] = wanted

    async def _usage(self, enrollment_id: str, units: int) -> None:
        self._usage_count += 1
        key = f"usage-{self._usage_count}"
        try:
            await self._answered(
                f"usage {key} of {enrollment_id}", lambda: self.client.record_usage(enrollment_id, units, key)
            )
        except UsageRefused:
            self.ledger.refused_usage.add((enrollment_id, key))
            self.ledger.rejected["usage"] += 1
            return
        self.ledger.answered["usage"] += 1
        self.ledger.usage[(enrollment_id, key)] = units


def _choose(view: EnrollmentView, rng: random.Random) -> tuple[str, dict[str, object]] | None:
    """A command the enrollment's state allows, by weight (terminations rare: most enrollments stay in play)."""
    if view.status is EnrollmentStatus.ACTIVE and view.scheduled is None:
        options: list[tuple[tuple[str, dict[str, object]], int]] = [
            (("pause", {}), 35),
            (("pause at period end", {"at_period_end": True}), 25),
            (("terminate at period end", {"at_period_end": True}), 3),
            (("terminate", {}), 2),
            (("terminate immediately", {"immediately": True}), 2),
        ]
    elif view.status is EnrollmentStatus.ACTIVE:
        options = [(("resume", {}), 60), (("pause", {}), 25), (("terminate immediately", {"immediately": True}), 3)]
    elif view.status is EnrollmentStatus.PAUSED:
        options = [(("resume", {}), 85), (("terminate", {}), 6)]
    else:
        return None
    commands: list[tuple[str, dict[str, object]]] = [command for command, _ in options]
    return rng.choices(commands, weights=[weight for _, weight in options])[0]
