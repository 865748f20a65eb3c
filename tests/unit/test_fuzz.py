"""Hypothesis fuzzing of the domain models and the calendar (derandomized: the same examples on every run).

Models: any input either validates into a model that survives a JSON round trip, or fails with a
``ValidationError`` — never another exception. Calendar: for any valid plan, anchor and zone, the periods
are contiguous and anchored, the first starts at the anchor, and the containing-period search agrees.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.calendar import CalendarRangeError, Schedule, preview
from adapters.domain import BillingInterval, EnrollmentTerms, Product, ProductPlan, UsageCalculationType
from adapters.lifecycle import PauseCommand, TerminateCommand

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = [
    "UTC",
    "Europe/Zurich",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Apia",  # skipped 30 December 2011
    "Asia/Kathmandu",  # +05:45
    "America/Santiago",  # DST at midnight
    "Africa/Casablanca",
]
INTERVALS = list(BillingInterval)

json_scalars = st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
ids = st.text(max_size=4) | st.sampled_from(["", "x" * 128, "x" * 129])
interval_names = st.sampled_from([*(interval.value for interval in INTERVALS), "SECONDS", "", "months"])
counts = st.integers(-5, 1_005) | st.none() | st.text(max_size=3)


@st.composite
def plan_dicts(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "usage_calculation_type": st.sampled_from(["LICENSED", "METERED", "FREE"]),
        "billing_interval": interval_names,
        "billing_interval_count": counts,
        "trial_interval": interval_names | st.none(),
        "trial_interval_count": counts,
        "surprise": json_values,
    }
    return {name: draw(strategy) for name, strategy in fields.items() if draw(st.booleans())}


@st.composite
def terms_dicts(draw: st.DrawFn) -> dict[str, Any]:
    configuration = st.lists(
        st.fixed_dictionaries({"key": st.text(max_size=3), "value": st.text(max_size=3)}) | json_values, max_size=2
    )
    fields = {
        "user_id": ids | st.integers(),
        "product_id": ids,
        "quantity": st.integers(-3, 2_000_000) | st.text(max_size=4) | st.floats(allow_nan=True),
        "configuration": configuration,
        "timezone": st.sampled_from([*ZONES, "Mars/Base", "localtime", "../etc/passwd", "", "utc"]),
        "country_code": st.text(max_size=3) | st.none(),
        "billing_address": st.none() | st.fixed_dictionaries({"city": st.text(max_size=4)}) | json_values,
        "meta": json_values,
    }
    return {name: draw(strategy) for name, strategy in fields.items() if draw(st.booleans())}


@FUZZ
@given(plan_dicts())
def test_plans_validate_or_fail_cleanly(data: dict[str, Any]) -> None:
    try:
        plan = ProductPlan.model_validate(data)
    except ValidationError:
        return
    assert plan.billing_interval_count >= 1
    assert plan.trial_interval is not None or plan.trial_interval_count == 0
    assert ProductPlan.model_validate_json(plan.model_dump_json()) == plan
    assert Product(id="p", plan=plan).require_plan() == plan


@FUZZ
@given(terms_dicts())
def test_enrollment_terms_validate_or_fail_cleanly(data: dict[str, Any]) -> None:
    try:
        terms = EnrollmentTerms.model_validate(data)
    except ValidationError as error:
        assert error.errors(), "a rejection names at least one field"
        return
    assert 1 <= terms.quantity <= 1_000_000
    ZoneInfo(terms.timezone)
    assert EnrollmentTerms.model_validate_json(terms.model_dump_json()) == terms


@FUZZ
@given(st.dictionaries(st.sampled_from(["reason", "at_period_end", "immediately", "extra"]), json_values))
def test_commands_validate_or_fail_cleanly(data: dict[str, Any]) -> None:
    for model in (PauseCommand, TerminateCommand):
        try:
            command = model.model_validate(data)
        except ValidationError:
            continue
        assert command.reason is None or len(command.reason) <= 500
        assert not (getattr(command, "at_period_end", False) and getattr(command, "immediately", False))


valid_plans = st.builds(
    ProductPlan,
    usage_calculation_type=st.sampled_from(list(UsageCalculationType)),
    billing_interval=st.sampled_from(INTERVALS),
    billing_interval_count=st.integers(1, 40),
    trial_interval=st.sampled_from(INTERVALS),
    trial_interval_count=st.integers(0, 5),
)
anchors = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2011, 12, 25), max_value=datetime(2012, 1, 5), timezones=st.just(UTC))


@FUZZ
@given(valid_plans, anchors, st.sampled_from(ZONES), st.integers(1, 8))
def test_periods_are_contiguous_anchored_and_found_again(
    plan: ProductPlan, anchor: datetime, zone: str, count: int
) -> None:
    try:
        windows = preview(plan, anchor, zone, count)
    except CalendarRangeError:
        return  # beyond year 9999: refused with a clear error, never a wrong period
    assert len(windows) == count
    assert windows[0].start == anchor
    assert windows[0].is_trial == plan.has_trial
    assert all(window.end > window.start for window in windows)
    assert all(earlier.end == later.start for earlier, later in itertools.pairwise(windows))
    schedule = Schedule(plan=plan, anchor=anchor, timezone=zone)
    billing = [window for window in windows if not window.is_trial]
    for window in windows:
        index = schedule.index_of_period_containing(window.start)
        assert schedule.period(index) == window
        assert schedule.index_of_period_containing(window.end - timedelta(microseconds=1)) == index
    if plan.billing_interval in (BillingInterval.MINUTES, BillingInterval.HOURS):
        unit = timedelta(minutes=1) if plan.billing_interval is BillingInterval.MINUTES else timedelta(hours=1)
        assert all(window.end - window.start == unit * plan.billing_interval_count for window in billing)


@FUZZ
@given(valid_plans, st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_naive_anchors_are_refused(plan: ProductPlan, naive: datetime) -> None:
    try:
        preview(plan, naive, "UTC", 1)
    except ValueError as error:
        assert "must be timezone-aware" in str(error)
    else:
        raise AssertionError("a naive anchor must be refused")
