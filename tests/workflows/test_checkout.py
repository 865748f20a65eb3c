"""Enrollments from a confirmed checkout order, and manual activation, on the real workflow and database.

The checkout order pays each enrollment's first period (recorded CONFIRMED, no second order), the same
order twice creates nothing new, unpaid and engine-generated orders are refused, and ``activate`` starts
a scheduled enrollment now.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from activities.persistence import Store, create_engine, session_factory
from adapters.checkout import CheckoutOrder
from adapters.domain import (
    BillingInterval,
    EnrollmentStatus,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    PeriodWindow,
    Product,
    ProductPlan,
    ProductType,
)
from adapters.licensed import LicensedAdapter
from starter.cli import app
from starter.client import EnrollmentCommandRejected
from starter.client.checkout import enrollment_id_for_position
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
TRIAL_THEN_MONTHLY = ProductPlan(
    billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=14
)

ORDER: dict[str, Any] = {
    "id": "checkout-1001",
    "number": "SHOP-1001",
    "user_id": "customer-7",
    "status": "CONFIRMED",
    "positions": [
        {"product_id": "gym", "quantity": 2, "configuration": [{"key": "locker", "value": "L12"}]},
        {"product_id": "towel"},
        {"product_id": "streaming-trial", "configuration": [{"key": "profile", "value": "kids"}]},
        {"product_id": "not-in-catalogue"},
    ],
    "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "city": "Zürich", "country_code": "CH"},
    "contact": {"email_address": "ada@example.com"},
    "country_code": "CH",
    "currency_code": "CHF",
    "payment": {"provider_id": "card", "context": {"token": "tok_42"}},
    "delivery": {"provider_id": "digital", "context": {}},
    "timezone": "Europe/Zurich",
}


async def _with_store(database_url: str, call: Any) -> Any:
    engine = create_engine(database_url)
    try:
        return await call(Store.over(session_factory(engine)))
    finally:
        await engine.dispose()


async def test_add_period_stores_the_order_with_the_status_given(store) -> None:
    now = datetime(2031, 1, 1, tzinfo=UTC)
    await store.products.upsert(Product(id="p", plan=MONTHLY), now=now)
    from adapters.domain import EnrollmentTerms

    await store.enrollments.create(
        "e", EnrollmentTerms(user_id="u", product_id="p"), anchor=now, adapter_key=LicensedAdapter.key, now=now
    )
    window = PeriodWindow(start=now, end=now + timedelta(days=31))
    order = OrderConfiguration(
        period=window,
        order_context={"checkout_order_id": "c-1"},
        order_position_templates=[OrderPosition(product_id="p", original_product_id="p", quantity=1)],
    )
    period, stored = await store.billing.add_period("e", window, order, now=now, order_status=OrderStatus.CONFIRMED)
    assert (
        stored is not None and stored.status is OrderStatus.CONFIRMED and stored.context["checkout_order_id"] == "c-1"
    )
    assert period.order_status is OrderStatus.CONFIRMED
    again, _ = await store.billing.add_period("e", window, order, now=now)
    assert again.order_id == period.order_id and again.order_status is OrderStatus.CONFIRMED


@SQLITE_ONLY
async def test_checkout_order_creates_its_enrollments_once_and_pays_their_first_period(
    time_skipping_env, database_url, tmp_path: Path
):
    env = time_skipping_env
    await add_product(database_url, "gym", MONTHLY)
    await add_product(database_url, "streaming-trial", TRIAL_THEN_MONTHLY)
    await _with_store(
        database_url,
        lambda store: store.products.upsert(
            Product(id="towel", type=ProductType.SIMPLE_PRODUCT), now=datetime.now(UTC)
        ),
    )
    async with running_worker(env, database_url) as (client, _):
        result = await client.create_enrollments_from_order(ORDER)
        assert [(created.position, created.product_id) for created in result.enrollments] == [
            (0, "gym"),
            (2, "streaming-trial"),
        ]
        assert [(skipped.position, skipped.reason) for skipped in result.skipped] == [
            (1, "a SIMPLE_PRODUCT, not a subscription"),
            (3, "not a known product"),
        ]
        gym_id, trial_id = (created.enrollment_id for created in result.enrollments)
        assert gym_id == enrollment_id_for_position("checkout-1001", 0)

        gym = await client.get_enrollment(gym_id)
        checkout = CheckoutOrder.model_validate(ORDER)
        assert (gym.user_id, gym.quantity, gym.configuration) == ("customer-7", 2, checkout.positions[0].configuration)
        assert (gym.billing_address, gym.contact) == (checkout.billing_address, checkout.contact)
        assert (gym.country_code, gym.currency_code, gym.timezone) == ("CH", "CHF", "Europe/Zurich")
        assert (gym.payment, gym.delivery) == (checkout.payment, checkout.delivery)
        assert gym.origin_order_id == "checkout-1001" and gym.meta == {"origin_order_position": 0}
        # The checkout order paid the first period: its order is CONFIRMED and names the checkout order.
        assert gym.status is EnrollmentStatus.ACTIVE and len(gym.periods) == 1 and len(gym.orders) == 1
        (paid,) = gym.orders
        assert paid.status is OrderStatus.CONFIRMED and paid.context == {"checkout_order_id": "checkout-1001"}
        assert paid.positions[0].configuration == checkout.positions[0].configuration
        assert gym.periods[0].order_status is OrderStatus.CONFIRMED
        assert await client.is_valid_for_activation(gym_id)

        # The same order again (also through the CLI) creates nothing new.
        again = await client.create_enrollments_from_order(checkout)
        assert again == result
        order_file = tmp_path / "order.json"
        order_file.write_text(json.dumps(ORDER))
        runner = CliRunner()
        address = env.client.service_client.config.target_host
        args = ["--address", address, "--database-url", database_url, "create-from-order", str(order_file)]
        environment = {"ENROLLMENTS_TASK_QUEUE": client.task_queue, "ENROLLMENT_ADAPTERS": "licensed"}
        outcome = await asyncio.to_thread(runner.invoke, app, [*args, "--json"], env=environment)
        assert outcome.exit_code == 0, outcome.output
        assert json.loads(outcome.stdout) == result.model_dump(mode="json")
        stored = await _with_store(database_url, lambda store: store.enrollments.matching())
        assert sorted(enrollment.id for enrollment in stored) == sorted([gym_id, trial_id])

        # Trial plan: the trial is the first period, linked to the checkout order; billing after it is ordered.
        trial = await client.get_enrollment(trial_id)
        assert [(period.is_trial, period.order_status) for period in trial.periods] == [(True, OrderStatus.CONFIRMED)]
        await env.sleep(timedelta(days=15))
        trial = await client.get_enrollment(trial_id)
        assert [(period.is_trial, period.order_status) for period in trial.periods] == [
            (True, OrderStatus.CONFIRMED),
            (False, OrderStatus.PENDING),
        ]
        gym = await client.get_enrollment(gym_id)
        assert [order.status for order in gym.orders] == [OrderStatus.CONFIRMED], "one order for the first period"

        # Refused: an unpaid order, and orders the engine generated.
        with pytest.raises(EnrollmentCommandRejected, match="is PENDING: only a CONFIRMED or FULFILLED order"):
            await client.create_enrollments_from_order({**ORDER, "id": "checkout-1002", "status": "PENDING"})
        engine_order = trial.orders[-1]
        with pytest.raises(EnrollmentCommandRejected, match="generated by the enrollment engine"):
            await client.create_enrollments_from_order({**ORDER, "id": engine_order.id})
        outcome = await asyncio.to_thread(
            runner.invoke, app, [*args[:-1], "-"], input=json.dumps({**ORDER, "status": "REJECTED"}), env=environment
        )
        assert outcome.exit_code == 1 and "is REJECTED: only a CONFIRMED or FULFILLED order" in outcome.output
        bad_file = tmp_path / "bad.json"
        bad_file.write_text(json.dumps({**ORDER, "positions": []}))
        outcome = await asyncio.to_thread(runner.invoke, app, [*args[:-1], str(bad_file)], env=environment)
        assert outcome.exit_code == 2 and "positions" in outcome.output


@SQLITE_ONLY
async def test_activate_starts_a_scheduled_enrollment_now(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "gym", MONTHLY)
    async with running_worker(env, database_url) as (client, _):
        now = await env.get_current_time()
        later = now + timedelta(days=10)
        scheduled, paused, terminated = [
            await client.create_enrollment(product_id="gym", user_id="u", start=later) for _ in range(3)
        ]
        assert (await client.get_enrollment(scheduled)).status is EnrollmentStatus.INITIAL
        await env.sleep(timedelta(days=1))
        activated_at = await env.get_current_time()
        view = await client.activate(scheduled, reason="customer asked to start now")
        assert view.status is EnrollmentStatus.ACTIVE
        assert abs((view.anchor - activated_at).total_seconds()) < 5
        assert len(view.periods) == 1 and view.periods[0].start == view.anchor
        assert [order.status for order in view.orders] == [OrderStatus.PENDING]
        assert view.log[-1].info == "activated: customer asked to start now"
        assert await client.is_valid_for_activation(scheduled, await env.get_current_time())
        with pytest.raises(EnrollmentCommandRejected, match=r"cannot activate .* already started \(ACTIVE\)"):
            await client.activate(scheduled)

        # Through the CLI; then refused for started and terminated enrollments.
        await client.activate(paused)
        await client.pause(paused)
        await client.terminate(terminated)
        runner = CliRunner()
        address = env.client.service_client.config.target_host
        base = ["--address", address, "--database-url", database_url, "activate"]
        environment = {"ENROLLMENTS_TASK_QUEUE": client.task_queue}
        outcome = await asyncio.to_thread(runner.invoke, app, [*base, paused], env=environment)
        assert outcome.exit_code == 1 and "already started (PAUSED (manual))" in outcome.output
        with pytest.raises(EnrollmentCommandRejected, match="TERMINATED"):
            await client.activate(terminated)
        fresh = await client.create_enrollment(product_id="gym", user_id="u", start=later)
        outcome = await asyncio.to_thread(runner.invoke, app, [*base, fresh, "--json"], env=environment)
        assert outcome.exit_code == 0, outcome.output
        shown = json.loads(outcome.stdout)
        assert shown["status"] == "ACTIVE" and len(shown["periods"]) == 1
        await env.sleep(later - await env.get_current_time() + timedelta(days=1))
        view = await client.get_enrollment(fresh)
        assert len(view.periods) == 1 and view.anchor < later, "the original start no longer applies"
