"""Plan, quantity and terms changes on the real workflow: prorated orders, new periods, changes at period end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.checkup import Checkup
from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, Price, Product, ProductPlan, ProductType, UsageCalculationType
from adapters.events import EventType
from adapters.lifecycle import ChangeCommand, ErrorType, workflow_id_for
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker
from workflows.details import render_details

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def monthly(amount: int, **fields: object) -> ProductPlan:
    return ProductPlan.model_validate(
        {"billing_interval": BillingInterval.MONTHS, "prices": [Price(currency="CHF", amount=amount)], **fields}
    )


async def products(database_url: str) -> None:
    await add_product(database_url, "basic", monthly(3000))
    await add_product(database_url, "pro", monthly(6200))
    await add_product(
        database_url,
        "pro-yearly",
        ProductPlan(billing_interval=BillingInterval.YEARS, prices=[Price(currency="CHF", amount=60000)]),
    )
    await add_product(database_url, "free", ProductPlan(billing_interval=BillingInterval.MONTHS))


async def sleep_until(env: WorkflowEnvironment, moment: datetime) -> None:
    await env.sleep(moment - await env.get_current_time())


async def enrolled(
    env: WorkflowEnvironment, client: EnrollmentsClient, product_id: str = "basic"
) -> tuple[str, datetime]:
    year = (await env.get_current_time()).year + 1
    start = datetime(year, 1, 1, tzinfo=UTC)
    enrollment_id = await client.create_enrollment(product_id=product_id, user_id="u", start=start)
    await sleep_until(env, start + timedelta(days=15))
    return enrollment_id, start


def lines(order) -> list[tuple[str, int, int | None, int | None]]:
    return [(line.product_id, line.quantity, line.unit_amount, line.amount) for line in order.positions]


@SQLITE_ONLY
async def test_an_upgrade_now_is_prorated_by_seconds_and_equals_its_preview(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, start = await enrolled(env, client)
        at = start + timedelta(days=15)
        preview = await client.preview_change(enrollment_id, product_id="pro", at=at)
        assert preview.order is not None and preview.total == 1652
        view = await client.change_enrollment(enrollment_id, product_id="pro", at=at)
        assert (view.product_id, view.anchor) == ("pro", start)
        _, adjustment = view.orders
        assert (adjustment.period_start, adjustment.period_end) == (at, datetime(start.year, 2, 1, tzinfo=UTC))
        assert lines(adjustment) == [("basic", 1, 3000, -1548), ("pro", 1, 6200, 3200)]
        assert (adjustment.currency, adjustment.total) == ("CHF", 1652)
        assert lines(adjustment) == [
            (line.product_id, line.quantity, line.unit_amount, line.amount)
            for line in preview.order.order_position_templates
        ]
        assert view.log[-1].info.startswith("changed product basic → pro")
        await sleep_until(env, datetime(start.year, 2, 2, tzinfo=UTC))
        view = await client.get_enrollment(enrollment_id)
        assert lines(view.orders[-1]) == [("pro", 1, 6200, 6200)], "the next period is on the new plan"
        page = await client.events(enrollment_id=enrollment_id, types=[EventType.ENROLLMENT_CHANGED])
        assert [event.data["product_id"] for event in page.events] == ["pro"]


@SQLITE_ONLY
async def test_a_change_of_interval_starts_a_new_period_and_credits_what_was_charged(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, start = await enrolled(env, client)
        at = start + timedelta(days=15)
        view = await client.change_enrollment(enrollment_id, product_id="pro-yearly", quantity=2, at=at)
        assert view.anchor == at
        assert [(period.start, period.end) for period in view.periods] == [
            (start, at),
            (at, at.replace(year=at.year + 1)),
        ]
        assert lines(view.orders[-1]) == [("basic", 1, 3000, -1548), ("pro-yearly", 2, 60000, 120000)]
        assert view.orders[-1].total == 118452


@SQLITE_ONLY
async def test_changes_at_period_end_are_pending_withdrawable_and_replaced(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, start = await enrolled(env, client, "pro")
        end = datetime(start.year, 2, 1, tzinfo=UTC)
        view = await client.change_enrollment(enrollment_id, product_id="basic", when="period_end")
        assert view.pending_change is not None and view.pending_change.at == end
        assert (view.product_id, len(view.orders)) == ("pro", 1)
        view = await client.change_enrollment(enrollment_id, cancel=True)
        assert view.pending_change is None
        with pytest.raises(EnrollmentCommandRejected, match="has no change pending at period end to withdraw"):
            await client.change_enrollment(enrollment_id, cancel=True)
        await client.change_enrollment(enrollment_id, quantity=5, when="period_end")
        view = await client.change_enrollment(enrollment_id, product_id="basic", quantity=3, when="period_end")
        assert view.pending_change is not None and view.pending_change.quantity == 3
        assert "**Change at period end:** basic × 3 at 2" in render_details(view)
        upcoming = await client.upcoming(enrollment_id)
        assert upcoming.period is not None and upcoming.period.start == end
        assert (upcoming.product_id, upcoming.quantity, upcoming.total) == ("basic", 3, 9000)
        await sleep_until(env, end + timedelta(hours=1))
        view = await client.get_enrollment(enrollment_id)
        assert (view.product_id, view.quantity, view.pending_change) == ("basic", 3, None)
        assert lines(view.orders[-1]) == [("basic", 3, 3000, 9000)]


async def stored_rows(database_url: str, enrollment_id: str) -> tuple[Any, ...]:
    """What the database holds for the enrollment: its row's plan fields, periods, orders, log, events."""
    engine = create_engine(database_url)
    try:
        store = Store.over(session_factory(engine))
        enrollment = await store.enrollments.get(enrollment_id)
        assert enrollment is not None
        orders = await store.billing.list_orders(enrollment_id)
        events = await store.events.page(enrollment_id=enrollment_id, limit=1000)
        plan = (enrollment.product_id, enrollment.quantity, enrollment.anchor, enrollment.pending_change)
        return plan, enrollment.periods, orders, len(enrollment.log), len(events.events)
    finally:
        await engine.dispose()


@SQLITE_ONLY
async def test_bad_changes_are_refused_and_write_nothing(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    await add_product(
        database_url,
        "metered",
        ProductPlan(
            billing_interval=BillingInterval.MONTHS,
            usage_calculation_type=UsageCalculationType.METERED,
            prices=[Price(currency="CHF", amount=5)],
        ),
    )
    await add_product(
        database_url,
        "euro",
        ProductPlan(billing_interval=BillingInterval.MONTHS, prices=[Price(currency="EUR", amount=100)]),
    )
    engine = create_engine(database_url)
    await Store.over(session_factory(engine)).products.upsert(
        Product(id="t-shirt", type=ProductType.SIMPLE_PRODUCT), now=datetime.now(UTC)
    )
    await engine.dispose()
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, _ = await enrolled(env, client)
        before = await stored_rows(database_url, enrollment_id)
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"product_id": "nope"}, ErrorType.PRODUCT_NOT_FOUND, "product 'nope' does not exist"),
            ({"product_id": "t-shirt"}, ErrorType.NOT_A_PLAN_PRODUCT, "is a SIMPLE_PRODUCT, not a PLAN_PRODUCT"),
            ({"product_id": "euro"}, ErrorType.NO_PRICE, r"product 'euro' has no price in CHF \(it has EUR\)"),
            ({"product_id": "free"}, ErrorType.NO_PRICE, "'free' has no prices, so a change to it cannot be prorated"),
            ({"product_id": "metered"}, ErrorType.INVALID_CHANGE, "LICENSED plan and product 'metered' is METERED"),
        ]
        for kwargs, error_type, message in cases:
            with pytest.raises(EnrollmentCommandRejected, match=message) as refused:
                await client.change_enrollment(enrollment_id, **kwargs)
            assert refused.value.error_type == error_type
            # The workflow refuses it the same way when the client does not check first.
            with pytest.raises(EnrollmentCommandRejected, match=message):
                await client.send(enrollment_id, ChangeCommand(**kwargs))
        with pytest.raises(ValidationError, match="quantity"):
            await client.change_enrollment(enrollment_id, quantity=0)
        with pytest.raises(ValidationError, match="proration applies to changes now, not to changes at period end"):
            await client.change_enrollment(enrollment_id, quantity=2, when="period_end", proration="none")
        with pytest.raises(EnrollmentCommandRejected, match="cannot take effect in the future"):
            await client.change_enrollment(enrollment_id, quantity=2, at=datetime.now(UTC) + timedelta(days=3650))
        assert await stored_rows(database_url, enrollment_id) == before
        await client.terminate(enrollment_id, immediately=True)
        with pytest.raises(EnrollmentCommandRejected, match="is TERMINATED; it accepts no change") as refused:
            await client.change_enrollment(enrollment_id, quantity=2)
        assert refused.value.error_type == ErrorType.INVALID_TRANSITION
        description = await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).describe()
        assert description.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)


@SQLITE_ONLY
async def test_a_metered_change_now_bills_the_usage_so_far_on_the_old_plan(time_skipping_env, database_url):
    env = time_skipping_env
    metered = {"billing_interval": BillingInterval.MONTHS, "usage_calculation_type": UsageCalculationType.METERED}
    await add_product(
        database_url, "calls", ProductPlan.model_validate({**metered, "prices": [Price(currency="CHF", amount=10)]})
    )
    await add_product(
        database_url, "calls-pro", ProductPlan.model_validate({**metered, "prices": [Price(currency="CHF", amount=7)]})
    )
    director = director_from_names(["licensed", "metered"])
    async with running_worker(env, database_url, director=director) as (client, _):
        enrollment_id, start = await enrolled(env, client, "calls")
        at = start + timedelta(days=15)
        await client.record_usage(enrollment_id, 40, "before", at=start + timedelta(days=3))
        preview = await client.preview_change(enrollment_id, product_id="calls-pro", at=at)
        view = await client.change_enrollment(enrollment_id, product_id="calls-pro", at=at)
        end = datetime(start.year, 2, 1, tzinfo=UTC)
        assert [(period.start, period.end) for period in view.periods] == [(start, at), (at, end)]
        (billed,) = view.orders
        assert lines(billed) == [("calls", 40, 10, 400)] and billed.total == preview.total == 400
        assert view.periods[0].order_id == billed.id and view.periods[1].order_id is None
        await client.record_usage(enrollment_id, 5, "after", at=at + timedelta(days=1))
        await sleep_until(env, end + timedelta(hours=1))
        view = await client.get_enrollment(enrollment_id)
        assert lines(view.orders[-1]) == [("calls-pro", 5, 7, 35)], "the rest of the period on the new plan"


@SQLITE_ONLY
async def test_a_workflow_rebuilt_from_the_database_keeps_the_pending_change(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, start = await enrolled(env, client)
        await client.change_enrollment(enrollment_id, product_id="pro", when="period_end")
        await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).terminate(reason="lost")
        engine = create_engine(database_url)
        try:
            store = Store.over(session_factory(engine))
            stored = await store.enrollments.get(enrollment_id)
            assert stored is not None and stored.pending_change is not None
            await Checkup(env.client, store, client.task_queue).rebuild(stored)
        finally:
            await engine.dispose()
        view = await client.get_enrollment(enrollment_id)
        assert view.pending_change == stored.pending_change
        await sleep_until(env, datetime(start.year, 2, 1, 1, tzinfo=UTC))
        view = await client.get_enrollment(enrollment_id)
        assert (view.product_id, view.pending_change, lines(view.orders[-1])) == ("pro", None, [("pro", 1, 6200, 6200)])


@SQLITE_ONLY
async def test_a_new_price_moves_no_enrollment_until_it_is_migrated(time_skipping_env, database_url):
    env = time_skipping_env
    await products(database_url)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id, start = await enrolled(env, client)
        assert (await client.get_enrollment(enrollment_id)).plan_version == 1
        raised = await add_product(database_url, "basic", monthly(3500))
        assert raised.version == 2
        await sleep_until(env, datetime(start.year, 2, 1, 1, tzinfo=UTC))
        view = await client.get_enrollment(enrollment_id)
        assert lines(view.orders[-1]) == [("basic", 1, 3000, 3000)], "still on version 1"
        dry = await client.migrate_product("basic", dry_run=True)
        assert (dry.version, dry.enrollments, dry.migrated) == (2, 1, [])
        assert [(sample.total_before, sample.total_after) for sample in dry.samples] == [(3000, 3500)]
        migration = await client.migrate_product("basic")
        assert migration.migrated == [enrollment_id]
        view = await client.get_enrollment(enrollment_id)
        assert view.pending_change is not None and view.pending_change.plan_version == 2
        assert (await client.migrate_product("basic", dry_run=True)).enrollments == 1, "until period end"
        await sleep_until(env, datetime(start.year, 3, 1, 1, tzinfo=UTC))
        view = await client.get_enrollment(enrollment_id)
        assert (view.plan_version, lines(view.orders[-1])) == (2, [("basic", 1, 3500, 3500)])
        assert view.log[-1].info == "changed plan version 1 → 2"
        assert (await client.migrate_product("basic", dry_run=True)).enrollments == 0
