"""The six measurements, each with its baseline in the same run (see docs/BENCHMARKS.md for the method)."""

from __future__ import annotations

import asyncio
import functools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.builtin import director_from_names
from adapters.domain import (
    BillingInterval,
    ProductPlan,
)
from adapters.lifecycle import GENERATOR_WORKFLOW_TYPE, generator_task_queue, workflow_id_for
from bench.baseline import (
    BASELINE_WORKFLOWS,
    COUNT_QUERY,
    FLOOR_LOOP,
    FLOOR_WORKFLOWS,
    READY_UPDATE,
    TIMER_LOOP,
    FloorLoopWorkflow,
    FloorStartWorkflow,
    NoopUpdateWorkflow,
    NoopWorkflow,
    TimerLoopWorkflow,
)
from bench.baseline import noop_activity as noop
from bench.cost import run_histories, steady_state_cost
from bench.floor import FloorActivities
from bench.harness import (
    StatementCounter,
    WorkerProcess,
    add_enrollment_rows,
    add_product,
    bounded,
    dev_server_pid,
    percentile,
    periods_with_order,
    ratio,
    rss_mib,
    server_address,
    timed,
)
from starter.client import EnrollmentsClient
from starter.runtime.worker import build_worker
from workflows.enrollment_state import DEFAULT_PERIODS_PER_RUN

MONTHLY = ProductPlan(billing_interval=BillingInterval.MONTHS)
MINUTELY = ProductPlan(billing_interval=BillingInterval.MINUTES)
PRODUCT = "bench-plan"


def _queue(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def _director() -> Any:
    return director_from_names(["licensed"])


async def _create(
    client: EnrollmentsClient,
    count: int,
    concurrency: int,
    *,
    start: datetime | None = None,
    until: datetime | None = None,
) -> list[str]:
    """Create ``count`` enrollments (from ``start``), ``concurrency`` at once; none is begun after ``until``."""

    async def one(index: int) -> str | None:
        if until is not None and datetime.now(UTC) >= until:
            return None
        return await client.create_enrollment(product_id=PRODUCT, user_id=f"user-{index}", start=start)

    created = await bounded([functools.partial(one, index) for index in range(count)], concurrency)
    return [enrollment_id for enrollment_id in created if enrollment_id is not None]


# --- 1. start throughput ------------------------------------------------------------------------


async def start_throughput(env: WorkflowEnvironment, database_url: str, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` enrollments created through the client vs ``count`` no-op workflows, on the dev server.

    Each side runs twice, in alternating order, with ``count / 2`` starts per round and ``concurrency``
    starts in flight; the rates are over the sum of both rounds.
    """
    await add_product(database_url, PRODUCT, MONTHLY)
    queue, base_queue = _queue("start"), _queue("start-base")
    resources = build_worker(env.client, database_url=database_url, task_queue=queue, director=_director())
    client = EnrollmentsClient(env.client, task_queue=queue)
    baseline = Worker(
        env.client,
        task_queue=base_queue,
        workflows=[*BASELINE_WORKFLOWS, *FLOOR_WORKFLOWS],
        activities=[noop, *FloorActivities(resources.engine, PRODUCT).all()],
    )
    run = uuid.uuid4().hex[:6]

    def ours(n: int) -> Callable[[], Awaitable[Any]]:
        return lambda: _create(client, n, concurrency)

    def plain(n: int, round_: int) -> Callable[[], Awaitable[Any]]:
        calls = [
            functools.partial(
                env.client.start_workflow, NoopWorkflow.run, id=f"noop-{run}-{round_}-{i}", task_queue=base_queue
            )
            for i in range(n)
        ]
        return lambda: bounded(calls, concurrency)

    def update_with_start(n: int, round_: int) -> Callable[[], Awaitable[Any]]:
        def one(i: int) -> Awaitable[str]:
            operation = WithStartWorkflowOperation(
                NoopUpdateWorkflow.run,
                id=f"uws-{run}-{round_}-{i}",
                task_queue=base_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return env.client.execute_update_with_start_workflow(
                NoopUpdateWorkflow.ready, start_workflow_operation=operation
            )

        return lambda: bounded([functools.partial(one, i) for i in range(n)], concurrency)

    def floor(n: int, round_: int) -> Callable[[], Awaitable[Any]]:
        def one(i: int) -> Awaitable[str]:
            enrollment_id = f"floor-{run}-{round_}-{i}"
            operation = WithStartWorkflowOperation(
                FloorStartWorkflow.run,
                args=[enrollment_id, PRODUCT],
                id=enrollment_id,
                task_queue=base_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return env.client.execute_update_with_start_workflow(
                READY_UPDATE, start_workflow_operation=operation, result_type=str
            )

        return lambda: bounded([functools.partial(one, i) for i in range(n)], concurrency)

    seconds = {"ours": 0.0, "floor": 0.0, "update_with_start": 0.0, "plain_start": 0.0}
    half = max(count // 2, 1)
    try:
        async with resources.worker, baseline:
            # Warm-up (not timed): workflow code imported into the sandbox, connections pooled.
            await ours(2)()
            await update_with_start(2, -1)()
            await floor(2, -1)()
            await plain(2, -1)()
            for round_ in range(2):
                sides: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                    ("ours", ours(half)),
                    ("floor", floor(half, round_)),
                    ("update_with_start", update_with_start(half, round_)),
                    ("plain_start", plain(half, round_)),
                ]
                for name, call in sides if round_ == 0 else reversed(sides):
                    seconds[name] += await timed(call)
    finally:
        await resources.close()
    started = 2 * half
    rates = {name: round(started / value, 2) for name, value in seconds.items()}
    return {
        "server": "dev server",
        "starts_per_side": started,
        "concurrency": concurrency,
        "per_second": rates,
        "start_ratio": ratio(rates["ours"], rates["update_with_start"]),
        "start_ratio_vs_floor": ratio(rates["ours"], rates["floor"]),
        "start_ratio_vs_plain_start": ratio(rates["ours"], rates["plain_start"]),
    }


# --- 2 + 3. renewal throughput and cost per period ----------------------------------------------


async def _skip(env: WorkflowEnvironment, minutes: int) -> None:
    """Skip ``minutes`` of time a minute at a time (one long skip outlives the RPC's keep-alive)."""
    failures = 0
    for _ in range(minutes):
        try:
            await env.sleep(timedelta(minutes=1))
            failures = 0
        except RPCError:
            # On a loaded machine the test server can answer a skip late or drop its connection; the figures
            # count the periods actually made, so a lost skip costs nothing but time. Five in a row is broken.
            failures += 1
            if failures >= 5:
                raise
            await asyncio.sleep(1)


async def renewal_throughput(
    env: WorkflowEnvironment, database_url: str, enrollments: int, periods: int
) -> dict[str, Any]:
    """Periods advanced per second on the time-skipping server: ``enrollments`` enrollments on a 1-minute plan
    (real activities, PostgreSQL) vs as many loops of a 1-minute timer and a local activity that writes the
    same rows by plain INSERTs (the floor, on the same engine and pool), and vs as many bare loops of a no-op
    local activity; each side skips ``periods`` minutes."""
    await add_product(database_url, PRODUCT, MINUTELY)
    queue = _queue("renew")
    resources = build_worker(env.client, database_url=database_url, task_queue=queue, director=_director())
    client = EnrollmentsClient(env.client, task_queue=queue)
    sql = StatementCounter(resources.engine)
    work: dict[str, tuple[int, int]] = {}
    try:
        async with resources.worker:
            ids = await _create(client, enrollments, 20)
            before = await periods_with_order(resources.engine, ids)
            counted = sql.snapshot()
            ours_seconds = await timed(functools.partial(_skip, env, periods))
            work["ours"] = _minus(sql.snapshot(), counted)
            ours_periods = await periods_with_order(resources.engine, ids) - before
            await asyncio.gather(*(env.client.get_workflow_handle(workflow_id_for(i)).terminate() for i in ids))
        floor_ids = [uuid.uuid4().hex for _ in range(enrollments)]
        await add_enrollment_rows(resources.engine, floor_ids, product_id=PRODUCT, anchor=datetime.now(UTC))
        floor = Worker(
            env.client,
            task_queue=_queue("renew-floor"),
            workflows=[FloorLoopWorkflow],
            activities=FloorActivities(resources.engine, PRODUCT).all(),
        )
        counted = sql.snapshot()
        floor_periods, floor_seconds = await _loop_rate(env, floor, FLOOR_LOOP, [[i, 60.0] for i in floor_ids], periods)
        work["floor"] = _minus(sql.snapshot(), counted)  # includes the loops' first rounds, not skipped
    finally:
        await resources.close()
    bare = Worker(env.client, task_queue=_queue("renew-base"), workflows=[TimerLoopWorkflow], activities=[noop])
    base_periods, base_seconds = await _loop_rate(env, bare, TIMER_LOOP, [[60.0]] * enrollments, periods)

    rates = {
        "ours": ours_periods / ours_seconds,
        "floor": floor_periods / floor_seconds,
        "baseline": base_periods / base_seconds,
    }
    return {
        "renewal": {
            "server": "time-skipping test server",
            "enrollments": enrollments,
            "simulated_minutes": periods,
            "periods": {"ours": ours_periods, "floor": floor_periods, "baseline": base_periods},
            "seconds": {
                "ours": round(ours_seconds, 2),
                "floor": round(floor_seconds, 2),
                "baseline": round(base_seconds, 2),
            },
            "per_second": {name: round(rate, 2) for name, rate in rates.items()},
            "renewal_ratio": ratio(rates["ours"], rates["baseline"]),
            "renewal_ratio_vs_floor": ratio(rates["ours"], rates["floor"]),
            # SQL issued through the worker's engine per period (ours: the measuring reads are not counted).
            "statements_per_period": {
                "ours": round(work["ours"][0] / ours_periods, 2),
                "floor": round(work["floor"][0] / (floor_periods + enrollments), 2),
            },
            "transactions_per_period": {
                "ours": round(work["ours"][1] / ours_periods, 2),
                "floor": round(work["floor"][1] / (floor_periods + enrollments), 2),
            },
        },
    }


def _minus(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def _loop_rate(
    env: WorkflowEnvironment, worker: Worker, workflow_type: str, inputs: list[list[Any]], periods: int
) -> tuple[int, float]:
    """Rounds the loop workflows of ``worker`` (one per input, each with a ``count`` query) make while
    ``periods`` minutes are skipped, and the seconds that took."""
    async with worker:
        handles: list[WorkflowHandle[Any, Any]] = [
            await env.client.start_workflow(
                workflow_type,
                args=args,
                id=f"loop-{uuid.uuid4().hex}",
                task_queue=worker.task_queue,
            )
            for args in inputs
        ]

        async def counts() -> int:
            return sum(await asyncio.gather(*(h.query(COUNT_QUERY, result_type=int) for h in handles)))

        for _ in range(1200):  # until each loop has done its first round, as a created enrollment has
            if await counts() >= len(handles):
                break
            await asyncio.sleep(0.05)
        before = await counts()
        seconds = await timed(functools.partial(_skip, env, periods))
        done = await counts() - before
        await asyncio.gather(*(handle.terminate() for handle in handles))
    return done, seconds


async def period_cost(env: WorkflowEnvironment, database_url: str, enrollments: int) -> dict[str, Any]:
    """History events and billable actions per period, from the steady-state runs of ``enrollments``
    enrollments on a 1-minute plan that run long enough to continue as new twice."""
    await add_product(database_url, PRODUCT, MINUTELY)
    queue = _queue("cost")
    resources = build_worker(env.client, database_url=database_url, task_queue=queue, director=_director())
    client = EnrollmentsClient(env.client, task_queue=queue)
    try:
        async with resources.worker:
            ids = await _create(client, enrollments, enrollments)
            await _skip(env, 2 * DEFAULT_PERIODS_PER_RUN + 10)
            histories = [await run_histories(env.client, workflow_id_for(i)) for i in ids]
            await asyncio.gather(*(env.client.get_workflow_handle(workflow_id_for(i)).terminate() for i in ids))
            storage = await _storage_per_period(resources.engine)
    finally:
        await resources.close()
    return {"cost": {**steady_state_cost(histories), **storage}}


PERIOD_TABLES = ("orders", "order_positions", "enrollment_periods", "events", "enrollment_log")


async def _storage_per_period(engine: AsyncEngine) -> dict[str, Any]:
    """Rows and bytes (tables with their indexes and TOAST, ``pg_total_relation_size``) the database holds per
    period in the tables a period writes; the database is this measurement's own."""
    async with engine.connect() as connection:
        periods = int(await connection.scalar(text("SELECT count(*) FROM enrollment_periods")) or 0)
        rows: dict[str, int] = {}
        size = 0
        for table in PERIOD_TABLES:
            rows[table] = int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            size += int(await connection.scalar(text(f"SELECT pg_total_relation_size('{table}')")) or 0)
    return {
        "db_periods": periods,
        "db_rows_per_period": {table: round(count / periods, 2) for table, count in rows.items()},
        "db_bytes_per_period": round(size / periods),
    }


# --- 4 + 5. query latency and scale -------------------------------------------------------------


async def _query_latencies(client: EnrollmentsClient, ids: list[str]) -> list[float]:
    latencies = []
    for enrollment_id in ids:
        started = time.perf_counter()
        if not await client.is_valid_for_activation(enrollment_id):
            raise RuntimeError(f"enrollment {enrollment_id} is not valid for activation")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _latency_summary(latencies: list[float]) -> dict[str, float | int]:
    return {
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def _wait_until_answering(client: EnrollmentsClient, enrollment_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await asyncio.wait_for(client.is_valid_for_activation(enrollment_id), timeout=10)
            return
        except (RPCError, TimeoutError):
            if time.monotonic() > deadline:
                raise


async def _generator_pass(client: Client, queue: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = await client.execute_workflow(
        GENERATOR_WORKFLOW_TYPE,
        id=f"bench-generator-{uuid.uuid4().hex[:8]}",
        task_queue=generator_task_queue(queue),
        result_type=dict,
    )
    return time.perf_counter() - started, result


def _slope(points: list[dict[str, Any]], key: str) -> float | None:
    """Growth of ``key`` per 1,000 more open enrollments between the smallest and the largest point."""
    if len(points) < 2 or points[0].get(key) is None or points[-1].get(key) is None:
        return None
    grown = float(points[-1][key]) - float(points[0][key])
    return round(grown / (int(points[-1]["open"]) - int(points[0]["open"])) * 1000, 3)


async def scale_and_queries(
    env: WorkflowEnvironment,
    database_url: str,
    *,
    sizes: tuple[int, ...],
    query_open: int,
    query_samples: int,
    concurrency: int,
    generator: bool,
    plan: ProductPlan = MONTHLY,
    start: datetime | None = None,
    create_until: datetime | None = None,
    then: Callable[[list[str], WorkerProcess], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Open enrollments grown to each of ``sizes`` on one worker process (``enrollments worker``): creation
    time, worker and dev-server RSS, one order-generator pass; query latency at ``query_open`` open
    enrollments, warm and after a worker restart (every query then replays its workflow's history).

    The enrollments are on ``plan``, from ``start`` (default: now); none is created after ``create_until``.
    ``then`` runs with all of them still open on the worker process (given, so that it can stop it), and its
    result is merged in."""
    await add_product(database_url, PRODUCT, plan)
    queue = _queue("scale")
    worker = WorkerProcess(address=server_address(env), database_url=database_url, task_queue=queue)
    client = EnrollmentsClient(env.client, task_queue=queue)
    server_pid = dev_server_pid()
    ids: list[str] = []
    points: list[dict[str, Any]] = []
    queries: dict[str, Any] = {}
    total_create = 0.0
    worker.start()
    try:
        for target in sorted({*sizes, query_open}):
            step = target - len(ids)
            create_seconds = await timed(
                functools.partial(_extend, ids, client, step, concurrency, start=start, until=create_until)
            )
            await asyncio.sleep(1)  # let the last tasks settle before reading memory
            point: dict[str, Any] = {
                "open": len(ids),
                "created_in_step": step,
                "create_seconds": round(create_seconds, 2),
                "create_per_second": round(step / create_seconds, 2),
                "worker_rss_mib": rss_mib(worker.pid),
                "server_rss_mib": rss_mib(server_pid) if server_pid else None,
            }
            if target == query_open:
                sample = random.Random(7).sample(ids, min(query_samples, len(ids) - 1))
                await _query_latencies(client, sample[:10])  # warm-up: connections, code paths
                queries["open_enrollments"] = len(ids)
                queries["warm"] = _latency_summary(await _query_latencies(client, sample))
                point["worker_rss_mib"] = rss_mib(worker.pid)  # before the restart empties its cache
                await worker.restart()
                spare = next(i for i in ids if i not in set(sample))
                await _wait_until_answering(client, spare)
                queries["after_restart"] = _latency_summary(await _query_latencies(client, sample))
                point["worker_rss_after_restart_mib"] = rss_mib(worker.pid)
            if generator:
                seconds, result = await _generator_pass(env.client, queue)
                point["generator_seconds"] = round(seconds, 2)
                point["generator_success"] = bool(result.get("success"))
            total_create += create_seconds
            point["create_seconds_total"] = round(total_create, 2)
            if target in sizes:
                points.append(point)
        after = await then(ids, worker) if then is not None else {}
    finally:
        await worker.stop()
    slopes = {
        key: _slope(points, key)
        for key in ("worker_rss_mib", "server_rss_mib", "generator_seconds", "create_seconds_total")
    }
    return {"queries": queries, "scale": {"points": points, "slope_per_1000": slopes}, **after}


async def _extend(ids: list[str], client: EnrollmentsClient, count: int, concurrency: int, **when: Any) -> None:
    ids.extend(await _create(client, count, concurrency, **when))
