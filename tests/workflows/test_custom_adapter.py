"""The custom adapter example of docs/examples/: loaded from its file, registered, run on the real workflow."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from adapters.domain import BillingInterval, Enrollment, EnrollmentStatus, OrderStatus, Period, ProductPlan
from tests.support.paths import REPO_ROOT
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
EXAMPLE = REPO_ROOT / "docs" / "examples" / "confirmed_order_adapter.py"
T0 = datetime(2031, 1, 1, tzinfo=UTC)


def _load_example() -> ModuleType:
    name = "confirmed_order_adapter_example"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _snapshot(*statuses: OrderStatus | None) -> Enrollment:
    periods = [
        Period(
            start=T0 + timedelta(days=30 * n),
            end=T0 + timedelta(days=30 * (n + 1)),
            order_id=None if status is None else f"o{n}",
            order_status=status,
        )
        for n, status in enumerate(statuses)
    ]
    return Enrollment(id="e", user_id="u", product_id="p", anchor=T0, status=EnrollmentStatus.ACTIVE, periods=periods)


def test_access_needs_a_period_and_a_confirmed_latest_order() -> None:
    adapter = _load_example().ConfirmedOrderAdapter
    inside = T0 + timedelta(days=35)
    assert not adapter.is_valid_for_activation(_snapshot(OrderStatus.CONFIRMED, OrderStatus.PENDING), inside)
    assert adapter.is_valid_for_activation(_snapshot(OrderStatus.PENDING, OrderStatus.CONFIRMED), inside)
    assert adapter.is_valid_for_activation(_snapshot(OrderStatus.CONFIRMED, OrderStatus.FULFILLED), inside)
    assert not adapter.is_valid_for_activation(_snapshot(OrderStatus.CONFIRMED, OrderStatus.REJECTED), inside)
    assert adapter.is_valid_for_activation(_snapshot(OrderStatus.CONFIRMED, None), inside), "a period without order"
    assert not adapter.is_valid_for_activation(_snapshot(None), T0), "no order at all"
    assert not adapter.is_valid_for_activation(_snapshot(OrderStatus.CONFIRMED), T0 + timedelta(days=30)), "after"
    paused = _snapshot(OrderStatus.CONFIRMED).model_copy(update={"status": EnrollmentStatus.PAUSED})
    assert not adapter.is_valid_for_activation(paused, T0)


@SQLITE_ONLY
async def test_the_example_adapter_runs_on_the_workflow(time_skipping_env, database_url):
    env = time_skipping_env
    adapter = _load_example().ConfirmedOrderAdapter
    await add_product(database_url, "p", ProductPlan(billing_interval=BillingInterval.MONTHS))
    director = EnrollmentDirector([adapter, *director_from_names(["licensed", "metered"]).adapters])
    async with running_worker(env, database_url, director=director) as (client, _):
        confirmed = await client.create_enrollment(product_id="p", user_id="u1")
        rejected = await client.create_enrollment(product_id="p", user_id="u2")
        view = await client.get_enrollment(confirmed)
        assert view.adapter_key == "my-shop.enrollments.confirmed-order" and len(view.orders) == 1
        now = await env.get_current_time()
        assert not await client.is_valid_for_activation(confirmed, now), "the order is PENDING"
        view = await client.order_status_changed(view.orders[0].id, OrderStatus.CONFIRMED, enrollment_id=confirmed)
        assert await client.is_valid_for_activation(confirmed, now)
        first_end = view.periods[0].end
        await env.sleep(first_end - await env.get_current_time() + timedelta(hours=1))
        now = await env.get_current_time()
        view = await client.get_enrollment(confirmed)
        assert len(view.orders) == 2 and view.orders[1].status is OrderStatus.PENDING
        assert not await client.is_valid_for_activation(confirmed, now), "a new period needs its own payment"
        await client.order_status_changed(view.orders[1].id, OrderStatus.CONFIRMED, enrollment_id=confirmed)
        await client.order_status_changed(view.orders[1].id, OrderStatus.FULFILLED, enrollment_id=confirmed)
        assert await client.is_valid_for_activation(confirmed, now)
        order = (await client.get_enrollment(rejected)).orders[-1]
        await client.order_status_changed(order.id, OrderStatus.REJECTED, enrollment_id=rejected)
        assert not await client.is_valid_for_activation(rejected, now)
