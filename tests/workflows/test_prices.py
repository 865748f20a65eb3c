"""Priced plans on the real workflow: orders carry their lines' amounts, a currency and a total."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, Price, ProductPlan, UsageCalculationType
from adapters.events import EventType, OrderCreated
from adapters.lifecycle import ErrorType
from starter.client import EnrollmentCommandRejected
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PRICES = [Price(currency="CHF", amount=3000), Price(currency="EUR", amount=2800)]


@SQLITE_ONLY
async def test_orders_carry_amounts_in_the_enrollments_currency(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "priced", ProductPlan(billing_interval=BillingInterval.MONTHS, prices=PRICES))
    await add_product(database_url, "free", ProductPlan(billing_interval=BillingInterval.MONTHS))
    async with running_worker(env, database_url) as (client, _):
        priced = await client.create_enrollment(product_id="priced", user_id="u", quantity=3, currency_code="EUR")
        free = await client.create_enrollment(product_id="free", user_id="u")
        with pytest.raises(EnrollmentCommandRejected, match="product 'priced' has no price in USD") as refused:
            await client.create_enrollment(product_id="priced", user_id="u", currency_code="USD", enrollment_id="usd")
        assert refused.value.error_type == ErrorType.NO_PRICE
        await env.sleep(timedelta(days=40))
        orders = (await client.get_enrollment(priced)).orders
        assert len(orders) == 2
        for order in orders:
            (line,) = order.positions
            assert (order.currency, order.total, line.quantity, line.unit_amount, line.amount) == (
                "EUR",
                8400,
                3,
                2800,
                8400,
            )
        unpriced = (await client.get_enrollment(free)).orders[0]
        assert (unpriced.currency, unpriced.total, unpriced.positions[0].amount) == (None, None, None)
        page = await client.events(enrollment_id=priced, types=[EventType.ORDER_CREATED])
        created = [OrderCreated.model_validate(event.data) for event in page.events]
        figures = [(event.currency, event.total, event.positions[0].amount) for event in created]
        assert figures == [("EUR", 8400, 8400)] * 2


@SQLITE_ONLY
async def test_metered_usage_is_priced_per_unit(time_skipping_env, database_url):
    env = time_skipping_env
    plan = ProductPlan(
        usage_calculation_type=UsageCalculationType.METERED,
        billing_interval=BillingInterval.DAYS,
        prices=[Price(currency="CHF", amount=15)],
    )
    await add_product(database_url, "meter", plan)
    async with running_worker(env, database_url, director=director_from_names(["metered"])) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="meter", user_id="u")
        first = (await client.get_enrollment(enrollment_id)).periods[0]
        await client.record_usage(enrollment_id, 7, "k-1", at=first.start)
        await env.sleep(first.end - first.start + timedelta(minutes=1))
        engine = create_engine(database_url)
        try:
            (order,) = await Store.over(session_factory(engine)).billing.list_orders(enrollment_id)
        finally:
            await engine.dispose()
        assert (order.currency, order.total, order.positions[0].unit_amount, order.positions[0].quantity) == (
            "CHF",
            105,
            15,
            7,
        )
