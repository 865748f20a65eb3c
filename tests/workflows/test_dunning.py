"""Dunning on the live workflow (time-skipping server, SQLite): each action, both declines, partial payments,
a payment in the same instant as a step, several orders in dunning at once, and a workflow rebuilt from the
database keeping its schedules."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from activities.persistence import open_store
from adapters.domain import BillingInterval, EnrollmentStatus, OrderStatus, PauseReason, Price, ProductPlan
from adapters.dunning import StepStatus
from adapters.dunning_policy import DunningPolicy
from adapters.events import DunningStepTaken, EventType
from adapters.lifecycle import EnrollmentView, MessageName, PaymentCommand, workflow_id_for
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
CHF = [Price(currency="CHF", amount=3000)]


def _plan(*steps: tuple[str, str], interval: BillingInterval = BillingInterval.MONTHS, count: int = 1) -> ProductPlan:
    policy = DunningPolicy.model_validate({"steps": [{"after": after, "action": action} for after, action in steps]})
    return ProductPlan(billing_interval=interval, billing_interval_count=count, prices=CHF, dunning=policy)


async def _until(env, moment: datetime) -> None:
    await env.sleep(moment - await env.get_current_time())


async def _events(client: EnrollmentsClient, enrollment_id: str, *types: EventType) -> list[tuple[str, dict[str, Any]]]:
    page = await client.events(enrollment_id=enrollment_id, types=list(types) or None, limit=1000)
    return [(event.type, event.data) for event in page.events]


def _steps(view: EnrollmentView) -> list[tuple[str, StepStatus]]:
    (entry,) = view.dunning
    return [(str(step.action), step.status) for step in entry.steps]


@SQLITE_ONLY
async def test_each_action_runs_at_its_time_with_its_events(time_skipping_env, database_url):
    env = time_skipping_env
    policy = (("P1D", "remind"), ("P3D", "retry_payment"), ("P7D", "pause"), ("P30D", "terminate"))
    await add_product(database_url, "dunned", _plan(*policy, interval=BillingInterval.DAYS, count=40))
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="dunned", user_id="u", currency_code="CHF")
        view = await client.get_enrollment(enrollment_id)
        (order,) = view.orders
        (entry,) = view.dunning
        due = view.periods[0].start
        assert (entry.order_id, entry.due_at, entry.open_balance, entry.currency) == (order.id, due, 3000, "CHF")
        assert [step.at for step in entry.steps] == [due + DAY, due + 3 * DAY, due + 7 * DAY, due + 30 * DAY]
        assert view.next_wake_up == due + DAY, "it wakes for the first step"

        await _until(env, due + DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert view.log[-1].info == f"dunning step 1 of 4 for order {order.number}: remind (open 3000 CHF)"
        assert view.status is EnrollmentStatus.ACTIVE and view.next_wake_up == due + 3 * DAY
        await _until(env, due + 3 * DAY + HOUR)
        await _until(env, due + 7 * DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        assert [entry.info for entry in view.log[-2:]] == [
            f"dunning step 3 of 4 for order {order.number}: pause (open 3000 CHF)",
            "payment overdue",
        ]
        assert not await client.is_valid_for_activation(enrollment_id, await env.get_current_time()), "blocked"
        assert _steps(view) == [
            ("remind", StepStatus.DONE),
            ("retry_payment", StepStatus.DONE),
            ("pause", StepStatus.DONE),
            ("terminate", StepStatus.PENDING),
        ]
        with pytest.raises(EnrollmentCommandRejected, match="resumes when its order is paid"):
            await client.resume(enrollment_id)

        await _until(env, due + 30 * DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert view.status is EnrollmentStatus.TERMINATED and view.log[-1].info == "terminated: unpaid"
        assert view.expires is not None and due + 30 * DAY <= view.expires < due + 30 * DAY + HOUR, "expires now"
        assert view.dunning == [] and view.orders[0].status is OrderStatus.REJECTED, "the cut-short period's order"

        steps = await _events(client, enrollment_id, EventType.DUNNING_STEP)
        taken = [DunningStepTaken.model_validate(data) for _, data in steps]
        assert [(step.order_id, step.index, step.action) for step in taken] == [
            (order.id, 0, "remind"),
            (order.id, 1, "retry_payment"),
            (order.id, 2, "pause"),
            (order.id, 3, "terminate"),
        ]
        notices = await _events(
            client, enrollment_id, EventType.DUNNING_REMINDER_DUE, EventType.DUNNING_PAYMENT_RETRY_DUE
        )
        assert [(kind, data["index"], data["open_balance"]) for kind, data in notices] == [
            ("dunning.reminder_due", 0, 3000),
            ("dunning.payment_retry_due", 1, 3000),
        ]
        changes = await _events(client, enrollment_id, EventType.ENROLLMENT_STATUS_CHANGED)
        assert [(data["to"], data["reason"]) for _, data in changes] == [
            ("PAUSED", "payment overdue"),
            ("TERMINATED", "terminated: unpaid"),
        ]


@SQLITE_ONLY
async def test_a_soft_decline_changes_nothing_and_a_hard_one_skips_the_retries(time_skipping_env, database_url):
    env = time_skipping_env
    plan = _plan(("P1D", "remind"), ("P2D", "retry_payment"), ("P4D", "retry_payment"), ("P7D", "pause"))
    await add_product(database_url, "dunned", plan)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="dunned", user_id="u", currency_code="CHF")
        view = await client.get_enrollment(enrollment_id)
        (order,) = view.orders
        due = view.periods[0].start

        await _until(env, due + DAY + HOUR)
        view = await client.report_payment(order.number, failed="soft", code="insufficient_funds")
        assert view.log[-1].info == f"payment for order {order.number} declined (soft, code insufficient_funds)"
        assert _steps(view)[1:] == [
            ("retry_payment", StepStatus.PENDING),
            ("retry_payment", StepStatus.PENDING),
            ("pause", StepStatus.PENDING),
        ]
        assert view.next_wake_up == due + 2 * DAY, "a soft decline changes no step"

        await _until(env, due + 2 * DAY + HOUR)
        view = await client.report_payment(order.id, failed="hard")
        assert view.log[-1].info.endswith("declined (hard): its remaining retry_payment steps are skipped")
        assert _steps(view) == [
            ("remind", StepStatus.DONE),
            ("retry_payment", StepStatus.DONE),
            ("retry_payment", StepStatus.SKIPPED),
            ("pause", StepStatus.PENDING),
        ]
        assert view.next_wake_up == due + 7 * DAY, "the pause keeps its time"

        await _until(env, due + 7 * DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        view = await client.report_payment(order.id, received=3000)
        assert view.status is EnrollmentStatus.ACTIVE and view.log[-1].info == "payment received"
        assert view.dunning == [] and view.orders[0].status is OrderStatus.CONFIRMED
        failed = await _events(client, enrollment_id, EventType.ORDER_PAYMENT_FAILED)
        assert [(data["decline"], data["code"]) for _, data in failed] == [
            ("soft", "insufficient_funds"),
            ("hard", None),
        ]
        retries = await _events(client, enrollment_id, EventType.DUNNING_PAYMENT_RETRY_DUE)
        assert [data["index"] for _, data in retries] == [1], "the skipped retry emitted nothing"


@SQLITE_ONLY
async def test_partial_payments_lower_the_balance_and_skip_no_step(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "dunned", _plan(("P1D", "remind"), ("P2D", "pause"), ("P5D", "terminate")))
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="dunned", user_id="u", currency_code="CHF")
        other_id = await client.create_enrollment(product_id="dunned", user_id="u", currency_code="CHF")
        view = await client.get_enrollment(enrollment_id)
        (order,) = view.orders
        other_order = (await client.get_enrollment(other_id)).orders[0]
        due = view.periods[0].start

        view = await client.report_payment(order.id, received=1000)
        assert view.dunning[0].open_balance == 2000 and view.orders[0].status is OrderStatus.PENDING
        assert view.log[-1].info == f"payment of 1000 CHF for order {order.number}: 2000 CHF open"
        # Bad input: a clear error naming the order, and nothing written.
        events_before = await _events(client, enrollment_id)
        with pytest.raises(
            EnrollmentCommandRejected, match=rf"above the open balance of order {order.number} .*: 2000"
        ):
            await client.report_payment(order.id, received=2001)
        with pytest.raises(EnrollmentCommandRejected, match=rf"order '{other_order.id}' is not an order of"):
            await client.report_payment(other_order.id, received=10, enrollment_id=enrollment_id)
        assert await _events(client, enrollment_id) == events_before
        assert (await client.get_enrollment(enrollment_id)).log == view.log

        await _until(env, due + 2 * DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE), "not skipped"
        assert [step.status for step in view.dunning[0].steps][:2] == [StepStatus.DONE, StepStatus.DONE]
        view = await client.report_payment(order.id, received=1500)
        assert view.status is EnrollmentStatus.PAUSED and view.dunning[0].open_balance == 500
        view = await client.report_payment(order.id, received=500)
        assert view.status is EnrollmentStatus.ACTIVE and view.dunning == []
        assert view.orders[0].status is OrderStatus.CONFIRMED
        with pytest.raises(EnrollmentCommandRejected, match="is CONFIRMED: it has nothing open to pay"):
            await client.report_payment(order.id, received=1)

        await _until(env, due + 5 * DAY + HOUR)
        assert (await client.get_enrollment(enrollment_id)).status is EnrollmentStatus.ACTIVE, "its steps cancelled"
        other = await client.get_enrollment(other_id)
        assert other.status is EnrollmentStatus.TERMINATED, "the other enrollment of the same user ran its own"
        received = await _events(client, enrollment_id, EventType.ORDER_PAYMENT_RECEIVED)
        assert [(data["amount"], data["open_balance"]) for _, data in received] == [(1000, 2000), (1500, 500), (500, 0)]


async def _signal_payment(env, enrollment_id: str, order_id: str) -> None:
    handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
    await handle.signal(MessageName.PAYMENT_SIGNAL, PaymentCommand(order_id=order_id, received=3000))


async def _once_logged(client: EnrollmentsClient, enrollment_id: str, start: str) -> EnrollmentView:
    """The enrollment once its log has an entry starting with ``start`` (a query may answer before the task that
    the new worker takes has run)."""
    for _ in range(200):
        view = await client.get_enrollment(enrollment_id)
        if any(entry.info.startswith(start) for entry in view.log):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"{enrollment_id} has no log entry {start!r}: {view.log}")


@SQLITE_ONLY
async def test_a_payment_in_the_same_instant_as_a_pause_or_terminate_step_wins(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "pauses", _plan(("P2D", "pause")))
    await add_product(database_url, "terminates", _plan(("P2D", "terminate")))
    queue = "enrollments-race"
    async with running_worker(env, database_url, task_queue=queue, max_cached_workflows=0) as (client, _):
        pays = await client.create_enrollment(product_id="pauses", user_id="u1", currency_code="CHF")
        pays_late = await client.create_enrollment(product_id="pauses", user_id="u2", currency_code="CHF")
        ends = await client.create_enrollment(product_id="terminates", user_id="u3", currency_code="CHF")
        views = {key: await client.get_enrollment(key) for key in (pays, pays_late, ends)}
        steps = [view.dunning[0].steps[0].at for view in views.values()]
    # No worker: the steps fall due (the server's clock runs in real time for the last seconds, since it cannot
    # skip time past a workflow task nobody takes) and the payments arrive; the workflow sees both at one instant.
    await _until(env, min(steps) - timedelta(seconds=2))
    await asyncio.sleep((max(steps) + timedelta(milliseconds=500) - await env.get_current_time()).total_seconds())
    await _signal_payment(env, pays, views[pays].orders[0].id)
    await _signal_payment(env, ends, views[ends].orders[0].id)
    async with running_worker(env, database_url, task_queue=queue) as (client, _):
        paid = await _once_logged(client, pays, "payment of")
        assert paid.status is EnrollmentStatus.ACTIVE and paid.dunning == []
        assert "payment overdue" not in [entry.info for entry in paid.log], "the pause did not happen"
        ended = await _once_logged(client, ends, "payment of")
        assert ended.status is EnrollmentStatus.ACTIVE and ended.orders[0].status is OrderStatus.CONFIRMED
        for key in (pays, ends):
            assert await _events(client, key, EventType.DUNNING_STEP) == []
        late = await _once_logged(client, pays_late, "payment overdue")
        assert (late.status, late.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        view = await client.report_payment(late.orders[0].id, received=3000)
        assert view.status is EnrollmentStatus.ACTIVE and view.log[-1].info == "payment received"


@SQLITE_ONLY
async def test_several_orders_in_dunning_each_run_their_own_schedule(time_skipping_env, database_url):
    env = time_skipping_env
    plan = _plan(("P1D", "remind"), ("P2D", "pause"), ("P20D", "terminate"), interval=BillingInterval.DAYS, count=3)
    await add_product(database_url, "every-3-days", plan)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="every-3-days", user_id="u", currency_code="CHF")
        due = (await client.get_enrollment(enrollment_id)).periods[0].start
        await _until(env, due + 5 * DAY + HOUR)  # the first order paused it; the second is due since day 3
        view = await client.get_enrollment(enrollment_id)
        first, second = view.orders
        assert [entry.order_id for entry in view.dunning] == [first.id, second.id]
        assert [entry.paused for entry in view.dunning] == [True, True], "both pause steps ran (day 2 and day 5)"
        assert [entry.next_step.at for entry in view.dunning if entry.next_step] == [due + 20 * DAY, due + 23 * DAY]
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)

        view = await client.report_payment(first.id, received=3000)
        assert view.status is EnrollmentStatus.PAUSED, "the second order still holds the pause"
        assert [entry.order_id for entry in view.dunning] == [second.id]
        view = await client.order_status_changed(second.id, OrderStatus.CONFIRMED)
        assert view.status is EnrollmentStatus.ACTIVE and view.log[-1].info == "payment received"
        assert view.dunning == [], "CONFIRMED ends the schedule as a full payment does"
        reminded = await _events(client, enrollment_id, EventType.DUNNING_REMINDER_DUE)
        assert [data["order_id"] for _, data in reminded] == [first.id, second.id]


@SQLITE_ONLY
async def test_a_workflow_rebuilt_from_the_database_keeps_its_schedules(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "dunned", _plan(("P1D", "remind"), ("P3D", "pause")))
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(
            product_id="dunned", user_id="u", currency_code="CHF", enrollment_id="rebuilt"
        )
        view = await client.get_enrollment(enrollment_id)
        due, order = view.periods[0].start, view.orders[0]
        await _until(env, due + DAY + HOUR)
        await client.report_payment(order.id, received=1000)
        # The workflow is gone (an operator's Terminate) while the database still has the enrollment running.
        await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).terminate(reason="lost")
        assert (
            await client.create_enrollment(
                product_id="dunned", user_id="u", currency_code="CHF", enrollment_id="rebuilt"
            )
            == enrollment_id
        )
        rebuilt = await client.get_enrollment(enrollment_id)
        (entry,) = rebuilt.dunning
        assert (entry.open_balance, entry.steps_done, entry.next_step) == (2000, 1, entry.steps[1])
        assert rebuilt.next_wake_up == due + 3 * DAY
        await _until(env, due + 3 * DAY + HOUR)
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        async with open_store(database_url, create_missing=False) as store:
            (stored,) = await store.dunning.open_for(enrollment_id)
        assert stored == view.dunning[0] and stored.paused
