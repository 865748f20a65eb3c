"""Every order status transition, through the update and through the signal, on the real workflow; and what
a status change does to an enrollment that is PAUSED because payment is overdue (time-skipping, SQLite).

The rules (workflows/transitions.py): PENDING → CONFIRMED | FULFILLED | REJECTED, CONFIRMED → FULFILLED |
REJECTED, FULFILLED and REJECTED are final; the status an order already has is accepted and changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.domain import (
    ORDER_STATUS_TRANSITIONS,
    BillingInterval,
    EnrollmentStatus,
    OrderStatus,
    PauseReason,
    ProductPlan,
)
from adapters.lifecycle import EnrollmentView, MessageName, OrderStatusCommand, workflow_id_for
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PENDING, CONFIRMED, FULFILLED, REJECTED = OrderStatus
# How to bring a fresh PENDING order into each status (every step itself a valid transition).
PATHS: dict[OrderStatus, list[OrderStatus]] = {
    PENDING: [],
    CONFIRMED: [CONFIRMED],
    FULFILLED: [CONFIRMED, FULFILLED],
    REJECTED: [REJECTED],
}
ALLOWED = {
    (PENDING, CONFIRMED),
    (PENDING, FULFILLED),
    (PENDING, REJECTED),
    (CONFIRMED, FULFILLED),
    (CONFIRMED, REJECTED),
}


def test_the_rules_are_the_documented_ones() -> None:
    table = {(old, new) for old, targets in ORDER_STATUS_TRANSITIONS.items() for new in targets}
    assert table == ALLOWED and set(ORDER_STATUS_TRANSITIONS) == set(OrderStatus)


async def _signal_then_sync(env, client: EnrollmentsClient, enrollment_id: str, order_id: str, status: OrderStatus):
    """Send ``status`` as a signal; a pause update queued behind it returns once the signal was handled."""
    handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
    await handle.signal(MessageName.ORDER_STATUS_SIGNAL, OrderStatusCommand(order_id=order_id, status=status))
    return await client.pause(enrollment_id, reason="sync")


async def _cell(
    env, client: EnrollmentsClient, store: Store, old: OrderStatus, new: OrderStatus, channel: str
) -> list[str]:
    """One transition on a fresh enrollment: its order brought to ``old``, then ``new`` sent by ``channel``."""
    cell = f"{old} → {new} by {channel}"
    enrollment_id = await client.create_enrollment(product_id="monthly", user_id="u")
    (order,) = (await client.get_enrollment(enrollment_id)).orders
    for step in PATHS[old]:
        await client.order_status_changed(order.id, step, enrollment_id=enrollment_id)
    allowed = old is new or (old, new) in ALLOWED
    expected = new if allowed else old
    failures = []
    if channel == "update":
        try:
            view = await client.order_status_changed(order.id, new, enrollment_id=enrollment_id)
        except EnrollmentCommandRejected as error:
            if allowed:
                failures.append(f"{cell}: rejected ({error})")
            elif f"is {old} and cannot become {new}" not in str(error):
                failures.append(f"{cell}: unclear rejection {error}")
            view = await client.get_enrollment(enrollment_id)
        else:
            if not allowed:
                failures.append(f"{cell}: accepted")
    else:
        view = await _signal_then_sync(env, client, enrollment_id, order.id, new)
    stored = await store.billing.get_order(order.id)
    seen = (view.orders[0].status, view.periods[0].order_status, stored.status if stored else None)
    if seen != (expected, expected, expected):
        failures.append(f"{cell}: workflow/period/database say {seen}, expected {expected}")
    return failures


@SQLITE_ONLY
async def test_every_order_status_transition_by_update_and_by_signal(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "monthly", ProductPlan(billing_interval=BillingInterval.MONTHS))
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    cells = list(itertools.product(OrderStatus, OrderStatus, ("update", "signal")))
    try:
        async with running_worker(env, database_url) as (client, _):
            results = await asyncio.gather(
                *(_cell(env, client, store, old, new, channel) for old, new, channel in cells)
            )
    finally:
        await engine.dispose()
    failures = [failure for result in results for failure in result]
    assert len(cells) == 32 and not failures, "\n".join(failures)


@SQLITE_ONLY
async def test_order_status_on_an_overdue_pause(time_skipping_env, database_url):
    """Paid (CONFIRMED or FULFILLED) → ACTIVE; REJECTED or still PENDING → stays PAUSED (overdue)."""
    env = time_skipping_env
    plan = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=1
    )
    await add_product(database_url, "trial-monthly", plan)
    director = director_from_names(["trial_grace", "licensed"])
    cases = list(itertools.product(OrderStatus, ("update", "signal")))
    async with running_worker(env, database_url, director=director) as (client, _):
        ids = [await client.create_enrollment(product_id="trial-monthly", user_id="u") for _ in cases]
        await env.sleep(timedelta(days=8, hours=1))  # one day of trial, seven of grace
        failures: list[str] = []
        for (status, channel), enrollment_id in zip(cases, ids, strict=True):
            before = await client.get_enrollment(enrollment_id)
            if (before.status, before.pause_reason) != (EnrollmentStatus.PAUSED, PauseReason.OVERDUE):
                failures.append(f"{status} by {channel}: setup reached {before.status} ({before.pause_reason})")
                continue
            order_id = before.orders[-1].id
            if channel == "update":
                view = await client.order_status_changed(order_id, status, enrollment_id=enrollment_id)
                outcome = (view.status, view.pause_reason)
            else:
                handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
                await handle.signal(
                    MessageName.ORDER_STATUS_SIGNAL, OrderStatusCommand(order_id=order_id, status=status)
                )
                # The same status once more as an update (accepted, changes nothing) waits for the signal.
                view = await handle.execute_update(
                    MessageName.ORDER_STATUS_UPDATE,
                    OrderStatusCommand(order_id=order_id, status=status),
                    result_type=EnrollmentView,
                )
                outcome = (view.status, view.pause_reason)
            paid = status in (CONFIRMED, FULFILLED)
            expected = (EnrollmentStatus.ACTIVE, None) if paid else (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
            if outcome != expected:
                failures.append(f"{status} by {channel}: {outcome}, expected {expected}")
            if paid and view.log[-1].info != "payment received":
                failures.append(f"{status} by {channel}: log says {view.log[-1].info!r}")
            valid = await client.is_valid_for_activation(enrollment_id, await env.get_current_time())
            if valid is not paid:
                failures.append(f"{status} by {channel}: access {valid}, expected {paid}")
        assert not failures, "\n".join(failures)
