"""The trial-with-grace adapter: its pure access rule and overdue decision, its grace variants, and the
overdue path of the real workflow on the time-skipping server (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.base import EnrollmentContext
from adapters.builtin import BUILTIN_ADAPTERS, builtin_adapter, director_from_names
from adapters.director import adapter_for_key
from adapters.domain import (
    BillingInterval,
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PauseReason,
    Period,
    Product,
    ProductPlan,
    UsageCalculationType,
)
from adapters.dunning import policy_for, start_dunning
from adapters.dunning_policy import DunningAction, DunningPolicy, DunningStep
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import EnrollmentView, MessageName, OrderStatusCommand, workflow_id_for
from adapters.trial_grace import TrialGraceAdapter, trial_grace_adapter
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

T0 = datetime(2031, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
GRACE = timedelta(days=7)
TRIAL_MONTHLY = ProductPlan(
    billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=3
)
PRODUCT = Product(id="trial-monthly", plan=TRIAL_MONTHLY)


def _enrollment(
    *periods: Period,
    status: EnrollmentStatus = EnrollmentStatus.ACTIVE,
    reason: PauseReason | None = None,
    expires: datetime | None = None,
) -> Enrollment:
    return Enrollment(
        id="e",
        user_id="u",
        product_id=PRODUCT.id,
        anchor=T0,
        status=status,
        pause_reason=reason,
        expires=expires,
        periods=list(periods),
    )


TRIAL = Period(start=T0, end=T0 + 3 * DAY, is_trial=True)


def _billable(status: OrderStatus | None, start: datetime = T0 + 3 * DAY, days: int = 31) -> Period:
    return Period(start=start, end=start + days * DAY, order_id=f"o-{start.day}", order_status=status)


# --- pure: identity, activation, access ----------------------------------------------------------------------


def test_identity_and_activation() -> None:
    assert TrialGraceAdapter.key == "shop.unchained.enrollments.trial-grace" and TrialGraceAdapter.version == "1.0.0"
    assert BUILTIN_ADAPTERS["trial_grace"] is TrialGraceAdapter and TrialGraceAdapter.grace == GRACE
    assert TrialGraceAdapter.is_activated_for(TRIAL_MONTHLY)
    assert not TrialGraceAdapter.is_activated_for(ProductPlan(billing_interval=BillingInterval.MONTHS))
    metered = TRIAL_MONTHLY.model_copy(update={"usage_calculation_type": UsageCalculationType.METERED})
    assert not TrialGraceAdapter.is_activated_for(metered)
    # Opt-in and first: it takes the plans with a trial, licensed the others.
    director = director_from_names(["trial_grace", "licensed", "metered"])
    assert director.resolve(TRIAL_MONTHLY) is TrialGraceAdapter
    assert director.resolve(ProductPlan(billing_interval=BillingInterval.MONTHS)) is LicensedAdapter


@pytest.mark.parametrize(
    ("period", "at", "valid"),
    [
        (TRIAL, T0, True),
        (TRIAL, T0 + 3 * DAY - timedelta(seconds=1), True),
        (TRIAL, T0 + 3 * DAY, False),  # no grace after a trial
        (_billable(OrderStatus.PENDING), T0 + 3 * DAY + GRACE - timedelta(seconds=1), True),  # unpaid: the grace
        (_billable(OrderStatus.PENDING), T0 + 3 * DAY + GRACE, False),
        (_billable(OrderStatus.REJECTED), T0 + 3 * DAY + DAY, True),
        (_billable(OrderStatus.REJECTED), T0 + 3 * DAY + GRACE, False),
        (_billable(OrderStatus.CONFIRMED), T0 + 30 * DAY, True),  # paid: the whole period …
        (_billable(OrderStatus.FULFILLED), T0 + 34 * DAY + GRACE - timedelta(seconds=1), True),  # … plus the grace
        (_billable(OrderStatus.CONFIRMED), T0 + 34 * DAY + GRACE, False),
        (_billable(OrderStatus.CONFIRMED), T0 + 3 * DAY - timedelta(seconds=1), False),  # before it starts
    ],
)
def test_access_in_the_trial_and_in_paid_periods_plus_the_grace(period: Period, at: datetime, valid: bool) -> None:
    assert TrialGraceAdapter.is_valid_for_activation(_enrollment(period), at) is valid


def test_no_access_while_initial_paused_or_expired() -> None:
    paid = _billable(OrderStatus.CONFIRMED)
    at = T0 + 10 * DAY
    assert TrialGraceAdapter.is_valid_for_activation(_enrollment(TRIAL, paid), at)
    for status, reason in [
        (EnrollmentStatus.INITIAL, None),
        (EnrollmentStatus.PAUSED, PauseReason.MANUAL),
        (EnrollmentStatus.PAUSED, PauseReason.OVERDUE),
    ]:
        assert not TrialGraceAdapter.is_valid_for_activation(_enrollment(TRIAL, paid, status=status, reason=reason), at)
    terminated = _enrollment(TRIAL, paid, status=EnrollmentStatus.TERMINATED, expires=at)
    assert TrialGraceAdapter.is_valid_for_activation(terminated, at - timedelta(seconds=1))
    assert not TrialGraceAdapter.is_valid_for_activation(terminated, at), "the grace never outlives expires"


def test_the_grace_is_a_one_step_dunning_policy_due_at_the_period_start_plus_the_grace() -> None:
    policy = TrialGraceAdapter.dunning
    assert policy is not None and [(step.after, step.action) for step in policy.steps] == [("P7D", "pause")]
    second = _billable(OrderStatus.PENDING, start=T0 + 34 * DAY)
    order = Order(id="o-4", number="O-4", status=OrderStatus.PENDING)
    (pause,) = start_dunning(policy, order, second.start, open_balance=None, currency=None).steps
    assert pause.at == T0 + 41 * DAY and pause.action is DunningAction.PAUSE
    # A plan's own policy comes first; without one, the adapter's grace applies.
    own = DunningPolicy(steps=[DunningStep(after="P1D", action=DunningAction.REMIND)])
    assert policy_for(TRIAL_MONTHLY, policy) is policy
    assert policy_for(TRIAL_MONTHLY.model_copy(update={"dunning": own}), policy) is own
    assert LicensedAdapter.dunning is None


class _Orders:
    def __init__(self, *orders: Order) -> None:
        self.orders = {order.id: order for order in orders}

    async def find_order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        return 0


async def _overdue(
    enrollment: Enrollment, now: datetime, *orders: Order, adapter: type[TrialGraceAdapter] = TrialGraceAdapter
) -> bool:
    services = _Orders(*orders)
    return await adapter(
        EnrollmentContext(enrollment=enrollment, product=PRODUCT, now=now, services=services)
    ).is_overdue()


async def test_overdue_reads_the_latest_billable_order() -> None:
    first = _billable(OrderStatus.PENDING)
    second = _billable(OrderStatus.PENDING, start=T0 + 34 * DAY)

    def order(period: Period, status: OrderStatus) -> Order:
        assert period.order_id is not None
        return Order(id=period.order_id, number=period.order_id, status=status)

    after_grace = T0 + 3 * DAY + GRACE
    # The grace's dunning step makes the pause: an ACTIVE enrollment is never overdue by the adapter's rule.
    assert not await _overdue(_enrollment(TRIAL), after_grace)
    assert not await _overdue(_enrollment(TRIAL, first), after_grace, order(first, OrderStatus.PENDING))
    paused = _enrollment(TRIAL, first, status=EnrollmentStatus.PAUSED, reason=PauseReason.OVERDUE)
    assert await _overdue(paused, after_grace, order(first, OrderStatus.PENDING))
    assert await _overdue(paused, after_grace, order(first, OrderStatus.REJECTED))
    # The order's current status is read, not the snapshot's.
    assert not await _overdue(paused, after_grace, order(first, OrderStatus.CONFIRMED))
    paid_first = order(first, OrderStatus.CONFIRMED)
    # A new period inside its grace does not lift an overdue pause: only paying the latest order does.
    overdue = _enrollment(TRIAL, first, second, status=EnrollmentStatus.PAUSED, reason=PauseReason.OVERDUE)
    assert await _overdue(overdue, T0 + 41 * DAY, paid_first, order(second, OrderStatus.PENDING))
    assert await _overdue(overdue, T0 + 35 * DAY, order(first, OrderStatus.PENDING), order(second, OrderStatus.PENDING))
    assert await _overdue(overdue, T0 + 35 * DAY, paid_first, order(second, OrderStatus.REJECTED))
    assert not await _overdue(
        overdue, T0 + 35 * DAY, order(first, OrderStatus.PENDING), order(second, OrderStatus.FULFILLED)
    )
    manual = _enrollment(TRIAL, first, second, status=EnrollmentStatus.PAUSED, reason=PauseReason.MANUAL)
    assert not await _overdue(
        manual, T0 + 35 * DAY, order(first, OrderStatus.PENDING), order(second, OrderStatus.PENDING)
    )


# --- grace variants ---------------------------------------------------------------------------------------------


async def test_the_grace_is_configurable_per_adapter_variant() -> None:
    assert trial_grace_adapter() is trial_grace_adapter(7) is TrialGraceAdapter
    two = trial_grace_adapter(2)
    assert two is trial_grace_adapter(2) and issubclass(two, TrialGraceAdapter)
    assert (two.key, two.grace) == ("shop.unchained.enrollments.trial-grace.2d", timedelta(days=2))
    assert builtin_adapter(" trial_grace:2 ") is two and builtin_adapter("trial_grace:7") is TrialGraceAdapter
    director = director_from_names(["trial_grace:2", "licensed"])
    assert director.resolve(TRIAL_MONTHLY) is two and adapter_for_key(two.key) is two
    unpaid = _billable(OrderStatus.PENDING)
    assert not two.is_valid_for_activation(_enrollment(unpaid), T0 + 5 * DAY)
    assert TrialGraceAdapter.is_valid_for_activation(_enrollment(unpaid), T0 + 5 * DAY)
    assert two.dunning is not None and two.dunning.steps[0].after == "P2D"
    zero = trial_grace_adapter(0).dunning
    assert zero is not None and zero.steps[0].offset == timedelta(0)
    for name, message in [
        ("trial_grace:-1", "0 to 366 days, got -1"),
        ("trial_grace:400", "0 to 366 days, got 400"),
        ("trial_grace:two", "needs a whole number of days, got 'trial_grace:two'"),
        ("licensed:3", "'licensed' takes no parameter"),
        ("trial-grace", "unknown enrollment adapter 'trial-grace'; known: licensed, metered, trial_grace"),
    ]:
        with pytest.raises(ValueError, match=message):
            director_from_names([name])


# --- the workflow -------------------------------------------------------------------------------------------


async def _pay_by_signal(env, client: EnrollmentsClient, enrollment_id: str, order_id: str, status: OrderStatus):
    """Send the order status as a signal, then wait until the workflow applied it (an update queued after it)."""
    handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
    await handle.signal(MessageName.ORDER_STATUS_SIGNAL, OrderStatusCommand(order_id=order_id, status=status))
    return await handle.execute_update(
        MessageName.ORDER_STATUS_UPDATE,
        OrderStatusCommand(order_id=order_id, status=status),
        result_type=EnrollmentView,
    )


@SQLITE_ONLY
async def test_overdue_after_the_grace_and_payment_reactivates(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, PRODUCT.id, TRIAL_MONTHLY)
    director = director_from_names(["trial_grace", "licensed", "metered"])
    async with running_worker(env, database_url, director=director) as (client, _):
        unpaid = await client.create_enrollment(product_id=PRODUCT.id, user_id="u1")
        paid = await client.create_enrollment(product_id=PRODUCT.id, user_id="u2")
        manual = await client.create_enrollment(product_id=PRODUCT.id, user_id="u3")
        view = await client.get_enrollment(unpaid)
        (trial,) = view.periods
        assert view.adapter_key == TrialGraceAdapter.key and trial.is_trial and view.orders == []
        assert await client.is_valid_for_activation(unpaid, await env.get_current_time())
        await client.pause(manual, reason="not yet")

        await env.sleep(trial.end - await env.get_current_time() + timedelta(hours=1))
        view = await client.get_enrollment(unpaid)
        _, first = view.periods
        deadline = first.start + GRACE
        assert first.order_status is OrderStatus.PENDING and view.next_wake_up == deadline, "wakes at the grace"
        assert await client.is_valid_for_activation(unpaid, deadline - timedelta(seconds=1))
        assert not await client.is_valid_for_activation(unpaid, deadline), "an unpaid period ends with its grace"
        paid_order = (await client.get_enrollment(paid)).orders[0]
        view = await client.order_status_changed(paid_order.id, OrderStatus.FULFILLED, enrollment_id=paid)
        assert view.orders[0].status is OrderStatus.FULFILLED and view.periods[1].order_status is OrderStatus.FULFILLED

        await env.sleep(deadline - await env.get_current_time() + timedelta(hours=1))
        view = await client.get_enrollment(unpaid)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        overdue_entry = view.log[-1]
        assert overdue_entry.info == "payment overdue" and deadline <= overdue_entry.at < deadline + timedelta(
            seconds=5
        )
        assert not await client.is_valid_for_activation(unpaid, await env.get_current_time())
        with pytest.raises(EnrollmentCommandRejected, match="resumes when its order is paid"):
            await client.resume(unpaid)
        view = await client.order_status_changed(view.orders[0].id, OrderStatus.REJECTED, enrollment_id=unpaid)
        assert view.status is EnrollmentStatus.PAUSED and view.orders[0].status is OrderStatus.REJECTED
        paid_view = await client.get_enrollment(paid)
        assert paid_view.status is EnrollmentStatus.ACTIVE and paid_view.next_wake_up == paid_view.periods[1].end, (
            "no deadline"
        )
        assert await client.is_valid_for_activation(paid, await env.get_current_time())

        # Overdue-paused enrollments keep getting periods and orders; the new period's grace does not lift
        # the pause, paying its order does. Manually paused ones get nothing.
        await env.sleep(first.end - await env.get_current_time() + timedelta(hours=1))
        view = await client.get_enrollment(unpaid)
        assert len(view.periods) == 3 and len(view.orders) == 2
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        assert not await client.is_valid_for_activation(unpaid, await env.get_current_time())
        view = await _pay_by_signal(env, client, unpaid, view.orders[1].id, OrderStatus.CONFIRMED)
        assert view.status is EnrollmentStatus.ACTIVE and view.log[-1].info == "payment received"
        assert view.periods[-1].order_status is OrderStatus.CONFIRMED
        assert await client.is_valid_for_activation(unpaid, await env.get_current_time())
        manual_view = await client.get_enrollment(manual)
        assert (manual_view.status, manual_view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.MANUAL)
        assert len(manual_view.periods) == 1 and manual_view.orders == []
        assert not await client.is_valid_for_activation(manual, trial.start + timedelta(hours=1))


@SQLITE_ONLY
async def test_a_shorter_grace_from_the_adapter_names(time_skipping_env, database_url):
    env = time_skipping_env
    plan = ProductPlan(
        billing_interval=BillingInterval.WEEKS, trial_interval=BillingInterval.DAYS, trial_interval_count=1
    )
    await add_product(database_url, "trial-weekly", plan)
    one_day = trial_grace_adapter(1)
    async with running_worker(env, database_url, director=director_from_names(["trial_grace:1"])) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="trial-weekly", user_id="u")
        view = await client.get_enrollment(enrollment_id)
        assert view.adapter_key == one_day.key
        billing_start = view.periods[0].end
        await env.sleep(billing_start + timedelta(days=1, hours=1) - await env.get_current_time())
        view = await client.get_enrollment(enrollment_id)
        assert (view.status, view.pause_reason) == (EnrollmentStatus.PAUSED, PauseReason.OVERDUE)
        assert billing_start + DAY <= view.log[-1].at < billing_start + DAY + timedelta(seconds=5)
