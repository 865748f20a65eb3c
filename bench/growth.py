"""Cost against age and scale: CPU per period at an old age vs a young one, order-generator passes, the renewal
storm and renewals with several worker processes (see docs/BENCHMARKS.md for the method)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.persistence import create_engine
from activities.persistence.models import EnrollmentRow
from adapters.lifecycle import MessageName, workflow_id_for
from bench.baseline import FloorOnceWorkflow
from bench.floor import insert_floor_enrollments
from bench.harness import (
    WorkerProcess,
    add_enrollment_rows,
    add_product,
    bounded,
    cpu_seconds,
    periods_with_order,
    ratio,
    server_address,
    timed,
)
from bench.scenarios import MINUTELY, MONTHLY, PRODUCT, _create, _director, _generator_pass, _queue, _skip
from starter.client import EnrollmentsClient
from starter.runtime.worker import build_worker

YOUNG_AGE = 10
"""The young side of the age ratio: CPU per period from this period on."""


# --- CPU per period by age --------------------------------------------------------------------------


async def period_cost_by_age(
    env: WorkflowEnvironment, database_url: str, *, enrollments: int, old: int, window: int
) -> dict[str, Any]:
    """Worker CPU per period over ``window`` periods from the ``old``-th period of ``enrollments`` enrollments,
    then over ``window`` periods from the ``YOUNG_AGE``-th of as many new ones, on the time-skipping server: a
    1-minute plan served by one ``enrollments worker`` process, whose user + system CPU is read from /proc.
    The old ones are measured first, so both sides run on a worker that is warm (imports, caches, pools)."""
    await add_product(database_url, PRODUCT, MINUTELY)
    queue = _queue("age")
    worker = WorkerProcess(address=server_address(env), database_url=database_url, task_queue=queue)
    client = EnrollmentsClient(env.client, task_queue=queue)
    engine = create_engine(database_url)
    per_period: dict[str, float] = {}
    worker.start()
    try:
        for name, age in (("old", old), ("young", YOUNG_AGE)):
            ids = await _create(client, enrollments, enrollments)
            while (missing := age * enrollments - await periods_with_order(engine, ids)) > 0:
                await _skip(env, 10 if missing > 10 * enrollments else 1)  # fast forward
            cpu, before = cpu_seconds(worker.pid), await periods_with_order(engine, ids)
            await _skip(env, window)
            per_period[name] = (cpu_seconds(worker.pid) - cpu) / (await periods_with_order(engine, ids) - before)
            await asyncio.gather(*(env.client.get_workflow_handle(workflow_id_for(i)).terminate() for i in ids))
    finally:
        await worker.stop()
        await engine.dispose()
    return {
        "age_cost": {
            "enrollments": enrollments,
            "window_periods": window,
            "ages": {"young": YOUNG_AGE, "old": old},
            "worker_cpu_ms_per_period": {name: round(value * 1000, 2) for name, value in per_period.items()},
            "period_cost_age_ratio": ratio(per_period["old"], per_period["young"]),
        }
    }


# --- order generator ---------------------------------------------------------------------------------


async def _make_due(engine: AsyncEngine, ids: Sequence[str], ago: timedelta = timedelta(minutes=1)) -> int:
    """Set the stored next wake-up of ``ids`` ``ago`` in the past: a minute, due now (their workflow acts right
    now: a pass signals them); an hour, late (their workflow has not acted: a pass examines each first)."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(EnrollmentRow).where(EnrollmentRow.id.in_(list(ids))).values(next_wake_up=datetime.now(UTC) - ago)
        )
    return int(result.rowcount)


async def generator_passes(
    env: WorkflowEnvironment, database_url: str, *, open_count: int, due: int, concurrency: int = 20
) -> dict[str, Any]:
    """One ``GenerateEnrollmentOrders`` pass over ``open_count`` open enrollments with none due, then passes with
    ``due`` of them due vs signalling those ``due`` workflows ``catch_up`` directly (``concurrency`` at once, as
    the pass does), two alternating rounds, on the dev server with the worker in this process; and passes with
    the same ``due`` late (each examined: a describe before its signal), reported beside them.

    ``due`` enrollments are created through the client (their workflows run); the rest are stored through the
    store only (ACTIVE, next wake-up in 30 days, no workflow): a pass that is O(due) never looks at them."""
    await add_product(database_url, PRODUCT, MONTHLY)
    queue = _queue("generator")
    resources = build_worker(env.client, database_url=database_url, task_queue=queue, director=_director())
    client = EnrollmentsClient(env.client, task_queue=queue)
    engine = resources.engine
    try:
        async with resources.running():
            due_ids = await _create(client, due, concurrency)
            async with engine.connect() as connection:
                adapter_key = await connection.scalar(select(EnrollmentRow.adapter_key).limit(1))
            rows_seconds = await timed(
                functools.partial(
                    add_enrollment_rows,
                    engine,
                    [uuid.uuid4().hex for _ in range(open_count - due)],
                    product_id=PRODUCT,
                    anchor=datetime.now(UTC) + timedelta(days=30),
                    adapter_key=adapter_key or "licensed",
                )
            )
            idle_seconds, idle_result = await _generator_pass(env.client, queue)

            async def signal_directly() -> None:
                calls = [
                    functools.partial(
                        env.client.get_workflow_handle(workflow_id_for(i)).signal, MessageName.CATCH_UP_SIGNAL
                    )
                    for i in due_ids
                ]
                await bounded(calls, concurrency)

            async def one_pass() -> None:
                _, result = await _generator_pass(env.client, queue)
                if not result.get("success"):
                    raise RuntimeError(f"the generator pass failed: {result}")

            seconds = {"pass": 0.0, "direct": 0.0, "late_pass": 0.0}
            made_due = []
            for round_ in range(2):
                sides = [("pass", one_pass), ("direct", signal_directly), ("late_pass", one_pass)]
                for name, call in sides if round_ == 0 else reversed(sides):
                    ago = timedelta(hours=1) if name == "late_pass" else timedelta(minutes=1)
                    made_due.append(await _make_due(engine, due_ids, ago))
                    seconds[name] += await timed(call)
    finally:
        await resources.close()
    return {
        "generator": {
            "server": "dev server",
            "open_enrollments": open_count,
            "due": due,
            "due_rows_per_round": made_due,
            "rows_stored_seconds": round(rows_seconds, 2),
            "idle_pass_seconds": round(idle_seconds, 2),
            "idle_pass_success": bool(idle_result.get("success")),
            "due_seconds": {name: round(value / 2, 2) for name, value in seconds.items()},
            "generator_due_ratio": ratio(seconds["pass"], seconds["direct"]),
            "generator_late_ratio": ratio(seconds["late_pass"], seconds["direct"]),
        }
    }


# --- renewal storm -------------------------------------------------------------------------------------


async def _until_all(engine: AsyncEngine, start: datetime, count: int, give_up_after: float) -> float:
    """Seconds from ``start`` (wall clock) until ``count`` periods starting at ``start`` have their order."""
    await asyncio.sleep(max((start - datetime.now(UTC)).total_seconds(), 0))
    deadline = time.monotonic() + give_up_after
    while await periods_with_order(engine, (), start=start) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} periods from {start.isoformat()} after {give_up_after} s")
        await asyncio.sleep(0.5)
    return (datetime.now(UTC) - start).total_seconds()


async def renewal_storm(
    env: WorkflowEnvironment,
    database_url: str,
    ids: Sequence[str],
    ours: WorkerProcess,
    boundary: datetime,
    period: timedelta,
) -> dict[str, Any]:
    """The enrollments ``ids`` (running on the scale's worker process ``ours``) all renew at ``boundary``: seconds
    until every new period and its order exist. Floor: as many workflows in a worker process of their own
    (``python -m bench.floor``, same worker settings) sleeping until one instant and then writing the same rows
    by plain INSERTs; ``ours`` is stopped first, so that its next renewals cannot run beside the floor's."""
    engine = create_engine(database_url)
    floor_queue = _queue("storm-floor")
    floor = WorkerProcess(
        address=server_address(env),
        database_url=database_url,
        task_queue=floor_queue,
        command=("-m", "bench.floor"),
        env={"BENCH_PRODUCT": PRODUCT},
    )
    try:
        ours_seconds = await _until_all(engine, boundary, len(ids), give_up_after=3600)
        await ours.stop()
        floor_ids = [uuid.uuid4().hex for _ in ids]
        await insert_floor_enrollments(engine, floor_ids, PRODUCT)
        floor.start()
        # Starting is not timed: the instant leaves 1.5 × the time 100 starts per second would take.
        at = (datetime.now(UTC) + timedelta(seconds=15 + 1.5 * len(ids) / 100)).replace(microsecond=0)
        started = await timed(
            functools.partial(
                bounded,
                [
                    functools.partial(
                        env.client.start_workflow,
                        FloorOnceWorkflow.run,
                        args=[enrollment_id, at.isoformat(), period.total_seconds()],
                        id=f"floor-{enrollment_id}",
                        task_queue=floor_queue,
                    )
                    for enrollment_id in floor_ids
                ],
                50,
            )
        )
        started_in_time = datetime.now(UTC) < at
        floor_seconds = await _until_all(engine, at, len(floor_ids), give_up_after=3600)
    finally:
        await floor.stop()
        await engine.dispose()
    rates = {"ours": len(ids) / ours_seconds, "floor": len(ids) / floor_seconds}
    return {
        "storm": {
            "enrollments": len(ids),
            "boundary": boundary.isoformat(),
            "seconds": {"ours": round(ours_seconds, 1), "floor": round(floor_seconds, 1)},
            "per_second": {name: round(rate, 2) for name, rate in rates.items()},
            "storm_ratio_vs_floor": ratio(rates["ours"], rates["floor"]),
            "floor_started_seconds": round(started, 1),
            "floor_started_before_instant": started_in_time,
        }
    }


# --- worker processes ------------------------------------------------------------------------------------


async def renewals_by_workers(
    env: WorkflowEnvironment, database_url: str, *, processes: Sequence[int], enrollments: int, minutes: int
) -> dict[str, Any]:
    """Periods per second with 1, 2, … ``enrollments worker`` processes polling one task queue: ``enrollments``
    enrollments on a 1-minute plan (created for each count), ``minutes`` skipped on the time-skipping server."""
    await add_product(database_url, PRODUCT, MINUTELY)
    engine = create_engine(database_url)
    rates: dict[str, float] = {}
    try:
        for count in processes:
            queue = _queue(f"workers{count}")
            workers = [
                WorkerProcess(address=server_address(env), database_url=database_url, task_queue=queue)
                for _ in range(count)
            ]
            for worker in workers:
                worker.start()
            try:
                ids = await _create(EnrollmentsClient(env.client, task_queue=queue), enrollments, 20)
                before = await periods_with_order(engine, ids)
                seconds = await timed(functools.partial(_skip, env, minutes))
                rates[str(count)] = round((await periods_with_order(engine, ids) - before) / seconds, 2)
                await asyncio.gather(*(env.client.get_workflow_handle(workflow_id_for(i)).terminate() for i in ids))
            finally:
                await asyncio.gather(*(worker.stop() for worker in workers))
    finally:
        await engine.dispose()
    return {"workers": {"enrollments": enrollments, "simulated_minutes": minutes, "periods_per_second": rates}}
