"""The fault suite's short form, part of every test run: two workers killed with kill -9 in turn, crashes after
commit, the command driver (pause, resume, terminate, order statuses, metered usage) throughout, the events of
every change delivered to a webhook receiver, and at the end the agreement of every workflow with the database.

The full form (``make chaos``: 200 enrollments, PostgreSQL outage, Temporal restart) is in
``tests/chaos/run.py``. This one uses a scratch database on the test PostgreSQL server and its own dev
server on free loopback ports.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from activities.faults import FaultInjector, FaultPoint, InjectedFault, parse_fault_spec
from adapters.domain import BillingInterval, ProductPlan
from tests.chaos.harness import Report, StoredPeriod, active_windows, check_commanded
from tests.chaos.run import ChaosConfig, run_chaos

SHORT = ChaosConfig(
    enrollments=24,
    metered_enrollments=4,
    commanded=0.34,
    command_interval=0.25,
    command_timeout=5.0,
    workers=2,
    backlog_periods=2,
    duration=14.0,
    worker_kills=2,
    postgres_outage=0.0,
    restart_temporal=False,
    fault_probability=0.1,
    settle_timeout=120.0,
)


async def test_kill_9_and_crashes_after_commit_lose_and_duplicate_nothing(test_databases, tmp_path: Path) -> None:
    database_url = await test_databases.scratch_url("postgresql")
    report = await run_chaos(SHORT, tmp_path, database_url=database_url)
    assert report.enrollments == SHORT.enrollments + SHORT.metered_enrollments
    assert report.periods >= SHORT.enrollments * (SHORT.backlog_periods + 1)
    assert report.orders == report.periods  # no trial: every licensed period is billed once
    assert report.commands >= 20  # answered or rejected, each through its faults
    assert (report.lost, report.duplicated) == (0, 0), report.problems[:10]
    assert (report.disagreements, report.wedged) == (0, 0)  # the findings are on stderr
    # Every period and order has its event, plus each enrollment's created and activated; all reached the receiver.
    assert report.events >= report.periods + report.orders + 2 * SHORT.enrollments
    assert (report.events_lost, report.events_duplicated) == (0, 0), report.problems[:10]


def test_fault_spec_arms_a_probability_and_is_off_by_default() -> None:
    assert parse_fault_spec(None) == {} == parse_fault_spec("  ")
    injector = FaultInjector()
    for _ in range(100):
        injector.hit(FaultPoint.AFTER_COMMIT)  # unarmed: never fires
    assert injector.configure("after_commit:1") == {FaultPoint.AFTER_COMMIT: 1.0}
    try:
        injector.hit(FaultPoint.AFTER_COMMIT)
    except InjectedFault as fault:
        assert "after_commit" in str(fault)
    else:
        raise AssertionError("an armed fault point with probability 1 must fire")
    injector.disarm()
    injector.arm_probability(FaultPoint.AFTER_COMMIT, 0.25, seed=4)
    fired = 0
    for _ in range(2_000):
        try:
            injector.hit(FaultPoint.AFTER_COMMIT)
        except InjectedFault:
            fired += 1
    assert 400 < fired < 600


def test_the_commanded_schedule_check_finds_gaps_overlaps_and_periods_in_a_pause() -> None:
    plan = ProductPlan(billing_interval=BillingInterval.MINUTES)
    start = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)

    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    def period(begin: float) -> StoredPeriod:
        return (at(begin), at(begin + 1), False, f"order-{begin}")

    def findings(log: list[tuple[datetime, str]], periods: list[StoredPeriod]) -> tuple[int, int]:
        report = Report()
        orders = {order_id for *_, order_id in periods if order_id}
        check_commanded(report, "e", start, log, periods, at(6), plan, orders)
        return report.lost, report.duplicated

    # Paused at 1.5, resumed at 3.25 (after its period ended): a new schedule from the resume.
    log = [(at(1.5), "PAUSED"), (at(3.25), "ACTIVE")]
    assert active_windows(start, log) == [(start, at(1.5)), (at(3.25), None)]
    good = [period(0), period(1), period(3.25), period(4.25), period(5.25)]
    assert findings(log, good) == (0, 0)
    assert findings(log, good[:-1]) == (1, 0)  # 5.25–6 (the cutoff) is lost
    assert findings(log, [*good[:2], *good[3:]]) == (1, 1)  # 3.25–4.25 lost, and the next one off its schedule
    assert findings(log, [*good[:2], period(2), *good[2:]]) == (0, 1)  # a period while paused
    again = (at(3.25), at(4.25), False, "order-again")
    assert findings(log, [*good[:3], again, *good[3:]]) == (0, 1)  # the same period twice
    assert findings(log, [*good[:-1], (at(5.25), at(6.25), False, None)]) == (1, 0)  # no order
