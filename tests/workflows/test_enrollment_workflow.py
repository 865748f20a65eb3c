"""EnrollmentWorkflow over simulated years on the time-skipping server, with the real activities."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from activities.faults import FaultPoint, fault_injector
from activities.persistence import Store, create_engine, session_factory
from adapters.calendar import preview
from adapters.director import EnrollmentDirector
from adapters.domain import (
    BillingInterval,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderStatus,
    PauseReason,
    Product,
    ProductPlan,
    ProductType,
    UsageCalculationType,
)
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import (
    KEPT_PERIODS,
    EnrollmentView,
    MessageName,
    PauseCommand,
    TerminateCommand,
    workflow_id_for,
)
from starter.client import EnrollmentCommandRejected, EnrollmentNotFound, EnrollmentsClient
from tests.support.overdue_adapter import OverdueAfterOneDayAdapter
from tests.support.temporal_env import add_product, running_worker
from workflows.enrollment import EnrollmentWorkflow
from workflows.enrollment_state import DEFAULT_PERIODS_PER_RUN, EnrollmentWorkflowInput

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)


def _starts(view: EnrollmentView) -> list[datetime]:
    return [period.start for period in view.periods]


async def _stored(database_url: str, enrollment_id: str):
    engine = create_engine(database_url)
    try:
        store = Store.over(session_factory(engine))
        return await store.enrollments.get(enrollment_id), await store.billing.list_orders(enrollment_id)
    finally:
        await engine.dispose()


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("interval", "count", "timezone", "horizon"),
    [
        (BillingInterval.MINUTES, 30, "UTC", timedelta(hours=5)),
        (BillingInterval.HOURS, 6, "Europe/Zurich", timedelta(days=3)),
        (BillingInterval.DAYS, 1, "America/New_York", timedelta(days=20)),
        (BillingInterval.WEEKS, 2, "Australia/Sydney", timedelta(days=120)),
        (BillingInterval.MONTHS, 1, "Europe/Zurich", timedelta(days=800)),
        (BillingInterval.YEARS, 1, "Asia/Tokyo", timedelta(days=5 * 366)),
    ],
)
async def test_every_interval_follows_the_anchored_schedule(
    time_skipping_env, database_url, interval, count, timezone, horizon
):
    env = time_skipping_env
    plan = ProductPlan(billing_interval=interval, billing_interval_count=count)
    await add_product(database_url, "p", plan)
    async with running_worker(env, database_url) as (client, _):
        start = (await env.get_current_time()) + timedelta(minutes=1)
        enrollment_id = await client.create_enrollment(product_id="p", user_id="u", timezone=timezone, start=start)
        await env.sleep(horizon)
        view = await client.get_enrollment(enrollment_id)
        expected = preview(plan, view.anchor, timezone, len(view.periods) + 1)
        assert [(p.start, p.end) for p in view.periods] == [(w.start, w.end) for w in expected[:-1]]
        now = await env.get_current_time()
        assert view.periods[-1].start <= now < view.periods[-1].end, "every due period exists, none early"
        assert all(period.order_id for period in view.periods)
        stored, orders = await _stored(database_url, enrollment_id)
        assert stored is not None and len(stored.periods) == len(view.periods)
        assert len(orders) == len(view.periods) == len({order.period_start for order in orders})


@SQLITE_ONLY
async def test_trial_then_month_end_leap_day_and_dst(time_skipping_env, database_url):
    env = time_skipping_env
    plan = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=1
    )
    await add_product(database_url, "p", plan)
    async with running_worker(env, database_url) as (client, _):
        now = await env.get_current_time()
        # Midnight in Zurich on 30 Jan of the next leap year: the trial ends on 31 Jan, billing anchors there.
        year = next(y for y in range(now.year + 1, now.year + 6) if y % 4 == 0)
        start = datetime(year, 1, 29, 23, tzinfo=UTC)
        enrollment_id = await client.create_enrollment(
            product_id="p",
            user_id="u",
            timezone="Europe/Zurich",
            start=start,
            configuration=[{"key": "k", "value": "v"}],
        )
        assert (await client.get_enrollment(enrollment_id)).status is EnrollmentStatus.INITIAL
        assert not await client.is_valid_for_activation(enrollment_id, start - timedelta(hours=1))
        await env.sleep(datetime(year, 8, 1, tzinfo=UTC) - await env.get_current_time())
        view = await client.get_enrollment(enrollment_id)
        trial, *billing = view.periods
        assert trial.is_trial and trial.order_id is None
        assert trial.end == datetime(year, 1, 30, 23, tzinfo=UTC)
        local_starts = [(p.start.astimezone(_zurich()).month, p.start.astimezone(_zurich()).day) for p in billing]
        assert local_starts[:6] == [(1, 31), (2, 29), (3, 31), (4, 30), (5, 31), (6, 30)]
        assert all(p.start.astimezone(_zurich()).hour == 0 for p in billing), "local midnight kept across DST"
        assert {p.start.hour for p in billing} == {22, 23}, "UTC hour moves with DST"
        assert all(order.positions[0].configuration[0].key == "k" for order in view.orders)
        assert len(view.orders) == len(billing)


def _zurich() -> ZoneInfo:
    return ZoneInfo("Europe/Zurich")


@SQLITE_ONLY
async def test_pause_resume_and_new_anchor(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="p", user_id="u")
        first = (await client.get_enrollment(enrollment_id)).periods[0]
        await env.sleep(timedelta(days=3))
        # Resumed while the period still runs: the schedule continues unchanged.
        await client.pause(enrollment_id, reason="holiday")
        assert not await client.is_valid_for_activation(enrollment_id, await env.get_current_time())
        await client.resume(enrollment_id)
        await env.sleep(first.end - await env.get_current_time() + timedelta(hours=1))
        view = await client.get_enrollment(enrollment_id)
        assert _starts(view) == [first.start, first.end]
        # Paused past the period end: nothing is created while paused; resume anchors a new schedule.
        await client.pause(enrollment_id)
        await env.sleep(timedelta(days=70))
        assert len((await client.get_enrollment(enrollment_id)).periods) == 2
        resumed_at = await env.get_current_time()
        view = await client.resume(enrollment_id, reason="back")
        assert view.status is EnrollmentStatus.ACTIVE
        assert abs((view.anchor - resumed_at).total_seconds()) < 5
        assert view.periods[-1].start == view.anchor and len(view.periods) == 3
        assert await client.is_valid_for_activation(enrollment_id, await env.get_current_time())
        assert [entry.info for entry in view.log][-3:] == ["resumed", "paused", "resumed: back"]


@SQLITE_ONLY
async def test_pause_at_period_end_and_withdrawal(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        withdrawn = await client.create_enrollment(product_id="p", user_id="u")
        paused = await client.create_enrollment(product_id="p", user_id="u")
        end = (await client.get_enrollment(paused)).periods[0].end
        for enrollment_id in (withdrawn, paused):
            view = await client.pause(enrollment_id, at_period_end=True)
            assert view.status is EnrollmentStatus.ACTIVE and view.scheduled
            assert view.scheduled.at == view.periods[0].end
        await client.resume(withdrawn)
        await env.sleep(end - await env.get_current_time() + timedelta(days=1))
        assert len((await client.get_enrollment(withdrawn)).periods) == 2
        view = await client.get_enrollment(paused)
        assert view.status is EnrollmentStatus.PAUSED and view.pause_reason is PauseReason.MANUAL
        assert len(view.periods) == 1 and view.log[-1].at == end


@SQLITE_ONLY
async def test_terminate_default_at_period_end_and_immediately(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        ids = [await client.create_enrollment(product_id="p", user_id="u") for _ in range(4)]
        default, at_end, immediate, paid_immediate = ids
        end = (await client.get_enrollment(default)).periods[0].end
        paid_order = (await client.get_enrollment(paid_immediate)).orders[0]
        await client.order_status_changed(paid_order.id, OrderStatus.CONFIRMED, enrollment_id=paid_immediate)
        at_end_period_end = (await client.get_enrollment(at_end)).periods[0].end
        await env.sleep(timedelta(days=2))
        now = await env.get_current_time()
        view = await client.terminate(default, reason="moved away")
        assert view.status is EnrollmentStatus.TERMINATED and view.expires == end
        assert await client.is_valid_for_activation(default, end - timedelta(seconds=1))
        assert not await client.is_valid_for_activation(default, end)
        assert [order.status for order in view.orders] == [OrderStatus.PENDING], "the period is served: still due"
        view = await client.terminate(immediate, immediately=True)
        assert view.expires is not None and abs((view.expires - now).total_seconds()) < 5
        assert not await client.is_valid_for_activation(immediate, await env.get_current_time())
        # Cut short: its unpaid order is rejected (nothing left to collect); a paid one stays paid.
        assert [order.status for order in view.orders] == [OrderStatus.REJECTED]
        assert [order.status for order in (await _stored(database_url, immediate))[1]] == [OrderStatus.REJECTED]
        view = await client.terminate(paid_immediate, immediately=True)
        assert [order.status for order in view.orders] == [OrderStatus.CONFIRMED]
        await client.terminate(at_end, at_period_end=True)
        await env.sleep(at_end_period_end - await env.get_current_time() + timedelta(days=40))
        view = await client.get_enrollment(at_end)
        assert view.status is EnrollmentStatus.TERMINATED and view.expires == at_end_period_end
        assert len(view.periods) == 1
        # Completed workflows still answer queries; commands get a clear error.
        with pytest.raises(EnrollmentCommandRejected, match="TERMINATED"):
            await client.resume(default)
        stored, _ = await _stored(database_url, default)
        assert stored is not None and stored.status is EnrollmentStatus.TERMINATED and stored.expires == end


@SQLITE_ONLY
async def test_overdue_pause_keeps_billing_and_payment_reactivates(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "weekly", ProductPlan(billing_interval=BillingInterval.WEEKS))
    director = EnrollmentDirector([OverdueAfterOneDayAdapter, LicensedAdapter])
    async with running_worker(env, database_url, director=director) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="weekly", user_id="u")
        await env.sleep(timedelta(days=2))
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        assert not await client.is_valid_for_activation(enrollment_id, await env.get_current_time())
        await env.sleep(timedelta(days=14))
        view = await client.get_enrollment(enrollment_id)
        assert len(view.periods) == 3 and len(view.orders) == 3, "overdue-paused enrollments keep being billed"
        view = await client.order_status_changed(view.orders[-1].id, OrderStatus.REJECTED, enrollment_id=enrollment_id)
        assert view.status is EnrollmentStatus.PAUSED, "a rejected order keeps it paused"
        view = await client.order_status_changed(view.orders[1].id, OrderStatus.CONFIRMED)  # looked up in the database
        assert view.status is EnrollmentStatus.PAUSED, "paying an older order does not settle the latest"
        fresh = await client.create_enrollment(product_id="weekly", user_id="u2")
        await env.sleep(timedelta(days=2))
        latest = (await client.get_enrollment(fresh)).orders[-1]
        view = await client.order_status_changed(latest.id, OrderStatus.CONFIRMED, enrollment_id=fresh)
        assert view.status is EnrollmentStatus.ACTIVE and view.log[-1].info == "payment received"
        assert view.orders[-1].status is OrderStatus.CONFIRMED
        assert view.periods[-1].order_status is OrderStatus.CONFIRMED


@SQLITE_ONLY
async def test_registration_errors_are_clear_and_create_is_idempotent(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    await add_product(
        database_url,
        "metered",
        ProductPlan(billing_interval=BillingInterval.MONTHS, usage_calculation_type=UsageCalculationType.METERED),
    )
    engine = create_engine(database_url)
    await Store.over(session_factory(engine)).products.upsert(
        Product(id="book", type=ProductType.SIMPLE_PRODUCT), now=datetime.now(UTC)
    )
    await engine.dispose()
    async with running_worker(env, database_url) as (client, _):
        cases = {"missing": "ProductNotFound", "book": "NotAPlanProduct", "metered": "NoAdapterForPlan"}
        for product_id, error_type in cases.items():
            with pytest.raises(EnrollmentCommandRejected) as caught:
                await client.create_enrollment(product_id=product_id, user_id="u")
            assert caught.value.error_type == error_type and product_id in str(caught.value)
        first = await client.create_enrollment(product_id="p", user_id="u", enrollment_id="same")
        again = await client.create_enrollment(product_id="p", user_id="u", enrollment_id="same")
        assert first == again == "same"
        view = await client.get_enrollment("same")
        assert len(view.periods) == 1 and len(view.orders) == 1
        with pytest.raises(EnrollmentCommandRejected, match="different terms"):
            await client.create_enrollment(product_id="p", user_id="someone-else", enrollment_id="same")
        with pytest.raises(ValueError, match="timezone"):
            await client.create_enrollment(product_id="p", user_id="u", timezone="Mars/Olympus")
        with pytest.raises(ValueError, match="start must be timezone-aware"):
            await client.create_enrollment(product_id="p", user_id="u", start=datetime(2031, 1, 1))
        for call in (
            client.get_enrollment("nope"),
            client.pause("nope"),
            client.is_valid_for_activation("nope"),
        ):
            with pytest.raises(EnrollmentNotFound, match="'nope'"):
                await call


@SQLITE_ONLY
async def test_activity_retried_after_its_commit_duplicates_nothing(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", ProductPlan(billing_interval=BillingInterval.DAYS))
    fault_injector.arm(FaultPoint.AFTER_COMMIT, times=6, spacing=1)
    try:
        async with running_worker(env, database_url) as (client, _):
            enrollment_id = await client.create_enrollment(product_id="p", user_id="u")
            await env.sleep(timedelta(days=10, hours=1))
            await client.pause(enrollment_id)
            view = await client.get_enrollment(enrollment_id)
    finally:
        fired = fault_injector.fired.get(FaultPoint.AFTER_COMMIT, 0)
        fault_injector.disarm()
    assert fired == 6, "every armed fault crashed an activity after its commit"
    stored, orders = await _stored(database_url, enrollment_id)
    assert stored is not None
    assert len(stored.periods) == len(view.periods) == 11
    assert len(orders) == 11 == len({order.period_start for order in orders})
    assert [entry.info for entry in stored.log].count("paused") == 1


async def _histories(client: Client, workflow_id: str, first_run_id: str):
    """Every run's history, following continue-as-new from the first run."""
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        yield history
        last = history.events[-1]
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )


@SQLITE_ONLY
async def test_continue_as_new_carries_state_and_loses_no_message(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", ProductPlan(billing_interval=BillingInterval.DAYS))
    async with running_worker(env, database_url) as (client, _):
        terms = EnrollmentTerms(product_id="p", user_id="u")
        handle: WorkflowHandle[EnrollmentWorkflow, EnrollmentView] = await env.client.start_workflow(
            EnrollmentWorkflow.run,
            EnrollmentWorkflowInput(enrollment_id="can", terms=terms, periods_per_run=2),
            id=workflow_id_for("can"),
            task_queue=client.task_queue,
        )
        first_run_id = handle.first_execution_run_id or handle.result_run_id
        # A second either side of the day boundaries, where runs continue as new. (Exactly on a boundary the
        # time-skipping test server rejects a task that cancels a timer firing in the same instant.)
        start = (await handle.execute_update(MessageName.REGISTRATION_UPDATE, result_type=EnrollmentView)).anchor
        for day in range(1, 9):
            boundary = start + timedelta(days=day)
            offset = timedelta(seconds=-1 if day % 2 else 1)
            await env.sleep(boundary + offset - await env.get_current_time())
            signal = MessageName.PAUSE_SIGNAL if day % 2 else MessageName.RESUME_SIGNAL
            await handle.signal(signal, PauseCommand() if day % 2 else {})
        await env.sleep(timedelta(hours=1))
        view = await client.get_enrollment("can")
        pauses = [entry.info for entry in view.log if entry.info.startswith(("paused", "resumed"))]
        assert pauses == ["paused", "resumed"] * 4, "every signal was applied exactly once"
        assert first_run_id is not None
        runs = [history async for history in _histories(env.client, workflow_id_for("can"), first_run_id)]
        assert len(runs) >= 3, "the workflow continued as new"
        stored, orders = await _stored(database_url, "can")
        assert stored is not None and len(stored.periods) == len(view.periods) == len(orders)


@SQLITE_ONLY
async def test_ten_years_monthly_keeps_each_run_small(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="p", user_id="u")
        await env.sleep(timedelta(days=3653))
        view = await client.get_enrollment(enrollment_id)
        handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
        first = (
            (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes.first_execution_run_id
        )
        runs = [history async for history in _histories(env.client, workflow_id_for(enrollment_id), first)]
    sizes = [len(history.events) for history in runs]
    assert max(sizes) < 1000, sizes
    steady = runs[1:-1]
    per_period = sum(len(history.events) for history in steady) / (DEFAULT_PERIODS_PER_RUN * len(steady))
    assert per_period <= 8, f"{per_period:.1f} history events per period"
    upserts = [_count(run, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) for run in steady]
    assert max(upserts) <= 1, f"EnrollmentNextPeriodAt is opt-in: no upsert per period ({upserts} per run)"

    stored, orders = await _stored(database_url, enrollment_id)
    assert stored is not None and len(stored.periods) == len(orders) == 121, "the database keeps every period"
    # The workflow carries the recent history only: its view ends like the database and each run's input
    # (the state continued as new) stops growing once the enrollment has more periods than it carries.
    assert view.history_trimmed
    assert KEPT_PERIODS <= len(view.periods) < KEPT_PERIODS + DEFAULT_PERIODS_PER_RUN
    assert view.periods == stored.periods[-len(view.periods) :]
    assert {order.id for order in view.orders} == {period.order_id for period in view.periods}
    inputs = [len(run.events[0].workflow_execution_started_event_attributes.input.payloads[0].data) for run in runs]
    carried = inputs[1:]  # from the second run on, every run starts with KEPT_PERIODS periods
    assert max(carried) - min(carried) < 0.05 * min(carried), inputs


@SQLITE_ONLY
async def test_orders_older_than_the_carried_history_are_checked_in_the_database(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", ProductPlan(billing_interval=BillingInterval.DAYS))
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="p", user_id="u")
        other = await client.create_enrollment(product_id="p", user_id="v")
        await env.sleep(timedelta(days=KEPT_PERIODS + 26, hours=1))
        stored, orders = await _stored(database_url, enrollment_id)
        view = await client.get_enrollment(enrollment_id)
        oldest = orders[0]
        assert view.history_trimmed and oldest.id not in {order.id for order in view.orders}

        # Access in a period the workflow no longer carries: the workflow cannot see it, the database can.
        assert stored is not None
        moment = stored.periods[0].start + timedelta(hours=1)
        handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
        assert view.period_at(moment) is None
        assert await handle.query(MessageName.ACCESS_QUERY, moment, result_type=bool) is False
        assert await client.is_valid_for_activation(enrollment_id, moment)
        assert await client.is_valid_for_activation(view.number or "", moment), "by number too"
        assert not await client.is_valid_for_activation(enrollment_id, stored.periods[0].start - timedelta(hours=1))

        await client.order_status_changed(oldest.id, OrderStatus.CONFIRMED)
        await client.order_status_changed(oldest.id, OrderStatus.FULFILLED)
        with pytest.raises(EnrollmentCommandRejected, match=r"is FULFILLED and cannot become PENDING"):
            await client.order_status_changed(oldest.id, OrderStatus.PENDING)
        _, foreign = await _stored(database_url, other)
        with pytest.raises(EnrollmentCommandRejected, match=rf"is not an order of enrollment '{enrollment_id}'"):
            await client.order_status_changed(foreign[0].id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)
        # A signal that cannot be applied is logged and ignored: the enrollment goes on.
        await handle.signal(MessageName.ORDER_STATUS_SIGNAL, {"order_id": foreign[0].id, "status": "REJECTED"})
        await env.sleep(timedelta(days=2))
        after = await client.get_enrollment(enrollment_id)
    assert after.status is EnrollmentStatus.ACTIVE and after.periods[-1].start > view.periods[-1].start
    _, orders = await _stored(database_url, enrollment_id)
    _, foreign = await _stored(database_url, other)
    assert orders[0].status is OrderStatus.FULFILLED and orders[1].status is OrderStatus.PENDING
    assert foreign[0].status is OrderStatus.PENDING


@SQLITE_ONLY
async def test_a_command_after_a_boundary_is_applied_after_that_boundary(dev_server_env, database_url):
    """The start boundary and a later terminate reach the workflow in one task (its worker was down):
    the enrollment must start (first period, order) before it terminates, not terminate as INITIAL."""
    env = dev_server_env
    await add_product(database_url, "p", MONTHLY)
    task_queue = f"boundary-{uuid.uuid4().hex[:8]}"
    async with running_worker(env, database_url, task_queue=task_queue) as (client, _):
        start = datetime.now(UTC) + timedelta(seconds=6)  # still ahead after a slow create on a busy machine
        enrollment_id = await client.create_enrollment(product_id="p", user_id="u", start=start)
        assert (await client.get_enrollment(enrollment_id)).status is EnrollmentStatus.INITIAL
    await asyncio.sleep((start - datetime.now(UTC)).total_seconds() + 1)  # the start passes, no worker
    handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id), result_type=EnrollmentView)
    await handle.signal(MessageName.TERMINATE_SIGNAL, TerminateCommand(reason="changed my mind"))
    async with running_worker(env, database_url, task_queue=task_queue) as (client, _):
        view = await handle.result()
    assert view.status is EnrollmentStatus.TERMINATED
    assert len(view.periods) == 1 and view.periods[0].start == start.replace(microsecond=start.microsecond)
    assert len(view.orders) == 1
    assert view.expires == view.periods[0].end, "access runs to the end of the period that started first"
    assert [entry.info for entry in view.log][-2:] == ["started", "terminated: changed my mind"]


def _count(history: Any, event_type: int) -> int:
    return sum(1 for event in history.events if event.event_type == event_type)


@SQLITE_ONLY
async def test_the_next_period_attribute_is_opt_in(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "p", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        plain = await client.create_enrollment(product_id="p", user_id="u")
        opted = EnrollmentsClient(
            env.client, task_queue=client.task_queue, database_url=database_url, next_period_attribute=True
        )
        try:
            published = await opted.create_enrollment(product_id="p", user_id="u")
        finally:
            await opted.close()
        await env.sleep(timedelta(days=95))
        counts = {}
        for enrollment_id in (plain, published):
            history = await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).fetch_history()
            counts[enrollment_id] = sum(
                1
                for event in history.events
                if "EnrollmentNextPeriodAt"
                in event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            )
    assert counts[plain] == 0, "no upsert of EnrollmentNextPeriodAt unless asked for"
    assert counts[published] == 1 + 3, "set with the first period, then at each of the three renewals"
