"""The fault suite's short form, part of every test run: worker kill -9 and crashes after commit, and the events
of every change delivered to a webhook receiver throughout.

The full form (``make chaos``: 200 enrollments, PostgreSQL outage, Temporal restart) is in
``tests/chaos/run.py``. This one uses a scratch database on the test PostgreSQL server and its own dev
server on free loopback ports.
"""

from __future__ import annotations

from pathlib import Path

from activities.faults import FaultInjector, FaultPoint, InjectedFault, parse_fault_spec
from tests.chaos.run import ChaosConfig, run_chaos

SHORT = ChaosConfig(
    enrollments=30,
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
    assert report.enrollments == SHORT.enrollments
    assert report.periods >= SHORT.enrollments * (SHORT.backlog_periods + 1)
    assert report.orders == report.periods  # no trial: every period is billed once
    assert (report.lost, report.duplicated) == (0, 0), report.problems[:10]
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
