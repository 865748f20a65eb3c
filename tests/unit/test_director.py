"""The director (first registered adapter wins), the built-in registry and the licensed adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from adapters.base import EnrollmentAdapter, EnrollmentContext
from adapters.builtin import BUILTIN_ADAPTERS, director_from_names
from adapters.director import (
    EnrollmentDirector,
    NoAdapterForPlanError,
    UnknownAdapterError,
    adapter_for_key,
)
from adapters.domain import (
    BillingInterval,
    ConfigurationEntry,
    Enrollment,
    EnrollmentPlan,
    EnrollmentStatus,
    OrderPosition,
    Period,
    PeriodWindow,
    Product,
    ProductPlan,
    UsageCalculationType,
)
from adapters.licensed import LicensedAdapter
from starter.connection.settings import Settings


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class ActivatedA(EnrollmentAdapter):
    key: ClassVar[str] = "tests.director.activated-a"
    label: ClassVar[str] = "A, activated for every plan"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return True


class ActivatedB(EnrollmentAdapter):
    key: ClassVar[str] = "tests.director.activated-b"
    label: ClassVar[str] = "B, activated for every plan"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return True


class MeteredOnly(EnrollmentAdapter):
    key: ClassVar[str] = "tests.director.metered-only"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.usage_calculation_type is UsageCalculationType.METERED


MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
METERED = ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=BillingInterval.DAYS)
MONTHLY_WITH_TRIAL = ProductPlan(
    billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=14
)
SEATS = [ConfigurationEntry(key="seats", value="5"), ConfigurationEntry(key="tier", value="gold")]


def context(
    plan: ProductPlan = MONTHLY,
    *,
    anchor: datetime,
    now: datetime,
    periods: list[Period] | None = None,
    **enrollment: Any,
) -> EnrollmentContext:
    snapshot = Enrollment(
        id="e-1",
        user_id="u-1",
        product_id="p-1",
        quantity=enrollment.pop("quantity", 3),
        configuration=enrollment.pop("configuration", SEATS),
        status=enrollment.pop("status", EnrollmentStatus.ACTIVE),
        anchor=anchor,
        periods=periods or [],
        **enrollment,
    )
    return EnrollmentContext(enrollment=snapshot, product=Product(id="p-1", plan=plan), now=now)


def as_period(window: PeriodWindow, order_id: str | None = None) -> Period:
    return Period(start=window.start, end=window.end, is_trial=window.is_trial, order_id=order_id)


# --- director ------------------------------------------------------------------------------------------


def test_first_registered_activated_adapter_wins() -> None:
    assert EnrollmentDirector([ActivatedA, ActivatedB]).resolve(MONTHLY) is ActivatedA
    assert EnrollmentDirector([ActivatedB, ActivatedA]).resolve(MONTHLY) is ActivatedB


def test_register_adapter_appends_in_order_and_ignores_repeats() -> None:
    director = EnrollmentDirector()
    director.register_adapter(MeteredOnly)
    director.register_adapter(LicensedAdapter)
    director.register_adapter(MeteredOnly)
    assert director.adapters == [MeteredOnly, LicensedAdapter]
    assert director.resolve(METERED) is MeteredOnly
    assert director.resolve(MONTHLY) is LicensedAdapter


def test_adapters_that_are_not_activated_are_passed_over() -> None:
    assert EnrollmentDirector([MeteredOnly, ActivatedB]).resolve(MONTHLY) is ActivatedB


def test_no_matching_adapter_names_the_plan_and_the_registered_adapters() -> None:
    with pytest.raises(NoAdapterForPlanError) as caught:
        EnrollmentDirector([LicensedAdapter]).resolve(METERED)
    message = str(caught.value)
    assert '"usage_calculation_type":"METERED"' in message
    assert '"billing_interval":"DAYS"' in message
    assert "registered: shop.unchained.enrollments.licensed" in message
    assert caught.value.plan == METERED
    with pytest.raises(NoAdapterForPlanError, match="registered: none"):
        EnrollmentDirector().resolve(MONTHLY)


def test_duplicate_key_with_a_different_class_is_an_error() -> None:
    class Impostor(EnrollmentAdapter):
        key: ClassVar[str] = ActivatedA.key

    EnrollmentDirector([ActivatedA])
    with pytest.raises(ValueError, match=r"'tests\.director\.activated-a' is already used by .*ActivatedA"):
        EnrollmentDirector([Impostor])
    assert adapter_for_key(ActivatedA.key) is ActivatedA


def test_only_adapter_classes_can_be_registered() -> None:
    with pytest.raises(TypeError, match="not an EnrollmentAdapter subclass"):
        EnrollmentDirector().register_adapter(object)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an EnrollmentAdapter subclass"):
        EnrollmentDirector().register_adapter(LicensedAdapter(context(anchor=utc(2031, 1, 1), now=utc(2031, 1, 1))))  # type: ignore[arg-type]


def test_adapter_for_key() -> None:
    EnrollmentDirector([LicensedAdapter, ActivatedB])
    assert adapter_for_key("shop.unchained.enrollments.licensed") is LicensedAdapter
    assert adapter_for_key(ActivatedB.key) is ActivatedB
    with pytest.raises(UnknownAdapterError, match=r"'shop\.example\.nope'"):
        adapter_for_key("shop.example.nope")


def test_actions_follow_the_recorded_adapter_key_before_the_plan() -> None:
    director = EnrollmentDirector([LicensedAdapter, ActivatedB])
    ctx = context(anchor=utc(2031, 1, 1), now=utc(2031, 1, 1))
    assert type(director.actions(ctx)) is LicensedAdapter
    recorded = director.actions(ctx, adapter_key=ActivatedB.key)
    assert type(recorded) is ActivatedB and recorded.context is ctx


def test_director_from_names_keeps_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_ADAPTERS, "a", ActivatedA)
    monkeypatch.setitem(BUILTIN_ADAPTERS, "b", ActivatedB)
    director = director_from_names(["b", " licensed ", "", "a"])
    assert director.adapters == [ActivatedB, LicensedAdapter, ActivatedA]
    assert director.resolve(MONTHLY) is ActivatedB
    assert director_from_names(["licensed", "b"]).resolve(MONTHLY) is LicensedAdapter


def test_director_from_names_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown enrollment adapter 'licenced'; known: .*licensed"):
        director_from_names(["licensed", "licenced"])


def test_default_settings_register_the_licensed_and_metered_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENROLLMENT_ADAPTERS", raising=False)
    assert director_from_names(Settings().adapter_names).adapters == [LicensedAdapter, BUILTIN_ADAPTERS["metered"]]


# --- licensed adapter ----------------------------------------------------------------------------------


def test_licensed_adapter_identity() -> None:
    assert LicensedAdapter.key == "shop.unchained.enrollments.licensed"
    assert LicensedAdapter.version == "1.0.0"
    assert BUILTIN_ADAPTERS["licensed"] is LicensedAdapter
    assert not LicensedAdapter.bills_in_arrears


@pytest.mark.parametrize("interval", list(BillingInterval))
def test_licensed_adapter_is_activated_for_licensed_plans_only(interval: BillingInterval) -> None:
    licensed = ProductPlan(usage_calculation_type=UsageCalculationType.LICENSED, billing_interval=interval)
    metered = ProductPlan(usage_calculation_type=UsageCalculationType.METERED, billing_interval=interval)
    assert LicensedAdapter.is_activated_for(licensed)
    assert not LicensedAdapter.is_activated_for(metered)


async def test_transform_order_item_keeps_product_quantity_and_configuration() -> None:
    position = OrderPosition(product_id="p-1", original_product_id="p-0", quantity=3, configuration=SEATS)
    plan = await LicensedAdapter.transform_order_item_to_enrollment_plan(position)
    assert plan == EnrollmentPlan(product_id="p-1", quantity=3, configuration=SEATS)
    assert plan.configuration is not position.configuration


async def test_next_period_starts_with_the_trial_then_anchors_billing_at_the_trial_end() -> None:
    anchor = utc(2031, 1, 31)
    periods: list[Period] = []
    expected = [
        PeriodWindow(start=utc(2031, 1, 31), end=utc(2031, 2, 14), is_trial=True),
        PeriodWindow(start=utc(2031, 2, 14), end=utc(2031, 3, 14)),
        PeriodWindow(start=utc(2031, 3, 14), end=utc(2031, 4, 13, 23)),  # 01:00 in Zurich, now summer time
        PeriodWindow(start=utc(2031, 4, 13, 23), end=utc(2031, 5, 13, 23)),
    ]
    for window in expected:
        ctx = context(MONTHLY_WITH_TRIAL, anchor=anchor, now=anchor, periods=periods, timezone="Europe/Zurich")
        assert await LicensedAdapter(ctx).next_period() == window
        periods.append(as_period(window))


async def test_next_period_is_anchored_not_drifting() -> None:
    anchor = utc(2024, 1, 31, 9)
    periods = [
        Period(start=utc(2024, 1, 31, 9), end=utc(2024, 2, 29, 9)),
        Period(start=utc(2024, 2, 29, 9), end=utc(2024, 3, 31, 9)),
    ]
    ctx = context(anchor=anchor, now=utc(2024, 3, 31, 9), periods=periods)
    assert await LicensedAdapter(ctx).next_period() == PeriodWindow(start=utc(2024, 3, 31, 9), end=utc(2024, 4, 30, 9))


async def test_next_period_after_a_new_anchor_has_no_trial() -> None:
    trial = Period(start=utc(2031, 1, 1), end=utc(2031, 1, 15), is_trial=True)
    ctx = context(MONTHLY_WITH_TRIAL, anchor=utc(2031, 3, 10), now=utc(2031, 3, 10), periods=[trial])
    assert await LicensedAdapter(ctx).next_period() == PeriodWindow(start=utc(2031, 3, 10), end=utc(2031, 4, 10))


async def test_no_next_period_once_terminated_or_expired() -> None:
    periods = [Period(start=utc(2031, 1, 1), end=utc(2031, 2, 1))]
    common: dict[str, Any] = {"anchor": utc(2031, 1, 1), "now": utc(2031, 1, 20), "periods": periods}
    assert await LicensedAdapter(context(status=EnrollmentStatus.TERMINATED, **common)).next_period() is None
    assert await LicensedAdapter(context(expires=utc(2031, 2, 1), **common)).next_period() is None
    assert await LicensedAdapter(context(expires=utc(2031, 1, 25), **common)).next_period() is None
    still_running = await LicensedAdapter(context(expires=utc(2031, 2, 1, 0, 1), **common)).next_period()
    assert still_running == PeriodWindow(start=utc(2031, 2, 1), end=utc(2031, 3, 1))


async def test_configuration_for_order_none_for_trials_and_future_periods() -> None:
    ctx = context(anchor=utc(2031, 1, 1), now=utc(2031, 1, 10))
    trial = PeriodWindow(start=utc(2031, 1, 1), end=utc(2031, 1, 15), is_trial=True)
    future = PeriodWindow(start=utc(2031, 1, 10, 0, 1), end=utc(2031, 2, 10))
    assert await LicensedAdapter(ctx).configuration_for_order(trial) is None
    assert await LicensedAdapter(ctx).configuration_for_order(future) is None


@pytest.mark.parametrize("now", [utc(2031, 1, 15), utc(2031, 2, 20)])
async def test_configuration_for_order_has_one_position_with_the_enrollment_terms(now: datetime) -> None:
    ctx = context(anchor=utc(2031, 1, 1), now=now, quantity=7)
    period = PeriodWindow(start=utc(2031, 1, 15), end=utc(2031, 2, 15))
    order = await LicensedAdapter(ctx).configuration_for_order(period)
    assert order is not None
    assert order.period == period
    assert order.order_context == {}
    assert [position.model_dump() for position in order.order_position_templates] == [
        {
            "product_id": "p-1",
            "original_product_id": "p-1",
            "quantity": 7,
            "configuration": [{"key": "seats", "value": "5"}, {"key": "tier", "value": "gold"}],
            "unit_amount": None,
            "amount": None,
            "description": None,
        }
    ]


async def test_licensed_adapter_is_never_overdue() -> None:
    ctx = context(
        anchor=utc(2031, 1, 1), now=utc(2032, 1, 1), periods=[Period(start=utc(2031, 1, 1), end=utc(2031, 2, 1))]
    )
    assert await LicensedAdapter(ctx).is_overdue() is False
    assert LicensedAdapter.deadline_after(ctx.enrollment, ctx.now) is None


def snapshot(status: EnrollmentStatus = EnrollmentStatus.ACTIVE, expires: datetime | None = None) -> Enrollment:
    periods = [
        Period(start=utc(2031, 1, 1), end=utc(2031, 1, 15), is_trial=True),
        Period(start=utc(2031, 1, 15), end=utc(2031, 2, 15), order_id="o-1"),
    ]
    return context(
        anchor=utc(2031, 1, 1), now=utc(2031, 1, 1), periods=periods, status=status, expires=expires
    ).enrollment


@pytest.mark.parametrize(
    ("at", "valid"),
    [
        (utc(2030, 12, 31, 23, 59), False),
        (utc(2031, 1, 1), True),
        (utc(2031, 1, 14, 23, 59), True),
        (utc(2031, 1, 15), True),
        (utc(2031, 2, 15) - timedelta(microseconds=1), True),
        (utc(2031, 2, 15), False),
        (utc(2031, 3, 1), False),
    ],
)
def test_valid_for_activation_inside_a_period_only(at: datetime, valid: bool) -> None:
    assert LicensedAdapter.is_valid_for_activation(snapshot(), at) is valid


@pytest.mark.parametrize("status", [EnrollmentStatus.INITIAL, EnrollmentStatus.PAUSED])
def test_not_valid_for_activation_before_start_or_while_paused(status: EnrollmentStatus) -> None:
    assert not LicensedAdapter.is_valid_for_activation(snapshot(status), utc(2031, 2, 1))


def test_terminated_enrollment_keeps_access_until_it_expires() -> None:
    """Terminating sets ``expires`` to the end of what was paid, or now when immediate (see the lifecycle doc)."""
    paid_up = snapshot(EnrollmentStatus.TERMINATED, expires=utc(2031, 2, 15))
    assert LicensedAdapter.is_valid_for_activation(paid_up, utc(2031, 2, 1))
    assert not LicensedAdapter.is_valid_for_activation(paid_up, utc(2031, 2, 15))
    immediately = snapshot(EnrollmentStatus.TERMINATED, expires=utc(2031, 2, 1))
    assert not LicensedAdapter.is_valid_for_activation(immediately, utc(2031, 2, 1))


def test_not_valid_for_activation_at_or_after_expiry() -> None:
    enrollment = snapshot(expires=utc(2031, 2, 1))
    assert LicensedAdapter.is_valid_for_activation(enrollment, utc(2031, 2, 1) - timedelta(seconds=1))
    assert not LicensedAdapter.is_valid_for_activation(enrollment, utc(2031, 2, 1))
    assert not LicensedAdapter.is_valid_for_activation(enrollment, utc(2031, 2, 10))
