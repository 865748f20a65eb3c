"""Baseline workflows: the least Temporal itself needs for what an enrollment does, measured in the same run.

They import nothing but the SDK, so they run in the default workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity, workflow

NOOP_ACTIVITY = "bench_noop"
READY_UPDATE = "ready"
COUNT_QUERY = "count"
TIMER_LOOP = "BenchTimerLoop"
FLOOR_LOOP = "BenchFloorLoop"


@activity.defn(name=NOOP_ACTIVITY)
async def noop_activity() -> None:
    """Does nothing: the cost of a (local) activity round trip without any work."""


@workflow.defn(name="BenchNoop")
class NoopWorkflow:
    """Completes at once: the cost of starting a workflow."""

    @workflow.run
    async def run(self) -> None:
        return None


@workflow.defn(name="BenchNoopUpdate")
class NoopUpdateWorkflow:
    """Answers one ``ready`` update and completes: the cost of update-with-start plus one workflow task."""

    def __init__(self) -> None:
        self._answered = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._answered)

    @workflow.update(name=READY_UPDATE)
    def ready(self) -> str:
        self._answered = True
        return "ready"


@workflow.defn(name=TIMER_LOOP)
class TimerLoopWorkflow:
    """Loops a no-op local activity and a timer of ``period_seconds`` forever: a bare renewal."""

    def __init__(self) -> None:
        self._count = 0

    @workflow.run
    async def run(self, period_seconds: float) -> None:
        while True:
            await workflow.execute_local_activity(noop_activity, start_to_close_timeout=timedelta(seconds=60))
            self._count += 1
            await workflow.sleep(timedelta(seconds=period_seconds))

    @workflow.query(name=COUNT_QUERY)
    def count(self) -> int:
        return self._count


BASELINE_WORKFLOWS = (NoopWorkflow, NoopUpdateWorkflow, TimerLoopWorkflow)


# --- floors: the least a durable renewal or start must do, with the same rows written ---------------

FLOOR_PERIOD_ACTIVITY = "bench_floor_period"
FLOOR_START_ACTIVITY = "bench_floor_start"
_FLOOR_TIMEOUT = timedelta(seconds=60)


@workflow.defn(name=FLOOR_LOOP)
class FloorLoopWorkflow:
    """Loops one local activity writing a period's rows by plain INSERTs and a timer of ``period_seconds``."""

    def __init__(self) -> None:
        self._count = 0

    @workflow.run
    async def run(self, enrollment_id: str, period_seconds: float) -> None:
        period = timedelta(seconds=period_seconds)
        while True:
            start = workflow.now()
            # Event numbers after the few the enrollment's creation stored (the floor reads nothing back).
            await workflow.execute_local_activity(
                FLOOR_PERIOD_ACTIVITY,
                args=[enrollment_id, start.isoformat(), (start + period).isoformat(), 10 + 2 * self._count],
                start_to_close_timeout=_FLOOR_TIMEOUT,
            )
            self._count += 1
            await workflow.sleep(period)

    @workflow.query(name=COUNT_QUERY)
    def count(self) -> int:
        return self._count


@workflow.defn(name="BenchFloorOnce")
class FloorOnceWorkflow:
    """Sleeps until ``at`` (ISO), then writes one period's rows by plain INSERTs: a storm's floor."""

    @workflow.run
    async def run(self, enrollment_id: str, at: str, period_seconds: float) -> None:
        start = datetime.fromisoformat(at)
        if start > workflow.now():
            await workflow.sleep(start - workflow.now())
        await workflow.execute_local_activity(
            FLOOR_PERIOD_ACTIVITY,
            args=[enrollment_id, at, (start + timedelta(seconds=period_seconds)).isoformat(), 0],
            start_to_close_timeout=_FLOOR_TIMEOUT,
        )


@workflow.defn(name="BenchFloorStart")
class FloorStartWorkflow:
    """Update-with-start whose first workflow task runs one local activity inserting the enrollment with its
    first period and order; the ``ready`` update returns once they are written. It stays open, as an
    enrollment does."""

    def __init__(self) -> None:
        self._written = False

    @workflow.run
    async def run(self, enrollment_id: str, product_id: str) -> None:
        await workflow.execute_local_activity(
            FLOOR_START_ACTIVITY,
            args=[enrollment_id, product_id, workflow.now().isoformat()],
            start_to_close_timeout=_FLOOR_TIMEOUT,
        )
        self._written = True
        # Then it waits for its next period, as an enrollment does (completing would cost the server more).
        await workflow.sleep(timedelta(days=365))

    @workflow.update(name=READY_UPDATE)
    async def ready(self) -> str:
        await workflow.wait_condition(lambda: self._written)
        return "ready"


FLOOR_WORKFLOWS = (FloorLoopWorkflow, FloorOnceWorkflow, FloorStartWorkflow)
