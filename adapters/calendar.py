"""Anchored calendar math: period *n* starts at ``anchor + n × interval``, never at the previous end.

Calendar units (DAYS, WEEKS, MONTHS, YEARS) move the local wall-clock time in the enrollment's time zone,
so a monthly period that starts at 09:00 in Zurich starts at 09:00 there in winter and in summer.
Months and years clamp to the last day of a shorter month (Jan 31 → Feb 28/29 → Mar 31) without drifting,
because each start is computed from the anchor. HOURS and MINUTES are exact durations.

A local time that does not exist (skipped by a DST change) resolves to the same UTC offset as before the
change (02:30 → 03:30 on a spring-forward night); an ambiguous one to its first occurrence. Only the one
boundary moves; the next is computed from the anchor again. The first billing period always starts exactly
at the anchor (or the trial end), even when that instant is the second occurrence of an ambiguous time.

A calendar step whose local date the zone skipped entirely (Samoa and Tokelau dropped 30 December 2011)
resolves to the same instant as the next step: that step has no period (:class:`SkippedPeriodError`);
:meth:`Schedule.periods` and :func:`next_period_window` go straight on to the next one.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters.domain import BillingInterval, Period, PeriodWindow, ProductPlan

_EXACT_UNITS = {
    BillingInterval.MINUTES: timedelta(minutes=1),
    BillingInterval.HOURS: timedelta(hours=1),
}


class InvalidPlanError(ValueError):
    """A plan that cannot produce a period; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class CalendarRangeError(ValueError):
    """A date that falls outside what ``datetime`` can represent (years 1 to 9999)."""


class SkippedPeriodError(ValueError):
    """A schedule step whose local start does not exist at all in the zone, so it has no period."""

    def __init__(self, index: int, wall_clock: datetime, timezone: str) -> None:
        super().__init__(f"period {index} would start at {wall_clock.isoformat()} local time, which {timezone} skipped")
        self.index = index


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _add_months(local: datetime, months: int) -> datetime:
    month_index = local.year * 12 + (local.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    last_day = _stdlib_calendar.monthrange(year, month)[1]
    return local.replace(year=year, month=month, day=min(local.day, last_day))


def _resolve_local(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall-clock time as a UTC instant (gaps move forward, folds take the first)."""
    try:
        return wall_clock.replace(tzinfo=zone, fold=0).astimezone(UTC)
    except OverflowError as error:
        raise CalendarRangeError(f"{wall_clock.isoformat()} is outside the supported calendar") from error


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall-clock time of an aware ``instant`` in ``zone``."""
    try:
        return instant.astimezone(zone).replace(tzinfo=None, fold=0)
    except OverflowError as error:
        raise CalendarRangeError(f"{instant.isoformat()} in {zone.key} is outside the supported calendar") from error


def _exact_shift(instant: datetime, interval: BillingInterval, count: int) -> datetime:
    try:
        return instant.astimezone(UTC) + _EXACT_UNITS[interval] * count
    except OverflowError as error:
        message = f"{instant.isoformat()} + {count} {interval} is outside the supported calendar"
        raise CalendarRangeError(message) from error


def shift(anchor: datetime, interval: BillingInterval, count: int, timezone: str = "UTC") -> datetime:
    """``anchor`` moved by ``count`` intervals (count may be 0 or negative), as a UTC datetime."""
    _require_aware("anchor", anchor)
    if interval in _EXACT_UNITS:
        return _exact_shift(anchor, interval, count)
    if count == 0:
        return anchor.astimezone(UTC)
    zone = ZoneInfo(timezone)
    return _resolve_local(_shift_wall_clock(_wall_clock(anchor, zone), interval, count), zone)


def _shift_wall_clock(wall: datetime, interval: BillingInterval, count: int) -> datetime:
    try:
        if interval is BillingInterval.DAYS:
            return wall + timedelta(days=count)
        if interval is BillingInterval.WEEKS:
            return wall + timedelta(weeks=count)
        if interval is BillingInterval.MONTHS:
            return _add_months(wall, count)
        if interval is BillingInterval.YEARS:
            return _add_months(wall, 12 * count)
    except (OverflowError, ValueError) as error:  # year outside 1..9999
        raise CalendarRangeError(
            f"{wall.isoformat()} + {count} {interval} is outside the supported calendar (years 1 to 9999)"
        ) from error
    raise ValueError(f"{interval} is not a calendar unit")


def local_time_text(instant: datetime, timezone: str) -> str:
    """``instant`` on the wall clock of ``timezone``, to the second, with its offset: ``2031-01-31 10:00:00 +01:00``."""
    _require_aware("instant", instant)
    local = instant.astimezone(ZoneInfo(timezone)).isoformat(sep=" ", timespec="seconds")
    return f"{local[:19]} {local[19:]}"


def validate_plan(plan: ProductPlan) -> None:
    """Raise :class:`InvalidPlanError` naming the field when ``plan`` cannot make a period."""
    if plan.billing_interval is None:
        raise InvalidPlanError("billing_interval", "is required")
    if plan.billing_interval_count < 1:
        raise InvalidPlanError("billing_interval_count", "must be at least 1")
    if plan.trial_interval_count < 0:
        raise InvalidPlanError("trial_interval_count", "must not be negative")
    if plan.trial_interval_count > 0 and plan.trial_interval is None:
        raise InvalidPlanError("trial_interval", "is required when trial_interval_count > 0")


@dataclass(frozen=True, slots=True)
class Schedule:
    """The periods of one plan from one anchor, in one time zone; ``with_trial`` puts the trial first.

    Index 0 is the trial when there is one; billing period *k* then starts at the trial end moved *k*
    billing intervals (billing is anchored at the trial end). All arithmetic is on the local wall clock
    of the anchor, so the trial end and every billing start keep the anchor's local time.

    Indexes count calendar steps from the anchor, so a step the zone skipped (see the module docstring)
    keeps its index but has no period: :meth:`period` raises for it, :meth:`periods` leaves it out.
    """

    plan: ProductPlan
    anchor: datetime
    timezone: str = "UTC"
    with_trial: bool = True

    def __post_init__(self) -> None:
        _require_aware("anchor", self.anchor)
        validate_plan(self.plan)
        ZoneInfo(self.timezone)

    @property
    def has_trial(self) -> bool:
        return self.with_trial and self.plan.has_trial

    def _billing_anchor(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """Where billing starts, as (UTC instant, local wall clock): the anchor, or the end of the trial."""
        anchor = self.anchor.astimezone(UTC)
        if not self.has_trial:
            return anchor, _wall_clock(anchor, zone)
        trial, trial_count = self.plan.trial_interval, self.plan.trial_interval_count
        assert trial is not None
        if trial in _EXACT_UNITS:
            trial_end = _exact_shift(anchor, trial, trial_count)
            return trial_end, _wall_clock(trial_end, zone)
        wall = _shift_wall_clock(_wall_clock(anchor, zone), trial, trial_count)
        return _resolve_local(wall, zone), wall

    def _billing_wall_clock(self, k: int) -> datetime:
        """The local wall-clock time billing step ``k`` aims at (before gap resolution)."""
        zone = ZoneInfo(self.timezone)
        _, wall = self._billing_anchor(zone)
        plan = self.plan
        if plan.billing_interval in _EXACT_UNITS:
            return _wall_clock(self.billing_start(k), zone)
        return _shift_wall_clock(wall, plan.billing_interval, k * plan.billing_interval_count)

    def billing_start(self, k: int) -> datetime:
        """Start of billing step ``k`` (0-based, after any trial), in UTC: the billing anchor moved k intervals.

        Step 0 is the billing anchor itself (the exact anchor or trial-end instant).
        """
        if k < 0:
            raise ValueError(f"billing step must be >= 0, got {k}")
        plan = self.plan
        zone = ZoneInfo(self.timezone)
        instant, wall = self._billing_anchor(zone)
        if k == 0:
            return instant
        if plan.billing_interval in _EXACT_UNITS:
            return _exact_shift(instant, plan.billing_interval, k * plan.billing_interval_count)
        return _resolve_local(_shift_wall_clock(wall, plan.billing_interval, k * plan.billing_interval_count), zone)

    def start(self, index: int) -> datetime:
        """Start of schedule step ``index`` (0 is the trial when the schedule has one), in UTC."""
        if index < 0:
            raise ValueError(f"period index must be >= 0, got {index}")
        if self.has_trial:
            if index == 0:
                return self.anchor.astimezone(UTC)
            index -= 1
        return self.billing_start(index)

    def period(self, index: int) -> PeriodWindow:
        """Period ``index`` of the schedule (0 is the trial when the schedule has one).

        Raises :class:`SkippedPeriodError` for a step whose local date the zone skipped (it has no period).
        """
        start, end = self.start(index), self.start(index + 1)
        is_trial = self.has_trial and index == 0
        if end <= start:
            billing_step = index - 1 if self.has_trial else index
            raise SkippedPeriodError(index, self._billing_wall_clock(billing_step), self.timezone)
        return PeriodWindow(start=start, end=end, is_trial=is_trial)

    def is_skipped(self, index: int) -> bool:
        """Whether step ``index`` has no period because the zone skipped its local date."""
        return self.start(index + 1) <= self.start(index)

    def periods(self, count: int, first_index: int = 0) -> list[PeriodWindow]:
        """``count`` consecutive periods from step ``first_index`` on (skipped steps are left out)."""
        windows: list[PeriodWindow] = []
        index = first_index
        while len(windows) < count:
            if not self.is_skipped(index):
                windows.append(self.period(index))
            index += 1
        return windows

    def index_of_period_containing(self, at: datetime) -> int:
        """Index of the period with ``start <= at < end``; ``at`` must not be before the anchor."""
        _require_aware("at", at)
        if at < self.anchor:
            raise ValueError(f"{at.isoformat()} is before the schedule anchor {self.anchor.isoformat()}")
        offset = 1 if self.has_trial else 0
        if self.has_trial and at < self.billing_start(0):
            return 0
        # Estimate from the average unit length, then walk: exact, and O(1) steps in practice.
        approximate = {
            BillingInterval.MINUTES: 60.0,
            BillingInterval.HOURS: 3_600.0,
            BillingInterval.DAYS: 86_400.0,
            BillingInterval.WEEKS: 604_800.0,
            BillingInterval.MONTHS: 2_629_746.0,
            BillingInterval.YEARS: 31_556_952.0,
        }[self.plan.billing_interval] * self.plan.billing_interval_count
        k = max(0, int((at - self.billing_start(0)).total_seconds() // approximate))
        while k > 0 and self.billing_start(k) > at:
            k -= 1
        while self.billing_start(k + 1) <= at:
            k += 1
        return k + offset


def preview(
    plan: ProductPlan, start: datetime, timezone: str = "UTC", count: int = 12, *, with_trial: bool = True
) -> list[PeriodWindow]:
    """The first ``count`` periods of ``plan`` anchored at ``start`` in ``timezone``; no side effects."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return Schedule(plan=plan, anchor=start, timezone=timezone, with_trial=with_trial).periods(count)


def schedule_for(plan: ProductPlan, anchor: datetime, timezone: str, periods: list[Period]) -> Schedule:
    """The schedule an enrollment is on: a trial only if its very first period is (or will be) the trial."""
    in_schedule = [period for period in periods if period.start >= anchor]
    with_trial = in_schedule[0].is_trial if in_schedule else not periods
    return Schedule(plan=plan, anchor=anchor, timezone=timezone, with_trial=with_trial)


def next_period_window(plan: ProductPlan, anchor: datetime, timezone: str, periods: list[Period]) -> PeriodWindow:
    """The period that follows ``periods`` on the schedule anchored at ``anchor`` (contiguous, anchored).

    With no period on the schedule yet, it is the schedule's first period. Otherwise it starts where the
    latest one ends and runs to the end of the schedule period containing that instant — the next period
    on the schedule when the stored periods follow it (skipped steps are passed over), and a shortened one
    that gets back onto the schedule when they do not.
    """
    schedule = schedule_for(plan, anchor, timezone, periods)
    in_schedule = [period for period in periods if period.start >= anchor]
    if not in_schedule:
        return schedule.periods(1)[0]
    latest_end = in_schedule[-1].end
    window = schedule.period(schedule.index_of_period_containing(latest_end))
    if window.start == latest_end:
        return window
    return PeriodWindow(start=latest_end, end=window.end, is_trial=window.is_trial)
