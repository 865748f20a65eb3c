"""Every enrollment state × every command, on the real workflow (time-skipping server, SQLite).

Each cell brings a fresh enrollment into a state, sends one command as an update, and checks the outcome:
either rejected with a clear error (and nothing changed), or the resulting status, pause reason,
scheduled action and expiry.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, EnrollmentStatus, OrderStatus, PauseReason, ProductPlan
from adapters.lifecycle import EnrollmentView
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.overdue_adapter import OverdueAfterOneDayAdapter
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
WEEKLY_WITH_OVERDUE = ProductPlan(billing_interval=BillingInterval.WEEKS)

Setup = Callable[[EnrollmentsClient, str], Awaitable[None]]


async def _nothing(client: EnrollmentsClient, enrollment_id: str) -> None:
    return None


@dataclass(frozen=True)
class StateSetup:
    product: str
    start_in: timedelta | None
    setup: Setup
    activate_on_payment: bool = False


async def _schedule_pause(client: EnrollmentsClient, enrollment_id: str) -> None:
    await client.pause(enrollment_id, at_period_end=True)


async def _schedule_termination(client: EnrollmentsClient, enrollment_id: str) -> None:
    await client.terminate(enrollment_id, at_period_end=True)


async def _pause(client: EnrollmentsClient, enrollment_id: str) -> None:
    await client.pause(enrollment_id, reason="customer asked")


async def _terminate(client: EnrollmentsClient, enrollment_id: str) -> None:
    await client.terminate(enrollment_id)


async def _schedule_change(client: EnrollmentsClient, enrollment_id: str) -> None:
    await client.change_enrollment(enrollment_id, quantity=3, when="period_end")


STATES: dict[str, StateSetup] = {
    "INITIAL": StateSetup("monthly", timedelta(days=10), _nothing),
    "INITIAL(awaiting payment)": StateSetup("monthly", None, _nothing, activate_on_payment=True),
    "ACTIVE": StateSetup("monthly", None, _nothing),
    "ACTIVE+pause@end": StateSetup("monthly", None, _schedule_pause),
    "ACTIVE+terminate@end": StateSetup("monthly", None, _schedule_termination),
    "ACTIVE+change@end": StateSetup("monthly", None, _schedule_change),
    "PAUSED(manual)": StateSetup("monthly", None, _pause),
    "PAUSED(overdue)": StateSetup("weekly-overdue", None, _nothing),  # reached by sleeping past the grace
    "TERMINATED": StateSetup("monthly", None, _terminate),
}

REJECT = "reject"


@dataclass(frozen=True)
class Expect:
    status: EnrollmentStatus
    reason: PauseReason | None = None
    scheduled: str | None = None
    expires: str | None = None  # "period_end" | "now" | None
    quantity: int = 1
    pending: int | None = None  # the quantity of the change pending at period end, if any


ACTIVE, PAUSED, TERMINATED = EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.TERMINATED
MANUAL, OVERDUE = PauseReason.MANUAL, PauseReason.OVERDUE

COMMANDS = (
    "pause",
    "pause@end",
    "resume",
    "terminate",
    "terminate@end",
    "terminate!",
    "order_confirmed",
    "activate",
    "change",
    "change@end",
    "change-cancel",
)

TABLE: dict[str, dict[str, Expect | str]] = {
    "INITIAL": {
        "pause": REJECT,
        "pause@end": REJECT,
        "resume": REJECT,
        "terminate": Expect(TERMINATED, expires="now"),
        "terminate@end": Expect(TERMINATED, expires="now"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": REJECT,
        "activate": Expect(ACTIVE),
        "change": Expect(EnrollmentStatus.INITIAL, quantity=2),
        "change@end": Expect(EnrollmentStatus.INITIAL, quantity=2),
        "change-cancel": REJECT,
    },
    "INITIAL(awaiting payment)": {
        "pause": REJECT,
        "pause@end": REJECT,
        "resume": REJECT,
        "terminate": Expect(TERMINATED, expires="now"),
        "terminate@end": Expect(TERMINATED, expires="now"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(ACTIVE),
        "activate": Expect(ACTIVE),
        "change": Expect(EnrollmentStatus.INITIAL, quantity=2),
        "change@end": Expect(EnrollmentStatus.INITIAL, pending=2),
        "change-cancel": REJECT,
    },
    "ACTIVE": {
        "pause": Expect(PAUSED, MANUAL),
        "pause@end": Expect(ACTIVE, scheduled="pause"),
        "resume": REJECT,
        "terminate": Expect(TERMINATED, expires="period_end"),
        "terminate@end": Expect(ACTIVE, scheduled="terminate"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(ACTIVE),
        "activate": REJECT,
        "change": Expect(ACTIVE, quantity=2),
        "change@end": Expect(ACTIVE, pending=2),
        "change-cancel": REJECT,
    },
    "ACTIVE+pause@end": {
        "pause": Expect(PAUSED, MANUAL),
        "pause@end": REJECT,
        "resume": Expect(ACTIVE),
        "terminate": Expect(TERMINATED, expires="period_end"),
        "terminate@end": Expect(ACTIVE, scheduled="terminate"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(ACTIVE, scheduled="pause"),
        "activate": REJECT,
        "change": Expect(ACTIVE, scheduled="pause", quantity=2),
        "change@end": Expect(ACTIVE, scheduled="pause", pending=2),
        "change-cancel": REJECT,
    },
    "ACTIVE+terminate@end": {
        "pause": REJECT,
        "pause@end": REJECT,
        "resume": Expect(ACTIVE),
        "terminate": Expect(TERMINATED, expires="period_end"),
        "terminate@end": REJECT,
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(ACTIVE, scheduled="terminate"),
        "activate": REJECT,
        "change": Expect(ACTIVE, scheduled="terminate", quantity=2),
        "change@end": REJECT,
        "change-cancel": REJECT,
    },
    "PAUSED(manual)": {
        "pause": REJECT,
        "pause@end": REJECT,
        "resume": Expect(ACTIVE),
        "terminate": Expect(TERMINATED, expires="now"),
        "terminate@end": Expect(TERMINATED, expires="now"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(PAUSED, MANUAL),
        "activate": REJECT,
        "change": Expect(PAUSED, MANUAL, quantity=2),
        "change@end": Expect(PAUSED, MANUAL, pending=2),
        "change-cancel": REJECT,
    },
    "PAUSED(overdue)": {
        "pause": Expect(PAUSED, MANUAL),
        "pause@end": Expect(PAUSED, MANUAL),
        "resume": REJECT,
        "terminate": Expect(TERMINATED, expires="now"),
        "terminate@end": Expect(TERMINATED, expires="now"),
        "terminate!": Expect(TERMINATED, expires="now"),
        "order_confirmed": Expect(ACTIVE),
        "activate": REJECT,
        "change": Expect(PAUSED, OVERDUE, quantity=2),
        "change@end": Expect(PAUSED, OVERDUE, pending=2),
        "change-cancel": REJECT,
    },
    "ACTIVE+change@end": {
        "pause": Expect(PAUSED, MANUAL, pending=3),
        "pause@end": Expect(ACTIVE, scheduled="pause", pending=3),
        "resume": REJECT,
        "terminate": Expect(TERMINATED, expires="period_end", pending=3),
        "terminate@end": Expect(ACTIVE, scheduled="terminate", pending=3),
        "terminate!": Expect(TERMINATED, expires="now", pending=3),
        "order_confirmed": Expect(ACTIVE, pending=3),
        "activate": REJECT,
        "change": Expect(ACTIVE, quantity=2),  # a change now replaces the pending one
        "change@end": Expect(ACTIVE, pending=2),  # replaces it
        "change-cancel": Expect(ACTIVE),  # withdraws it
    },
    "TERMINATED": dict.fromkeys(COMMANDS, REJECT),
}


async def _send(client: EnrollmentsClient, enrollment_id: str, command: str) -> EnrollmentView:
    if command == "pause":
        return await client.pause(enrollment_id)
    if command == "pause@end":
        return await client.pause(enrollment_id, at_period_end=True)
    if command == "resume":
        return await client.resume(enrollment_id)
    if command == "terminate":
        return await client.terminate(enrollment_id)
    if command == "terminate@end":
        return await client.terminate(enrollment_id, at_period_end=True)
    if command == "terminate!":
        return await client.terminate(enrollment_id, immediately=True)
    if command == "activate":
        return await client.activate(enrollment_id)
    if command == "change":
        return await client.change_enrollment(enrollment_id, quantity=2, proration="none")
    if command == "change@end":
        return await client.change_enrollment(enrollment_id, quantity=2, when="period_end")
    if command == "change-cancel":
        return await client.change_enrollment(enrollment_id, cancel=True)
    view = await client.get_enrollment(enrollment_id)
    order_id = view.orders[-1].id if view.orders else "no-such-order"
    return await client.order_status_changed(order_id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)


def test_table_covers_every_state_and_command() -> None:
    assert set(TABLE) == set(STATES)
    for row in TABLE.values():
        assert set(row) == set(COMMANDS)


@SQLITE_ONLY
async def test_every_state_times_every_command(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "monthly", MONTHLY)
    await add_product(database_url, "weekly-overdue", WEEKLY_WITH_OVERDUE)
    director = director_from_names(["licensed"])
    director = type(director)([OverdueAfterOneDayAdapter, *director.adapters])
    async with running_worker(env, database_url, director=director) as (client, _):
        cells: list[tuple[str, str, str]] = []
        for state, setup in STATES.items():
            for command in COMMANDS:
                enrollment_id = f"{state}-{command}-{uuid.uuid4().hex[:6]}"
                now = await env.get_current_time()
                start = now + setup.start_in if setup.start_in else None
                await client.create_enrollment(
                    product_id=setup.product,
                    user_id="u",
                    enrollment_id=enrollment_id,
                    start=start,
                    activate_on_payment=setup.activate_on_payment,
                )
                cells.append((state, command, enrollment_id))
        # One sleep makes every weekly-overdue enrollment overdue (one day past its unpaid period start).
        await env.sleep(timedelta(days=1, hours=1))
        for state, _command, enrollment_id in cells:
            await STATES[state].setup(client, enrollment_id)
        failures: list[str] = []
        for state, command, enrollment_id in cells:
            before = await client.get_enrollment(enrollment_id)
            failures += _check_state(state, before)
            expected = TABLE[state][command]
            now = await env.get_current_time()
            try:
                after = await _send(client, enrollment_id, command)
            except EnrollmentCommandRejected as error:
                if expected != REJECT:
                    failures.append(f"{state} × {command}: rejected ({error}), expected {expected}")
                else:
                    assert str(error), "a rejection must say why"
                    unchanged = await client.get_enrollment(enrollment_id)
                    if (unchanged.status, unchanged.scheduled, unchanged.expires, unchanged.pending_change) != (
                        before.status,
                        before.scheduled,
                        before.expires,
                        before.pending_change,
                    ) or (unchanged.product_id, unchanged.quantity) != (before.product_id, before.quantity):
                        failures.append(f"{state} × {command}: rejected but the enrollment changed")
                continue
            if expected == REJECT:
                failures.append(f"{state} × {command}: accepted ({after.status}), expected a rejection")
                continue
            assert isinstance(expected, Expect)
            failures += _check_outcome(f"{state} × {command}", after, expected, before, now)
        assert not failures, "\n".join(failures)


def _check_state(state: str, view: EnrollmentView) -> list[str]:
    expected_status = state.split("+")[0].split("(")[0]
    if view.status != expected_status:
        return [f"setup of {state} reached {view.status} ({view.pause_reason})"]
    return []


def _check_outcome(cell: str, after: EnrollmentView, expected: Expect, before: EnrollmentView, now) -> list[str]:
    problems = []
    if after.status is not expected.status or after.pause_reason is not expected.reason:
        problems.append(f"{cell}: {after.status}/{after.pause_reason}, expected {expected.status}/{expected.reason}")
    pending = after.pending_change.quantity if after.pending_change else None
    if (after.quantity, pending) != (expected.quantity, expected.pending):
        problems.append(f"{cell}: quantity {after.quantity}, pending {pending}; expected {expected}")
    scheduled = after.scheduled.kind if after.scheduled else None
    if scheduled != expected.scheduled:
        problems.append(f"{cell}: scheduled {scheduled}, expected {expected.scheduled}")
    if expected.expires == "period_end":
        latest = before.periods[-1]
        if after.expires != latest.end:
            problems.append(f"{cell}: expires {after.expires}, expected the period end {latest.end}")
    elif expected.expires == "now" and (after.expires is None or abs((after.expires - now).total_seconds()) > 60):
        problems.append(f"{cell}: expires {after.expires}, expected about {now}")
    return problems
