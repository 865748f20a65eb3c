"""Metered billing in arrears: usage rules and billing in the store (PostgreSQL and SQLite), the adapter,
the ``usage record`` command, and the real workflow on the time-skipping server (SQLite)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.faults import FaultPoint, fault_injector
from activities.persistence import (
    EnrollmentNotFound,
    MakeOrder,
    Store,
    UsageConflict,
    UsageRefused,
    create_engine,
    session_factory,
)
from activities.persistence.migrate import downgrade_async, upgrade_async
from adapters.base import EnrollmentContext, EnrollmentServices
from adapters.builtin import BUILTIN_ADAPTERS, director_from_names
from adapters.domain import (
    BillingInterval,
    ConfigurationEntry,
    Enrollment,
    EnrollmentStatus,
    EnrollmentTerms,
    Order,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PauseReason,
    PeriodWindow,
    Product,
    ProductPlan,
    StatusChange,
    UsageCalculationType,
)
from adapters.lifecycle import EnrollmentView, workflow_id_for
from adapters.metered import MeteredAdapter
from starter.cli import app
from starter.client import EnrollmentNotFound as ClientEnrollmentNotFound
from starter.client import EnrollmentsClient
from tests.conftest import Databases
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

T0 = datetime(2031, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(seconds=1)
DAY = timedelta(days=1)
METERED_DAILY = ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.DAYS)
METERED = Product(id="api-calls", plan=METERED_DAILY)
LICENSED = Product(id="seat", plan=ProductPlan(billing_interval=BillingInterval.DAYS))


async def _enroll(store: Store, enrollment_id: str = "m-1", product: Product = METERED) -> None:
    await store.products.upsert(product, now=NOW)
    await store.enrollments.create(
        enrollment_id,
        EnrollmentTerms(user_id="u", product_id=product.id),
        anchor=T0,
        adapter_key=MeteredAdapter.key,
        now=NOW,
        status=EnrollmentStatus.ACTIVE,
    )


def _day(n: int) -> PeriodWindow:
    return PeriodWindow(start=T0 + n * DAY, end=T0 + (n + 1) * DAY)


def _usage_order(enrollment_id: str = "m-1") -> MakeOrder:
    """A make_order for bill_period that bills the units used in the window (None for none)."""

    async def make(window: PeriodWindow, services: EnrollmentServices) -> OrderConfiguration | None:
        units = await services.usage_units(enrollment_id, window.start, window.end)
        if units == 0:
            return None
        position = OrderPosition(product_id=METERED.id, original_product_id=METERED.id, quantity=units)
        return OrderConfiguration(period=window, order_position_templates=[position])

    return make


# --- store: usage rules and billing (both databases) --------------------------------------------------


async def test_usage_is_refused_where_it_can_never_be_billed(store: Store) -> None:
    with pytest.raises(EnrollmentNotFound):
        await store.usage.record("m-1", 1, "k", T0, now=NOW)
    await _enroll(store)
    record = store.usage.record
    with pytest.raises(UsageRefused, match=r"before the enrollment starts \(2031-03-01T00:00:00Z\)"):
        await record("m-1", 1, "early", T0 - timedelta(seconds=1), now=NOW)
    assert await record("m-1", 1, "no-period-yet", T0 + timedelta(hours=1), now=NOW) is True
    await store.billing.add_period("m-1", _day(0), None, now=NOW)
    with pytest.raises(UsageRefused, match="before the enrollment's first period starts"):
        await record("m-1", 1, "early", T0 - timedelta(seconds=1), now=NOW)
    assert await record("m-1", 2, "in-period", T0 + timedelta(hours=2), now=NOW) is True
    assert await record("m-1", 0, "zero", T0 + timedelta(hours=3), now=NOW) is True
    assert await record("m-1", 5, "next-period", T0 + DAY + timedelta(hours=1), now=NOW) is True
    with pytest.raises(ValueError, match=r"from 0 to 9223372036854775807 \(2\^63 - 1\)"):
        await record("m-1", -1, "negative", T0, now=NOW)
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        await record("m-1", 1, "naive", T0.replace(tzinfo=None), now=NOW)
    # A gap between periods (a pause whose resume anchored a new schedule) is covered by no period.
    await store.billing.add_period("m-1", _day(3), None, now=NOW)
    with pytest.raises(UsageRefused, match=r"no period covers 2031-03-03T12:00:00Z \(the enrollment was paused"):
        await record("m-1", 1, "gap", T0 + 2 * DAY + timedelta(hours=12), now=NOW)
    # Manually paused: nothing after its latest period will be billed.
    await store.enrollments.change_status(
        "m-1",
        StatusChange(
            status=EnrollmentStatus.PAUSED, event_key="p", at=NOW, info="paused", pause_reason=PauseReason.MANUAL
        ),
    )
    with pytest.raises(UsageRefused, match=r"PAUSED \(manual\)"):
        await record("m-1", 1, "paused", T0 + 4 * DAY + timedelta(hours=1), now=NOW)
    assert await record("m-1", 1, "paused-in-period", T0 + 3 * DAY + timedelta(hours=1), now=NOW) is True
    # Terminated: nothing from expires on.
    await store.enrollments.change_status(
        "m-1",
        StatusChange(
            status=EnrollmentStatus.TERMINATED, event_key="t", at=NOW, info="terminated", expires=T0 + 3 * DAY + DAY / 2
        ),
    )
    with pytest.raises(UsageRefused, match="not before the enrollment's expiry 2031-03-04T12:00:00Z"):
        await record("m-1", 1, "expired", T0 + 3 * DAY + DAY / 2, now=NOW)
    assert await record("m-1", 1, "before-expiry", T0 + 3 * DAY + timedelta(hours=11), now=NOW) is True
    # Only METERED plans take usage.
    await _enroll(store, "licensed-1", LICENSED)
    with pytest.raises(UsageRefused, match="has a LICENSED plan; usage is recorded for METERED plans only"):
        await record("licensed-1", 1, "k", T0 + timedelta(hours=1), now=NOW)


async def test_keys_are_idempotent_and_conflicts_are_named(store: Store) -> None:
    await _enroll(store)
    await store.billing.add_period("m-1", _day(0), None, now=NOW)
    at = T0 + timedelta(hours=1)
    assert await store.usage.record("m-1", 3, "batch-1", at, now=NOW) is True
    assert await store.usage.record("m-1", 3, "batch-1", at + timedelta(hours=1), now=NOW) is False
    with pytest.raises(UsageConflict, match="'batch-1' of enrollment 'm-1' was recorded with 3 units, not 4"):
        await store.usage.record("m-1", 4, "batch-1", at, now=NOW)
    assert await store.usage.units("m-1", T0, T0 + DAY) == 3


async def test_bill_period_is_idempotent_and_closes_the_period(store: Store) -> None:
    await _enroll(store)
    for n in range(3):
        await store.billing.add_period("m-1", _day(n), None, now=NOW)
    await store.usage.record("m-1", 4, "a", T0 + timedelta(hours=1), now=NOW)
    await store.usage.record("m-1", 3, "b", T0 + DAY - timedelta(microseconds=1), now=NOW)
    await store.usage.record("m-1", 9, "c", T0 + DAY, now=NOW)  # the next period's first instant
    billed_at = T0 + DAY + timedelta(minutes=1)
    period, order = await store.billing.bill_period("m-1", T0, _usage_order(), now=billed_at)
    assert order is not None and order.positions[0].quantity == 7 and order.period_start == T0
    assert (period.order_id, period.order_status, period.billed_at) == (order.id, OrderStatus.PENDING, billed_at)

    async def must_not_be_called(window: PeriodWindow, services: EnrollmentServices) -> OrderConfiguration | None:
        raise AssertionError("a billed period is not billed again")

    later = billed_at + timedelta(hours=1)
    assert await store.billing.bill_period("m-1", T0, must_not_be_called, now=later) == (period, order)
    assert len(await store.billing.list_orders("m-1")) == 1
    # Late usage for the billed period is refused; a repeat of an accepted record still succeeds.
    with pytest.raises(UsageRefused, match=r"late: the period \[2031-03-01T00:00:00\+00:00, .* was billed at"):
        await store.usage.record("m-1", 1, "late", T0 + timedelta(hours=5), now=later)
    assert await store.usage.record("m-1", 4, "a", T0 + timedelta(hours=1), now=later) is False
    # No usage: the period is closed without an order.
    empty, none = await store.billing.bill_period("m-1", _day(2).start, _usage_order(), now=later)
    assert none is None and empty.order_id is None and empty.billed_at == later
    snapshot = await store.enrollments.get("m-1")
    assert snapshot is not None
    assert [p.billed_at for p in snapshot.periods] == [billed_at, None, later]
    with pytest.raises(ValueError, match="has no period starting at 2031-03-09T00:00:00Z"):
        await store.billing.bill_period("m-1", T0 + 8 * DAY, _usage_order(), now=later)

    async def wrong_window(window: PeriodWindow, services: EnrollmentServices) -> OrderConfiguration | None:
        position = OrderPosition(product_id=METERED.id, original_product_id=METERED.id, quantity=1)
        return OrderConfiguration(period=_day(5), order_position_templates=[position])

    with pytest.raises(ValueError, match="does not bill period"):
        await store.billing.bill_period("m-1", _day(1).start, wrong_window, now=later)
    assert (await store.enrollments.get("m-1")).periods[1].billed_at is None  # type: ignore[union-attr]


async def test_usage_waits_for_a_running_billing_and_is_then_refused(store: Store, database_url: str) -> None:
    """No unit slips between the total a billing reads and the moment the period is closed."""
    await _enroll(store)
    await store.billing.add_period("m-1", _day(0), None, now=NOW)
    await store.usage.record("m-1", 4, "before", T0 + timedelta(hours=1), now=NOW)
    summed, release = asyncio.Event(), asyncio.Event()
    make = _usage_order()

    async def slow_make(window: PeriodWindow, services: EnrollmentServices) -> OrderConfiguration | None:
        order = await make(window, services)
        summed.set()
        await release.wait()
        return order

    engine = create_engine(database_url)
    other = Store.over(session_factory(engine))
    try:
        billing = asyncio.create_task(store.billing.bill_period("m-1", T0, slow_make, now=T0 + DAY))
        await asyncio.wait_for(summed.wait(), 10)
        racing = asyncio.create_task(other.usage.record("m-1", 5, "racing", T0 + timedelta(hours=2), now=NOW))
        await asyncio.sleep(0.3)
        assert not racing.done(), "usage for the enrollment waits while its billing holds the lock"
        release.set()
        _, order = await billing
        with pytest.raises(UsageRefused, match="late"):
            await racing
    finally:
        await engine.dispose()
    assert order is not None and order.positions[0].quantity == 4


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_migration_0002_adds_and_drops_billed_at(test_databases: Databases, backend: str) -> None:
    url = await test_databases.scratch_url(backend)
    await upgrade_async(url, "0001")
    engine = create_engine(url)
    try:
        store = Store.over(session_factory(engine))
        await upgrade_async(url)
        await _enroll(store)
        await store.billing.add_period("m-1", _day(0), None, now=NOW)
        await store.billing.bill_period("m-1", T0, _usage_order(), now=T0 + DAY)
        assert (await store.enrollments.get("m-1")).periods[0].billed_at == T0 + DAY  # type: ignore[union-attr]
        await downgrade_async(url, "0001")
        await upgrade_async(url)
        snapshot = await store.enrollments.get("m-1")
        assert snapshot is not None and snapshot.periods[0].billed_at is None and len(snapshot.periods) == 1
    finally:
        await engine.dispose()


# --- the adapter (no database: the usage service is a dict) -------------------------------------------------


class _Usage:
    def __init__(self, units: int) -> None:
        self.units = units
        self.windows: list[tuple[datetime, datetime]] = []

    async def find_order(self, order_id: str) -> Order | None:
        return None

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        self.windows.append((start, end))
        return self.units


def _adapter(now: datetime, units: int, *, expires: datetime | None = None) -> tuple[MeteredAdapter, _Usage]:
    enrollment = Enrollment(
        id="m-1",
        user_id="u",
        product_id=METERED.id,
        anchor=T0,
        status=EnrollmentStatus.ACTIVE,
        expires=expires,
        configuration=[ConfigurationEntry(key="tier", value="gold"), ConfigurationEntry(key="usageUnits", value="x")],
    )
    usage = _Usage(units)
    return MeteredAdapter(EnrollmentContext(enrollment=enrollment, product=METERED, now=now, services=usage)), usage


async def test_metered_adapter_orders_the_units_of_an_ended_period() -> None:
    assert MeteredAdapter.bills_in_arrears and BUILTIN_ADAPTERS["metered"] is MeteredAdapter
    assert MeteredAdapter.is_activated_for(METERED_DAILY) and not MeteredAdapter.is_activated_for(LICENSED.plan)  # type: ignore[arg-type]
    running, usage = _adapter(T0 + DAY / 2, 7)
    assert await running.configuration_for_order(_day(0)) is None and usage.windows == []
    trial = PeriodWindow(start=T0, end=T0 + DAY, is_trial=True)
    ended, usage = _adapter(T0 + DAY, 7)
    assert await ended.configuration_for_order(trial) is None
    order = await ended.configuration_for_order(_day(0))
    assert order is not None and usage.windows == [(T0, T0 + DAY)]
    (position,) = order.order_position_templates
    assert (position.product_id, position.original_product_id, position.quantity) == (METERED.id, METERED.id, 7)
    assert [(entry.key, entry.value) for entry in position.configuration] == [
        ("tier", "gold"),
        ("usageUnits", "7"),
        ("periodStart", "2031-03-01T00:00:00Z"),
        ("periodEnd", "2031-03-02T00:00:00Z"),
    ]
    assert order.order_context == {
        "usageUnits": 7,
        "periodStart": "2031-03-01T00:00:00Z",
        "periodEnd": "2031-03-02T00:00:00Z",
    }
    empty, _ = _adapter(T0 + DAY, 0)
    assert await empty.configuration_for_order(_day(0)) is None
    # Terminated mid-period: the service ended at expires, so the usage window does too.
    cut, usage = _adapter(T0 + DAY / 2, 3, expires=T0 + DAY / 4)
    order = await cut.configuration_for_order(_day(0))
    assert order is not None and usage.windows == [(T0, T0 + DAY / 4)] and order.period.end == T0 + DAY
    assert order.order_context["periodEnd"] == "2031-03-01T06:00:00Z"


# --- the command line ----------------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_usage_record_command(store: Store, database_url: str) -> None:
    await _enroll(store)
    await store.billing.add_period("m-1", _day(0), None, now=NOW)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["--database-url", database_url, "usage", "record", *args])

    at = "--at=2031-03-01T05:00:00+02:00"
    result = await asyncio.to_thread(run, "m-1", "--units", "3", "--key", "k1", at, "--json")
    stored = {"enrollment_id": "m-1", "key": "k1", "units": 3, "at": "2031-03-01T03:00:00Z"}
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**stored, "recorded": True}
    result = await asyncio.to_thread(run, "m-1", "--units", "3", "--key", "k1", at)
    assert result.exit_code == 0 and "duplicate" in result.output
    # A repeat reports the record as stored: its time, not the repeat's; the enrollment's number works too.
    enrolled = await store.enrollments.get("m-1")
    assert enrolled is not None and enrolled.number is not None
    later = "--at=2031-03-01T09:00:00Z"
    repeat = await asyncio.to_thread(run, enrolled.number, "--units", "3", "--key", "k1", later, "--json")
    assert repeat.exit_code == 0, repeat.output
    assert json.loads(repeat.stdout) == {**stored, "recorded": False}
    cases = [
        (["m-1", "--units", "4", "--key", "k1", at], 1, "was recorded with 3 units, not 4"),
        (["nope", "--units", "1", "--key", "k2", at], 1, "enrollment 'nope' not found"),
        (["m-1", "--units", "1", "--key", "k3", "--at", "2031-02-01T00:00:00Z"], 1, "is refused: "),
        (["m-1", "--units", "1", "--key", "k4", "--at", "2031-03-01T05:00:00"], 2, "has no UTC offset"),
        (["m-1", "--units", "-1", "--key", "k5", at], 2, "--units': must be at least 0"),
        (["m-1", "--units", "1", "--key", " ", at], 2, "--key: must not be empty"),
        (
            ["m-1", "--units", "99999999999999999999", "--key", "k6", at],
            2,
            "usage units must be an integer from 0 to 9223372036854775807 (2^63 - 1)",
        ),
    ]
    for args, exit_code, message in cases:
        result = await asyncio.to_thread(run, *args)
        assert (result.exit_code, message in result.output) == (exit_code, True), (args, result.output)
    assert await store.usage.units("m-1", T0, T0 + DAY) == 3


# --- the workflow (time-skipping server) ---------------------------------------------------------------------


async def _now(env: WorkflowEnvironment) -> datetime:
    return await env.get_current_time()


def _soon_after(moment: datetime, billed_at: datetime | None) -> bool:
    """The workflow bills when its timer for ``moment`` fires: at ``moment`` or a few milliseconds later."""
    return billed_at is not None and moment <= billed_at < moment + timedelta(seconds=5)


@SQLITE_ONLY
async def test_metered_enrollment_is_billed_in_arrears(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, METERED.id, METERED_DAILY)
    async with running_worker(env, database_url, director=director_from_names(["licensed", "metered"])) as (
        client,
        _,
    ):
        enrollment_id = await client.create_enrollment(
            product_id=METERED.id, user_id="u", configuration=[{"key": "tier", "value": "gold"}]
        )
        view = await client.get_enrollment(enrollment_id)
        assert view.adapter_key == MeteredAdapter.key and view.orders == []
        first = view.periods[0]
        assert first.order_id is None and first.billed_at is None
        assert view.next_wake_up == first.end
        now = await _now(env)
        assert await client.record_usage(enrollment_id, 3, "req-1", at=now) is True
        assert await client.record_usage(enrollment_id, 4, "req-2", at=now + timedelta(hours=1)) is True
        assert await client.record_usage(enrollment_id, 3, "req-1", at=now) is False, "same key: one record"
        with pytest.raises(UsageConflict, match="recorded with 3 units, not 30"):
            await client.record_usage(enrollment_id, 30, "req-1", at=now)
        assert await client.is_valid_for_activation(enrollment_id, now)

        await env.sleep(first.end - await _now(env) + timedelta(hours=1))
        view = await client.get_enrollment(enrollment_id)
        billed, running = view.periods
        (order,) = view.orders
        assert billed.order_id == order.id and _soon_after(first.end, billed.billed_at)
        assert (order.period_start, order.period_end, order.positions[0].quantity) == (first.start, first.end, 7)
        configuration = {entry.key: entry.value for entry in order.positions[0].configuration}
        assert configuration["tier"] == "gold" and configuration["usageUnits"] == "7"
        assert running.order_id is None and running.start == first.end
        # Late usage for the billed period is refused, with the reason.
        with pytest.raises(UsageRefused, match="late: the period"):
            await client.record_usage(enrollment_id, 1, "late-1", at=first.end - timedelta(minutes=1))
        # The arrears order is the workflow's own: paying it goes through the usual command.
        paid = await client.order_status_changed(order.id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)
        assert paid.orders[0].status is OrderStatus.CONFIRMED and paid.periods[0].order_status is OrderStatus.CONFIRMED

        # No usage in the second period: it is closed without an order.
        await env.sleep(running.end - await _now(env) + timedelta(hours=1))
        view = await client.get_enrollment(enrollment_id)
        assert len(view.orders) == 1 and view.periods[1].order_id is None
        assert _soon_after(running.end, view.periods[1].billed_at)
        third = view.periods[2]
        await client.record_usage(enrollment_id, 2, "req-3", at=await _now(env))

        # Terminated (default): access and billing run to the period's end; then the last order, then done.
        terminated = await client.terminate(enrollment_id, reason="moving on")
        assert terminated.status is EnrollmentStatus.TERMINATED and terminated.expires == third.end
        assert terminated.next_wake_up == third.end
        await client.record_usage(enrollment_id, 5, "req-4", at=third.end - timedelta(seconds=1))
        with pytest.raises(UsageRefused, match="expiry"):
            await client.record_usage(enrollment_id, 1, "req-5", at=third.end)
        handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id), result_type=EnrollmentView)
        await env.sleep(third.end - await _now(env) + timedelta(hours=1))
        final = await handle.result()  # the workflow completed once the last period was billed
        assert [order.positions[0].quantity for order in final.orders] == [7, 7]
        assert final.orders[-1].period_start == third.start and len(final.periods) == 3
        assert all(period.billed_at is not None for period in final.periods)
        with pytest.raises(ClientEnrollmentNotFound):
            await client.record_usage("no-such-enrollment", 1, "k", at=third.start)


@SQLITE_ONLY
async def test_paused_and_immediately_terminated_metered_enrollments_are_still_billed(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, METERED.id, METERED_DAILY)
    async with running_worker(env, database_url, director=director_from_names(["metered"])) as (client, _):
        paused = await client.create_enrollment(product_id=METERED.id, user_id="u")
        cut = await client.create_enrollment(product_id=METERED.id, user_id="u")
        period = (await client.get_enrollment(paused)).periods[0]
        now = await _now(env)
        await client.record_usage(paused, 6, "p-1", at=now)
        await client.record_usage(cut, 2, "c-1", at=now)
        await env.sleep(timedelta(hours=6))
        await client.pause(paused, reason="holiday")
        view = await client.terminate(cut, immediately=True)
        expires = view.expires
        assert expires is not None and view.next_wake_up == view.periods[0].end
        with pytest.raises(UsageRefused, match="expiry"):
            await client.record_usage(cut, 1, "c-2", at=expires + timedelta(minutes=1))
        await env.sleep(period.end - await _now(env) + timedelta(hours=2))

        view = await client.get_enrollment(paused)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.MANUAL)
        assert len(view.periods) == 1 and [order.positions[0].quantity for order in view.orders] == [6]
        assert view.next_wake_up is None, "nothing left to bill while paused"
        with pytest.raises(UsageRefused, match=r"PAUSED \(manual\)"):
            await client.record_usage(paused, 1, "p-2", at=await _now(env))
        final = await env.client.get_workflow_handle(workflow_id_for(cut), result_type=EnrollmentView).result()
        (order,) = final.orders
        assert order.positions[0].quantity == 2 and order.context["periodEnd"] == expires.isoformat().replace(
            "+00:00", "Z"
        )


@SQLITE_ONLY
async def test_billing_retried_after_its_commit_creates_one_order(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, METERED.id, METERED_DAILY)
    fault_injector.arm(FaultPoint.AFTER_COMMIT, times=6, spacing=1)
    try:
        async with running_worker(env, database_url, director=director_from_names(["metered"])) as (client, _):
            enrollment_id = await client.create_enrollment(product_id=METERED.id, user_id="u")
            start = await _now(env)
            for day in range(3):  # usage ahead of its period is accepted: the period is not made yet
                await client.record_usage(enrollment_id, day + 1, f"d{day}", at=start + day * DAY)
            await env.sleep(3 * DAY + timedelta(hours=1))
            view = await client.pause(enrollment_id)
    finally:
        fired = fault_injector.fired.get(FaultPoint.AFTER_COMMIT, 0)
        fault_injector.disarm()
    assert fired >= 4, "activities crashed after their commits, billing ones among them"
    engine = create_engine(database_url)
    try:
        orders = await Store.over(session_factory(engine)).billing.list_orders(enrollment_id)
    finally:
        await engine.dispose()
    assert [order.positions[0].quantity for order in orders] == [1, 2, 3]
    assert [order.id for order in view.orders] == [order.id for order in orders]
    assert [period.order_id for period in view.periods] == [*(order.id for order in orders), None]


async def test_client_without_a_database_cannot_record_usage() -> None:
    client = EnrollmentsClient(client=None, database_url=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a client with a database_url"):
        await client.record_usage("m-1", 1, "k")
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        await client.record_usage("m-1", 1, "k", at=datetime(2031, 1, 1))
