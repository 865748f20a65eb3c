"""Baseline workflows: the least Temporal itself needs for what an enrollment does, measured in the same run.

They import nothing but the SDK, so they run in the default workflow sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

NOOP_ACTIVITY = "bench_noop"
READY_UPDATE = "ready"
COUNT_QUERY = "count"


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


@workflow.defn(name="BenchTimerLoop")
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
