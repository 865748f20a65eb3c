"""Enrollments that start when their first order is paid (``activate_on_payment``), on the real workflow.

Such an enrollment is INITIAL with its first period and order made at its start; paying the order makes it
ACTIVE in that period (anchor kept, no second order), and so does ``activate``. A rejected order, or one
still unpaid when the period ends, ends it with the order rejected. A backdated start is refused.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from adapters.domain import BillingInterval, EnrollmentStatus, OrderStatus, ProductPlan
from adapters.lifecycle import EnrollmentView, workflow_id_for
from starter.cli import app
from starter.client import EnrollmentCommandRejected
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
WEEKLY = ProductPlan(billing_interval=BillingInterval.WEEKS)
TRIAL_THEN_WEEKLY = ProductPlan(
    billing_interval=BillingInterval.WEEKS, trial_interval=BillingInterval.DAYS, trial_interval_count=3
)


@SQLITE_ONLY
async def test_paid_first_order_starts_the_enrollment_in_its_first_period(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "weekly", WEEKLY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="weekly", user_id="u", activate_on_payment=True)
        waiting = await client.get_enrollment(enrollment_id)
        (first,) = waiting.periods
        (order,) = waiting.orders
        assert waiting.status is EnrollmentStatus.INITIAL and order.status is OrderStatus.PENDING
        assert waiting.next_wake_up == first.end, "it waits for the payment until its first period ends"
        assert not await client.is_valid_for_activation(enrollment_id, await env.get_current_time())

        await env.sleep(timedelta(days=2))
        paid = await client.order_status_changed(order.id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)
        assert paid.status is EnrollmentStatus.ACTIVE and paid.anchor == waiting.anchor == first.start
        assert [period.start for period in paid.periods] == [first.start], "the paid period, no new one"
        assert [o.status for o in paid.orders] == [OrderStatus.CONFIRMED]
        assert paid.log[-1].info == "started: its first order is paid"
        assert await client.is_valid_for_activation(enrollment_id, await env.get_current_time())

        await env.sleep(first.end - await env.get_current_time() + timedelta(hours=1))
        renewed = await client.get_enrollment(enrollment_id)
        assert [period.start for period in renewed.periods] == [first.start, first.end]
        assert [o.status for o in renewed.orders] == [OrderStatus.CONFIRMED, OrderStatus.PENDING]


@SQLITE_ONLY
async def test_unpaid_or_rejected_first_order_ends_the_enrollment(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "weekly", WEEKLY)
    async with running_worker(env, database_url) as (client, _):
        unpaid, rejected = [
            await client.create_enrollment(product_id="weekly", user_id="u", activate_on_payment=True) for _ in range(2)
        ]
        rejected_order = (await client.get_enrollment(rejected)).orders[0]
        view = await client.order_status_changed(rejected_order.id, OrderStatus.REJECTED, enrollment_id=rejected)
        assert view.status is EnrollmentStatus.TERMINATED and view.log[-1].info.endswith("first order was rejected")

        first = (await client.get_enrollment(unpaid)).periods[0]
        await env.sleep(first.end - await env.get_current_time() + timedelta(hours=1))
        handle = env.client.get_workflow_handle(workflow_id_for(unpaid), result_type=EnrollmentView)
        final = await handle.result()
        assert final.status is EnrollmentStatus.TERMINATED and final.expires == first.end
        assert final.log[-1].info.startswith("terminated: its first order was not paid by the end")
        assert [order.status for order in final.orders] == [OrderStatus.REJECTED], "nothing left to collect"
        assert len(final.periods) == 1


@SQLITE_ONLY
async def test_activate_keeps_the_first_period_and_a_trial_starts_at_once(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "weekly", WEEKLY)
    await add_product(database_url, "trial", TRIAL_THEN_WEEKLY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="weekly", user_id="u", activate_on_payment=True)
        first = (await client.get_enrollment(enrollment_id)).periods[0]
        await env.sleep(timedelta(days=1))
        view = await client.activate(enrollment_id, reason="paid by invoice")
        assert view.status is EnrollmentStatus.ACTIVE and view.anchor == first.start
        assert [period.start for period in view.periods] == [first.start]
        assert [order.status for order in view.orders] == [OrderStatus.PENDING], "its order stays due"

        # A trial has nothing to pay up front: it starts at once.
        trial = await client.create_enrollment(product_id="trial", user_id="u", activate_on_payment=True)
        view = await client.get_enrollment(trial)
        assert view.status is EnrollmentStatus.ACTIVE and view.periods[0].is_trial and not view.orders

        with pytest.raises(EnrollmentCommandRejected, match="activated on payment") as refused:
            await client.create_enrollment(
                product_id="weekly",
                user_id="u",
                activate_on_payment=True,
                start=await env.get_current_time() - timedelta(days=30),
                backdate=True,
            )
        assert refused.value.error_type == "InvalidStart"

        # The CLI flag.
        address = env.client.service_client.config.target_host
        args = ["--address", address, "--database-url", database_url, "create", "--product", "weekly"]
        environment = {"ENROLLMENTS_TASK_QUEUE": client.task_queue}
        outcome = await asyncio.to_thread(
            CliRunner().invoke, app, [*args, "--user", "u", "--activate-on-payment"], env=environment
        )
        assert outcome.exit_code == 0, outcome.stderr
        created = await client.get_enrollment(outcome.stdout.strip())
        assert created.status is EnrollmentStatus.INITIAL and created.activate_on_payment
