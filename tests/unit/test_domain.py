"""Domain models: invalid input is rejected with an error located at the offending field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from adapters.domain import (
    MAX_CONFIGURATION_ENTRIES,
    MAX_QUANTITY,
    MAX_UNITS,
    BillingInterval,
    ConfigurationEntry,
    Enrollment,
    EnrollmentPlan,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    Period,
    PeriodWindow,
    Product,
    ProductPlan,
    ProductType,
    isoformat_utc,
    known_timezones,
)

T0 = datetime(2031, 1, 31, tzinfo=UTC)


def errors_of(model: type[BaseModel], data: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    """Validate ``data`` expecting failure; the errors as ``{location: error type}``."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {tuple(error["loc"]): error["type"] for error in caught.value.errors()}


def message_at(model: type[BaseModel], data: dict[str, Any], loc: tuple[str | int, ...]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return next(str(error["msg"]) for error in caught.value.errors() if tuple(error["loc"]) == loc)


def enrollment_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "e-1", "user_id": "u-1", "product_id": "p-1", "anchor": T0}
    data.update(overrides)
    return data


# --- plans ---------------------------------------------------------------------------------------------


def test_plan_without_billing_interval_names_the_field() -> None:
    assert errors_of(ProductPlan, {"billing_interval_count": 1}) == {("billing_interval",): "missing"}


def test_plan_with_unknown_billing_interval_names_the_field() -> None:
    assert errors_of(ProductPlan, {"billing_interval": "FORTNIGHTS"}) == {("billing_interval",): "enum"}


@pytest.mark.parametrize("count", [0, -1, -12])
def test_billing_interval_count_below_one_names_the_field(count: int) -> None:
    data = {"billing_interval": "MONTHS", "billing_interval_count": count}
    assert errors_of(ProductPlan, data) == {("billing_interval_count",): "greater_than_equal"}


def test_negative_trial_interval_count_names_the_field() -> None:
    data = {"billing_interval": "MONTHS", "trial_interval": "DAYS", "trial_interval_count": -1}
    assert errors_of(ProductPlan, data) == {("trial_interval_count",): "greater_than_equal"}


def test_trial_count_without_trial_interval_names_the_interval() -> None:
    data = {"billing_interval": "MONTHS", "trial_interval_count": 14}
    assert errors_of(ProductPlan, data) == {("trial_interval",): "value_error"}
    assert "trial_interval_count > 0" in message_at(ProductPlan, data, ("trial_interval",))


def test_trial_count_assigned_later_is_still_checked() -> None:
    plan = ProductPlan(billing_interval=BillingInterval.MONTHS)
    with pytest.raises(ValidationError, match="trial_interval is required"):
        plan.trial_interval_count = 3
    assert plan.trial_interval_count == 0
    assert "trial_interval_count" not in plan.model_fields_set


def test_billing_interval_count_assigned_later_is_still_checked() -> None:
    plan = ProductPlan(billing_interval=BillingInterval.MONTHS)
    with pytest.raises(ValidationError, match="billing_interval_count"):
        plan.billing_interval_count = 0


def test_valid_plans() -> None:
    plan = ProductPlan.model_validate({"billing_interval": "WEEKS"})
    assert plan.billing_interval is BillingInterval.WEEKS
    assert plan.billing_interval_count == 1
    assert not plan.has_trial
    trial = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=14
    )
    assert trial.has_trial
    # An interval with a zero count is no trial (and is allowed).
    assert not ProductPlan(billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS).has_trial
    assert ProductPlan.model_validate_json(trial.model_dump_json()) == trial


def test_plan_rejects_unknown_fields() -> None:
    assert errors_of(ProductPlan, {"billing_interval": "DAYS", "billing_intervall_count": 2}) == {
        ("billing_intervall_count",): "extra_forbidden"
    }


# --- products ------------------------------------------------------------------------------------------


def test_plan_product_without_plan_names_the_plan() -> None:
    assert errors_of(Product, {"id": "p-1"}) == {("plan",): "value_error"}
    assert errors_of(Product, {"id": "p-1", "type": "PLAN_PRODUCT", "plan": None}) == {("plan",): "value_error"}


def test_simple_product_needs_no_plan_but_cannot_be_enrolled_in() -> None:
    product = Product(id="p-1", type=ProductType.SIMPLE_PRODUCT)
    with pytest.raises(ValueError, match="'p-1' is not a PLAN_PRODUCT"):
        product.require_plan()


def test_plan_product_exposes_its_plan() -> None:
    plan = ProductPlan(billing_interval=BillingInterval.YEARS)
    assert Product(id="p-1", plan=plan).require_plan() == plan


def test_product_errors_inside_the_plan_are_located_in_the_plan() -> None:
    data = {"id": "p-1", "plan": {"billing_interval": "DAYS", "billing_interval_count": 0}}
    assert errors_of(Product, data) == {("plan", "billing_interval_count"): "greater_than_equal"}


# --- quantities, time zones, configuration --------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1])
@pytest.mark.parametrize("model", [EnrollmentTerms, EnrollmentPlan])
def test_invalid_quantity_names_the_field(model: type[BaseModel], quantity: int) -> None:
    data = enrollment_data(quantity=quantity)
    data.pop("id")
    data.pop("anchor")
    if model is EnrollmentPlan:
        data.pop("user_id")
    assert errors_of(model, data) == {("quantity",): "greater_than_equal" if quantity < 1 else "less_than_equal"}


@pytest.mark.parametrize("quantity", [-1, MAX_UNITS + 1])
def test_order_position_quantity_bounds(quantity: int) -> None:
    """An order line bills up to 2^63 - 1 units (a month of metered API calls fits); the plan's quantity less."""
    data = {"product_id": "p", "original_product_id": "p", "quantity": quantity}
    assert set(errors_of(OrderPosition, data)) == {("quantity",)}


def test_order_position_takes_usage_beyond_the_plan_quantity_cap() -> None:
    assert OrderPosition(product_id="p", original_product_id="p", quantity=MAX_QUANTITY + 1).quantity > MAX_QUANTITY
    assert OrderPosition(product_id="p", original_product_id="p", quantity=MAX_UNITS).quantity == 2**63 - 1


def test_order_position_may_have_zero_quantity() -> None:
    # A metered period with no usage is not ordered, but zero is a valid quantity in itself.
    assert OrderPosition(product_id="p", original_product_id="p", quantity=0).quantity == 0


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "localtime", "Europe/../UTC"])
def test_unknown_timezone_names_the_field(name: str) -> None:
    assert errors_of(Enrollment, enrollment_data(timezone=name)) == {("timezone",): "value_error"}
    assert "unknown IANA time zone" in message_at(Enrollment, enrollment_data(timezone=name), ("timezone",))


@pytest.mark.parametrize("name", ["UTC", "Europe/Zurich", "America/St_Johns", "Pacific/Chatham", "Asia/Kathmandu"])
def test_known_timezones_are_accepted(name: str) -> None:
    assert Enrollment.model_validate(enrollment_data(timezone=name)).timezone == name
    assert name in known_timezones()


def test_timezone_defaults_to_utc() -> None:
    assert Enrollment.model_validate(enrollment_data()).timezone == "UTC"


def test_too_many_configuration_entries_name_the_field() -> None:
    entries = [{"key": f"k{index}", "value": "v"} for index in range(MAX_CONFIGURATION_ENTRIES + 1)]
    assert errors_of(EnrollmentPlan, {"product_id": "p", "configuration": entries}) == {("configuration",): "too_long"}


def test_configuration_entry_needs_a_key() -> None:
    assert errors_of(ConfigurationEntry, {"key": "", "value": "v"}) == {("key",): "string_too_short"}


def test_enrollment_rejects_unknown_fields_and_names_them() -> None:
    assert errors_of(Enrollment, enrollment_data(colour="blue")) == {("colour",): "extra_forbidden"}


def test_enrollment_validates_assignments() -> None:
    enrollment = Enrollment.model_validate(enrollment_data())
    with pytest.raises(ValidationError, match="quantity"):
        enrollment.quantity = 0
    with pytest.raises(ValidationError, match="timezone"):
        enrollment.timezone = "Mars/Olympus"
    assert enrollment.quantity == 1 and enrollment.timezone == "UTC"


# --- datetimes -----------------------------------------------------------------------------------------


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2031, 1, 31)
    assert errors_of(Enrollment, enrollment_data(anchor=naive)) == {("anchor",): "timezone_aware"}
    assert errors_of(Enrollment, enrollment_data(expires="2031-01-31T00:00:00")) == {("expires",): "timezone_aware"}
    assert errors_of(PeriodWindow, {"start": naive, "end": T0 + timedelta(days=1)}) == {("start",): "timezone_aware"}


def test_aware_datetimes_are_normalised_to_utc() -> None:
    zurich_morning = datetime(2031, 7, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    enrollment = Enrollment.model_validate(enrollment_data(anchor=zurich_morning, expires="2032-01-01T01:00:00+01:00"))
    assert enrollment.anchor == zurich_morning
    assert enrollment.anchor.tzinfo is UTC and enrollment.anchor.hour == 7
    assert enrollment.expires == datetime(2032, 1, 1, tzinfo=UTC) and enrollment.expires.tzinfo is UTC
    window = PeriodWindow(start="2031-01-31T00:00:00Z", end=zurich_morning)
    assert window.start == T0 and window.start.tzinfo is UTC and window.end.tzinfo is UTC


@pytest.mark.parametrize("end", [T0, T0 - timedelta(seconds=1)])
def test_period_end_must_be_after_start(end: datetime) -> None:
    assert errors_of(PeriodWindow, {"start": T0, "end": end}) == {("end",): "value_error"}
    assert errors_of(Period, {"start": T0, "end": end, "order_id": "o-1"}) == {("end",): "value_error"}
    assert "must be after start 2031-01-31T00:00:00Z" in message_at(PeriodWindow, {"start": T0, "end": end}, ("end",))


def test_period_assignment_that_empties_it_is_rejected() -> None:
    window = PeriodWindow(start=T0, end=T0 + timedelta(days=1))
    with pytest.raises(ValidationError, match="must be after start"):
        window.start = T0 + timedelta(days=2)


def test_period_contains_is_end_exclusive() -> None:
    window = PeriodWindow(start=T0, end=T0 + timedelta(days=1))
    assert window.contains(T0)
    assert window.contains(T0 + timedelta(hours=23, minutes=59))
    assert not window.contains(T0 + timedelta(days=1))
    assert not window.contains(T0 - timedelta(microseconds=1))


def test_isoformat_utc() -> None:
    assert isoformat_utc(T0) == "2031-01-31T00:00:00Z"
    assert isoformat_utc(datetime(2031, 1, 31, 1, 0, tzinfo=timezone(timedelta(hours=1)))) == "2031-01-31T00:00:00Z"
    assert isoformat_utc(datetime(2031, 1, 31, 0, 0, 0, 250_000, tzinfo=UTC)) == "2031-01-31T00:00:00.250000Z"
    with pytest.raises(ValueError, match="naive"):
        isoformat_utc(datetime(2031, 1, 31))


# --- enrollment snapshot -------------------------------------------------------------------------------


def test_enrollment_defaults_and_period_lookup() -> None:
    first = Period(start=T0, end=T0 + timedelta(days=14), is_trial=True)
    second = Period(start=first.end, end=first.end + timedelta(days=28), order_id="o-1")
    enrollment = Enrollment.model_validate(enrollment_data(periods=[first, second]))
    assert enrollment.status is EnrollmentStatus.INITIAL
    assert enrollment.latest_period == second
    assert enrollment.period_at(first.end) == second
    assert enrollment.period_at(first.end - timedelta(microseconds=1)) == first
    assert enrollment.period_at(second.end) is None
    assert enrollment.periods_in_schedule == [first, second]
    later = enrollment.model_copy(update={"anchor": second.start})
    assert later.periods_in_schedule == [second]


def test_enrollment_round_trips_through_json() -> None:
    enrollment = Enrollment.model_validate(
        enrollment_data(
            timezone="Europe/Zurich",
            configuration=[{"key": "seats", "value": "5"}],
            periods=[{"start": T0, "end": T0 + timedelta(days=31), "order_id": "o-1", "order_status": "PENDING"}],
            meta={"source": "checkout"},
        )
    )
    assert Enrollment.model_validate_json(enrollment.model_dump_json()) == enrollment


def test_order_configuration_needs_a_position() -> None:
    window = {"start": T0, "end": T0 + timedelta(days=1)}
    assert errors_of(OrderConfiguration, {"period": window, "order_position_templates": []}) == {
        ("order_position_templates",): "too_short"
    }


def test_paid_order_statuses() -> None:
    assert {status for status in OrderStatus if status.is_paid} == {OrderStatus.CONFIRMED, OrderStatus.FULFILLED}


def test_rejected_assignments_leave_the_model_unchanged() -> None:
    window = PeriodWindow(start=T0, end=T0 + timedelta(days=1))
    with pytest.raises(ValidationError):
        window.start = T0 + timedelta(days=2)
    assert window.start == T0
    product = Product(id="p-1", type=ProductType.SIMPLE_PRODUCT)
    with pytest.raises(ValidationError, match="plan is required"):
        product.type = ProductType.PLAN_PRODUCT
    assert product.type is ProductType.SIMPLE_PRODUCT
