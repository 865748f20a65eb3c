"""Calendar math: property-based checks against an independent reference, and the documented examples.

The reference below does its own month arithmetic and its own resolution of local wall-clock times
(gap → offset before the jump, i.e. shifted forward by the gap; fold → first occurrence), so the properties
compare ``adapters.calendar`` with a second implementation rather than with itself.
Set ``CALENDAR_EXAMPLES`` to run more examples locally.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.calendar import (
    CalendarRangeError,
    Schedule,
    SkippedPeriodError,
    next_period_window,
    preview,
    shift,
)
from adapters.domain import BillingInterval, Period, PeriodWindow, ProductPlan

PROPERTIES = settings(
    max_examples=int(os.environ.get("CALENDAR_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ZONES = [
    "UTC",
    "Europe/Zurich",
    "Europe/London",
    "Europe/Dublin",  # "negative DST" in tzdata
    "Europe/Lisbon",
    "Europe/Moscow",
    "Europe/Istanbul",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Halifax",
    "America/St_Johns",
    "America/Havana",  # transitions at midnight
    "America/Santiago",
    "America/Asuncion",
    "America/Sao_Paulo",
    "America/Caracas",
    "America/Nuuk",
    "Atlantic/Azores",
    "Africa/Casablanca",  # DST suspended during Ramadan
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Asia/Tehran",
    "Asia/Jerusalem",
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Lord_Howe",  # 30-minute DST
    "Australia/Sydney",
    "Australia/Adelaide",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Apia",  # skipped 30 December 2011 entirely
    "Pacific/Fakaofo",
    "Pacific/Kiritimati",
    "Pacific/Honolulu",
    "Antarctica/Troll",  # two-hour DST
    "Antarctica/Casey",
]

EXACT = {BillingInterval.MINUTES: timedelta(minutes=1), BillingInterval.HOURS: timedelta(hours=1)}
CALENDAR_UNITS = [BillingInterval.DAYS, BillingInterval.WEEKS, BillingInterval.MONTHS, BillingInterval.YEARS]


# --- independent reference -----------------------------------------------------------------------------


def ref_days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def ref_add(wall: datetime, unit: BillingInterval, n: int) -> datetime:
    """A naive local wall-clock time moved ``n`` calendar units, months clamped to the month's last day."""
    if unit is BillingInterval.DAYS:
        return wall + timedelta(days=n)
    if unit is BillingInterval.WEEKS:
        return wall + timedelta(days=7 * n)
    months = n if unit is BillingInterval.MONTHS else 12 * n
    assert unit in (BillingInterval.MONTHS, BillingInterval.YEARS)
    zero_based = wall.month - 1 + months
    year, month = wall.year + zero_based // 12, zero_based % 12 + 1
    day = min(wall.day, ref_days_in_month(year, month))
    return datetime(year, month, day, wall.hour, wall.minute, wall.second, wall.microsecond)


def local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def offsets_at(wall: datetime, zone: ZoneInfo) -> tuple[timedelta, timedelta]:
    """The (smaller, larger) UTC offsets in play around a local wall-clock time."""
    found = {wall.replace(tzinfo=zone, fold=fold).utcoffset() for fold in (0, 1)}
    values = sorted(offset for offset in found if offset is not None)
    return values[0], values[-1]


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    low, high = offsets_at(wall, zone)
    return any(local((wall - offset).replace(tzinfo=UTC), zone) == wall for offset in {low, high})


def ref_resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant of a local wall-clock time: earliest valid one, or (in a gap) the pre-jump offset."""
    low, high = offsets_at(wall, zone)
    candidates = sorted((wall - offset).replace(tzinfo=UTC) for offset in {low, high})
    valid = [candidate for candidate in candidates if local(candidate, zone) == wall]
    if valid:
        return valid[0]
    # A gap: the clocks jumped forward from the smaller offset, which therefore was in force before it.
    return (wall - low).replace(tzinfo=UTC)


def ref_billing_anchor(plan: ProductPlan, anchor: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """(instant, wall clock) at which billing starts: the anchor, or the trial end."""
    if not plan.has_trial:
        return anchor, local(anchor, zone)
    assert plan.trial_interval is not None
    if plan.trial_interval in EXACT:
        end = anchor + EXACT[plan.trial_interval] * plan.trial_interval_count
        return end, local(end, zone)
    wall = ref_add(local(anchor, zone), plan.trial_interval, plan.trial_interval_count)
    return ref_resolve(wall, zone), wall


def ref_billing_wall(plan: ProductPlan, anchor: datetime, zone: ZoneInfo, n: int) -> datetime:
    _, wall = ref_billing_anchor(plan, anchor, zone)
    return ref_add(wall, plan.billing_interval, n * plan.billing_interval_count)


def ref_billing_start(plan: ProductPlan, anchor: datetime, zone: ZoneInfo, n: int) -> datetime:
    instant, _ = ref_billing_anchor(plan, anchor, zone)
    if n == 0:
        return instant
    if plan.billing_interval in EXACT:
        return instant + EXACT[plan.billing_interval] * (n * plan.billing_interval_count)
    return ref_resolve(ref_billing_wall(plan, anchor, zone, n), zone)


# --- strategies ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    plan: ProductPlan
    anchor: datetime
    timezone: str
    n: int

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def schedule(self) -> Schedule:
        return Schedule(plan=self.plan, anchor=self.anchor, timezone=self.timezone)


@st.composite
def local_walls(draw: st.DrawFn) -> datetime:
    """Local wall-clock times 2000–2100, biased to month ends and the small hours where DST changes happen."""
    year = draw(st.integers(2000, 2100))
    month = draw(st.integers(1, 12))
    day = min(draw(st.one_of(st.integers(1, 31), st.sampled_from([28, 29, 30, 31]))), ref_days_in_month(year, month))
    hour = draw(st.one_of(st.integers(0, 23), st.sampled_from([0, 1, 2, 3, 23])))
    minute = draw(st.one_of(st.integers(0, 59), st.sampled_from([0, 30, 45])))
    second = draw(st.sampled_from([0, 0, 0, 59]))
    return datetime(year, month, day, hour, minute, second)


@functools.cache
def transitions(timezone: str) -> tuple[tuple[datetime, timedelta], ...]:
    """The zone's UTC-offset changes 2000–2100 as (instant, offset before), found by weekly sampling and bisection."""
    zone = ZoneInfo(timezone)
    found: list[tuple[datetime, timedelta]] = []
    week = 7 * 86_400

    def offset(timestamp: int) -> timedelta | None:
        return datetime.fromtimestamp(timestamp, UTC).astimezone(zone).utcoffset()

    at = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2101, 1, 1, tzinfo=UTC).timestamp())
    last = offset(at)
    while at < end:
        following = offset(at + week)
        if following != last:
            low, high = at, at + week  # offset(low) == last != offset(high)
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == last else (low, middle)
            assert last is not None
            found.append((datetime.fromtimestamp(high, UTC), last))
        at, last = at + week, following
    return tuple(found)


def in_range(wall: datetime) -> bool:
    return 2000 <= wall.year <= 2100


@st.composite
def near_transition(draw: st.DrawFn, timezone: str, plan: ProductPlan, n: int) -> datetime | None:
    """A local wall-clock time whose trial end or some billing step lands within two hours of a DST change."""
    changes = transitions(timezone)
    if not changes:
        return None
    instant, offset_before = draw(st.sampled_from(changes))
    target = instant.replace(tzinfo=None) + offset_before + timedelta(minutes=draw(st.integers(-120, 120)))
    if plan.billing_interval in EXACT:
        wall = target
    else:
        wall = ref_add(target, plan.billing_interval, -draw(st.integers(0, n - 1)) * plan.billing_interval_count)
    if plan.has_trial and plan.trial_interval is not None and plan.trial_interval not in EXACT and in_range(wall):
        wall = ref_add(wall, plan.trial_interval, -plan.trial_interval_count)
    return wall if in_range(wall) else target


@st.composite
def cases(draw: st.DrawFn, billing: st.SearchStrategy[BillingInterval] | None = None) -> Case:
    timezone = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(timezone)
    trial = draw(st.one_of(st.none(), st.sampled_from(list(BillingInterval))))
    counts = st.one_of(st.just(1), st.integers(1, 36))
    plan = ProductPlan(
        billing_interval=draw(billing if billing is not None else st.sampled_from(list(BillingInterval))),
        billing_interval_count=draw(counts),
        trial_interval=trial,
        trial_interval_count=draw(counts) if trial is not None else 0,
    )
    n = draw(st.integers(1, 40))
    wall = None
    if draw(st.booleans()):
        wall = draw(near_transition(timezone, plan, n))
    if wall is None:
        wall = draw(local_walls())
    fold = draw(st.integers(0, 1))
    anchor = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    return Case(plan=plan, anchor=anchor, timezone=timezone, n=n)


DAILY = ProductPlan(billing_interval=BillingInterval.DAYS)
APIA_SKIPPED_DAY = Case(DAILY, datetime(2011, 12, 27, 20, tzinfo=UTC), "Pacific/Apia", 5)  # 2011-12-30 never happened
NEW_YORK_SECOND_0130 = Case(DAILY, datetime(2024, 11, 3, 6, 30, tzinfo=UTC), "America/New_York", 3)  # 01:30 EST
NEW_YORK_SPRING_GAP = Case(DAILY, datetime(2024, 3, 8, 7, 30, tzinfo=UTC), "America/New_York", 4)  # 02:30 skipped


# --- properties ----------------------------------------------------------------------------------------


@PROPERTIES
@given(cases())
@example(APIA_SKIPPED_DAY)
def test_periods_are_contiguous_and_strictly_increasing(case: Case) -> None:
    windows = case.schedule.periods(case.n)
    assert len(windows) == case.n
    assert windows[0].start == case.anchor
    assert windows[0].is_trial is case.plan.has_trial
    assert not any(window.is_trial for window in windows[1:])
    for window in windows:
        assert window.end > window.start
        assert window.start.tzinfo is UTC and window.end.tzinfo is UTC
    for earlier, later in itertools.pairwise(windows):
        assert earlier.end == later.start
        assert later.start > earlier.start


@PROPERTIES
@given(cases())
@example(NEW_YORK_SECOND_0130)
def test_billing_starts_do_not_drift(case: Case) -> None:
    """The n-th billing start is the billing anchor moved n × count units, never derived from the previous end."""
    for n in range(case.n):
        assert case.schedule.billing_start(n) == ref_billing_start(case.plan, case.anchor, case.zone, n), n


@PROPERTIES
@given(cases(billing=st.sampled_from(list(EXACT))))
def test_hours_and_minutes_are_exact_durations(case: Case) -> None:
    unit = EXACT[case.plan.billing_interval] * case.plan.billing_interval_count
    windows = [window for window in case.schedule.periods(case.n) if not window.is_trial]
    assert all(window.end - window.start == unit for window in windows)


@PROPERTIES
@given(cases(billing=st.sampled_from(CALENDAR_UNITS)))
@example(NEW_YORK_SPRING_GAP)
def test_calendar_units_keep_the_local_wall_clock(case: Case) -> None:
    """Every billing start after the first is at the anchor's wall-clock time, or shifted forward by a DST gap."""
    zone = case.zone
    for n in range(1, case.n):
        wanted = ref_billing_wall(case.plan, case.anchor, zone, n)
        actual = local(case.schedule.billing_start(n), zone)
        if exists(wanted, zone):
            assert actual == wanted, n
        else:
            low, high = offsets_at(wanted, zone)
            assert actual == wanted + (high - low), n


@PROPERTIES
@given(cases(), st.data())
def test_index_of_period_containing_agrees_with_a_linear_scan(case: Case, data: st.DataObject) -> None:
    schedule = case.schedule
    bounds = [schedule.start(index) for index in range(case.n + 1)]
    if data.draw(st.booleans(), label="on a boundary"):
        at = bounds[data.draw(st.integers(0, case.n - 1), label="boundary")]
    else:
        span = int((bounds[-1] - bounds[0]).total_seconds())
        at = bounds[0] + timedelta(seconds=data.draw(st.integers(0, max(span - 1, 0)), label="offset"))
    scanned = next(index for index in range(case.n) if bounds[index] <= at < bounds[index + 1])
    assert schedule.index_of_period_containing(at) == scanned
    window = schedule.period(scanned)
    assert window.start <= at < window.end


@PROPERTIES
@given(cases())
def test_next_period_window_walks_the_schedule(case: Case) -> None:
    """Feeding next_period_window its own output reproduces the schedule's periods."""
    periods: list[Period] = []
    for _ in range(min(case.n, 12)):
        window = next_period_window(case.plan, case.anchor, case.timezone, periods)
        periods.append(Period(start=window.start, end=window.end, is_trial=window.is_trial))
    expected = case.schedule.periods(len(periods))
    assert [PeriodWindow(start=p.start, end=p.end, is_trial=p.is_trial) for p in periods] == expected


# --- the examples of docs/enrollment-lifecycle.md -----------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def starts(plan: ProductPlan, anchor: datetime, count: int, timezone: str = "UTC") -> list[datetime]:
    return [window.start for window in preview(plan, anchor, timezone, count)]


MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
YEARLY = ProductPlan(billing_interval=BillingInterval.YEARS)


def test_monthly_from_january_31_in_a_leap_year_clamps_without_drifting() -> None:
    assert starts(MONTHLY, utc(2024, 1, 31), 5) == [
        utc(2024, 1, 31),
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 4, 30),
        utc(2024, 5, 31),
    ]


def test_monthly_from_january_31_in_a_common_year() -> None:
    assert starts(MONTHLY, utc(2023, 1, 31), 3) == [utc(2023, 1, 31), utc(2023, 2, 28), utc(2023, 3, 31)]


def test_yearly_from_february_29_returns_to_february_29_in_leap_years() -> None:
    assert starts(YEARLY, utc(2024, 2, 29, 12), 5) == [
        utc(2024, 2, 29, 12),
        utc(2025, 2, 28, 12),
        utc(2026, 2, 28, 12),
        utc(2027, 2, 28, 12),
        utc(2028, 2, 29, 12),
    ]


def test_zurich_monthly_keeps_nine_o_clock_local_across_both_dst_switches() -> None:
    zurich = ZoneInfo("Europe/Zurich")
    anchor = datetime(2024, 1, 15, 9, tzinfo=zurich)
    windows = preview(MONTHLY, anchor, "Europe/Zurich", 12)
    assert [window.start.astimezone(zurich).hour for window in windows] == [9] * 12
    assert [window.start.hour for window in windows] == [8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 8, 8]
    assert windows[2].start == utc(2024, 3, 15, 8) and windows[3].start == utc(2024, 4, 15, 7)
    assert windows[9].start == utc(2024, 10, 15, 7) and windows[10].start == utc(2024, 11, 15, 8)


def test_hours_are_exactly_3600_seconds_across_dst() -> None:
    hourly = ProductPlan(billing_interval=BillingInterval.HOURS)
    # 2024-03-31 in Zurich: 02:00 local does not exist; 2024-10-27: 02:00–03:00 happens twice.
    for anchor in (datetime(2024, 3, 30, 23, tzinfo=UTC), datetime(2024, 10, 26, 23, tzinfo=UTC)):
        windows = preview(hourly, anchor, "Europe/Zurich", 6)
        assert [(window.end - window.start).total_seconds() for window in windows] == [3600.0] * 6
        assert windows[-1].end == anchor + timedelta(hours=6)


def test_fourteen_day_trial_then_monthly_anchored_at_the_trial_end() -> None:
    plan = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=14
    )
    windows = preview(plan, utc(2024, 1, 20, 10), "UTC", 4)
    assert windows[0] == PeriodWindow(start=utc(2024, 1, 20, 10), end=utc(2024, 2, 3, 10), is_trial=True)
    assert [(w.start, w.end, w.is_trial) for w in windows[1:]] == [
        (utc(2024, 2, 3, 10), utc(2024, 3, 3, 10), False),
        (utc(2024, 3, 3, 10), utc(2024, 4, 3, 10), False),
        (utc(2024, 4, 3, 10), utc(2024, 5, 3, 10), False),
    ]


def test_trial_ending_on_the_31st_anchors_billing_there_and_clamps() -> None:
    plan = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=30
    )
    assert starts(plan, utc(2024, 1, 1), 5) == [
        utc(2024, 1, 1),
        utc(2024, 1, 31),
        utc(2024, 2, 29),
        utc(2024, 3, 31),
        utc(2024, 4, 30),
    ]


def test_new_york_daily_at_0230_through_the_spring_forward_gap() -> None:
    new_york = ZoneInfo("America/New_York")
    daily = ProductPlan(billing_interval=BillingInterval.DAYS)
    anchor = datetime(2024, 3, 8, 2, 30, tzinfo=new_york)  # 2024-03-10 02:00–03:00 does not exist
    windows = preview(daily, anchor, "America/New_York", 5)
    local_starts = [window.start.astimezone(new_york).replace(tzinfo=None) for window in windows]
    assert local_starts == [
        datetime(2024, 3, 8, 2, 30),
        datetime(2024, 3, 9, 2, 30),
        datetime(2024, 3, 10, 3, 30),  # shifted forward by the one-hour gap
        datetime(2024, 3, 11, 2, 30),  # back on the anchor's wall clock: no drift
        datetime(2024, 3, 12, 2, 30),
    ]
    assert [window.end - window.start for window in windows[:4]] == [
        timedelta(hours=24),
        timedelta(hours=24),
        timedelta(hours=23),
        timedelta(hours=24),
    ]


def test_anchor_at_the_second_occurrence_of_an_ambiguous_time_starts_the_first_period_there() -> None:
    # 2024-11-03 01:30 happens twice in New York; 06:30 UTC is the second (EST) one.
    anchor = utc(2024, 11, 3, 6, 30)
    windows = preview(ProductPlan(billing_interval=BillingInterval.DAYS), anchor, "America/New_York", 2)
    assert windows[0].start == anchor
    assert windows[0].end == utc(2024, 11, 4, 6, 30)
    assert shift(anchor, BillingInterval.DAYS, 0, "America/New_York") == anchor


def test_a_day_the_zone_skipped_has_no_period() -> None:
    apia = ZoneInfo("Pacific/Apia")
    daily = ProductPlan(billing_interval=BillingInterval.DAYS)
    anchor = datetime(2011, 12, 28, 10, tzinfo=apia)
    schedule = Schedule(plan=daily, anchor=anchor, timezone="Pacific/Apia")
    windows = schedule.periods(4)
    assert [window.start.astimezone(apia).date().day for window in windows] == [28, 29, 31, 1]
    assert windows[1].end - windows[1].start == timedelta(hours=24)
    assert schedule.is_skipped(2)
    with pytest.raises(SkippedPeriodError, match="2011-12-30T10:00:00 local time, which Pacific/Apia skipped"):
        schedule.period(2)
    assert schedule.index_of_period_containing(windows[2].start) == 3
    stored = [Period(start=w.start, end=w.end) for w in windows[:2]]
    assert next_period_window(daily, anchor, "Pacific/Apia", stored) == windows[2]


def test_next_period_window_gets_misaligned_periods_back_onto_the_schedule() -> None:
    stored = [Period(start=utc(2024, 1, 31), end=utc(2024, 2, 20))]
    window = next_period_window(MONTHLY, utc(2024, 1, 31), "UTC", stored)
    assert window == PeriodWindow(start=utc(2024, 2, 20), end=utc(2024, 2, 29))


def test_next_period_window_starts_a_fresh_schedule_without_trial_after_a_new_anchor() -> None:
    plan = ProductPlan(
        billing_interval=BillingInterval.MONTHS, trial_interval=BillingInterval.DAYS, trial_interval_count=14
    )
    first = next_period_window(plan, utc(2024, 1, 1), "UTC", [])
    assert first == PeriodWindow(start=utc(2024, 1, 1), end=utc(2024, 1, 15), is_trial=True)
    old = [Period(start=first.start, end=first.end, is_trial=True)]
    resumed = next_period_window(plan, utc(2024, 3, 10), "UTC", old)
    assert resumed == PeriodWindow(start=utc(2024, 3, 10), end=utc(2024, 4, 10))


def test_schedules_beyond_year_9999_fail_clearly() -> None:
    plan = ProductPlan(billing_interval=BillingInterval.YEARS, billing_interval_count=1000)
    with pytest.raises(CalendarRangeError, match="outside the supported calendar"):
        preview(plan, utc(2031, 1, 1), "UTC", 10)


def test_naive_anchor_is_rejected() -> None:
    with pytest.raises(ValueError, match="anchor must be timezone-aware"):
        Schedule(plan=MONTHLY, anchor=datetime(2024, 1, 1))


def test_index_before_the_anchor_is_rejected() -> None:
    with pytest.raises(ValueError, match="before the schedule anchor"):
        Schedule(plan=MONTHLY, anchor=utc(2024, 1, 1)).index_of_period_containing(utc(2023, 12, 31))
