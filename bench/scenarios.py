"""The six measurements, each with its baseline in the same run (see docs/BENCHMARKS.md for the method)."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.domain import (
    BillingInterval,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderConfiguration,
    OrderPosition,
    PeriodWindow,
    ProductPlan,
)
from adapters.lifecycle import GENERATOR_WORKFLOW_TYPE, generator_task_queue, workflow_id_for
from bench.baseline import BASELINE_WORKFLOWS, COUNT_QUERY, NoopUpdateWorkflow, NoopWorkflow, TimerLoopWorkflow
from bench.baseline import noop_activity as noop
from bench.cost import run_histories, steady_state_cost
from bench.harness import (
    WorkerProcess,
    add_product,
    bounded,
    dev_server_pid,
    percentile,
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


async def _create(client: EnrollmentsClient, count: int, concurrency: int) -> list[str]:
    calls = [
        functools.partial(client.create_enrollment, product_id=PRODUCT, user_id=f"user-{index}")
        for index in range(count)
    ]
    return await bounded(calls, concurrency)


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
    baseline = Worker(env.client, task_queue=base_queue, workflows=list(BASELINE_WORKFLOWS), activities=[noop])
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

    seconds = {"ours": 0.0, "update_with_start": 0.0, "plain_start": 0.0}
    half = max(count // 2, 1)
    try:
        async with resources.worker, baseline:
            # Warm-up (not timed): workflow code imported into the sandbox, connections pooled.
            await ours(2)()
            await update_with_start(2, -1)()
            await plain(2, -1)()
            for round_ in range(2):
                sides: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                    ("ours", ours(half)),
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
        "start_ratio_vs_plain_start": ratio(rates["ours"], rates["plain_start"]),
    }


# --- 2 + 3. renewal throughput and cost per period ----------------------------------------------


async def _total_periods(client: EnrollmentsClient, ids: list[str]) -> int:
    views = await bounded([functools.partial(client.get_enrollment, i) for i in ids], 20)
    return sum(len(view.periods) for view in views)


async def _skip(env: WorkflowEnvironment, minutes: int) -> None:
    """Skip ``minutes`` of time a minute at a time (one long skip outlives the RPC's keep-alive)."""
    for _ in range(minutes):
        await env.sleep(timedelta(minutes=1))


async def renewal_throughput(
    env: WorkflowEnvironment, database_url: str, enrollments: int, periods: int
) -> dict[str, Any]:
    """Periods advanced per second on the time-skipping server: ``enrollments`` enrollments on a 1-minute plan
    (real activities, PostgreSQL) vs as many bare loops of a no-op local activity and a 1-minute timer, each
    side skipping ``periods`` minutes."""
    await add_product(database_url, PRODUCT, MINUTELY)
    queue, base_queue = _queue("renew"), _queue("renew-base")
    resources = build_worker(env.client, database_url=database_url, task_queue=queue, director=_director())
    client = EnrollmentsClient(env.client, task_queue=queue)
    try:
        async with resources.worker:
            ids = await _create(client, enrollments, 20)
            before = await _total_periods(client, ids)
            ours_seconds = await timed(functools.partial(_skip, env, periods))
            ours_periods = await _total_periods(client, ids) - before
            await asyncio.gather(*(env.client.get_workflow_handle(workflow_id_for(i)).terminate() for i in ids))
    finally:
        await resources.close()

    async with Worker(env.client, task_queue=base_queue, workflows=[TimerLoopWorkflow], activities=[noop]):
        handles = [
            await env.client.start_workflow(
                TimerLoopWorkflow.run, 60.0, id=f"loop-{uuid.uuid4().hex}", task_queue=base_queue
            )
            for _ in range(enrollments)
        ]

        async def counts() -> int:
            return sum(await asyncio.gather(*(h.query(COUNT_QUERY, result_type=int) for h in handles)))

        for _ in range(1200):  # until each loop has done its first round, as a created enrollment has
            if await counts() >= enrollments:
                break
            await asyncio.sleep(0.05)
        before = await counts()
        base_seconds = await timed(functools.partial(_skip, env, periods))
        base_periods = await counts() - before
        await asyncio.gather(*(handle.terminate() for handle in handles))

    ours_rate = ours_periods / ours_seconds
    base_rate = base_periods / base_seconds
    return {
        "renewal": {
            "server": "time-skipping test server",
            "enrollments": enrollments,
            "simulated_minutes": periods,
            "periods": {"ours": ours_periods, "baseline": base_periods},
            "seconds": {"ours": round(ours_seconds, 2), "baseline": round(base_seconds, 2)},
            "per_second": {"ours": round(ours_rate, 2), "baseline": round(base_rate, 2)},
            "renewal_ratio": ratio(ours_rate, base_rate),
        },
    }


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
    finally:
        await resources.close()
    return {"cost": steady_state_cost(histories)}


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
) -> dict[str, Any]:
    """Open enrollments grown to each of ``sizes`` on one worker process (``enrollments worker``): creation
    time, worker and dev-server RSS, one order-generator pass; query latency at ``query_open`` open
    enrollments, warm and after a worker restart (every query then replays its workflow's history)."""
    await add_product(database_url, PRODUCT, MONTHLY)
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
            create_seconds = await timed(functools.partial(_extend, ids, client, step, concurrency))
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
    finally:
        await worker.stop()
    slopes = {
        key: _slope(points, key)
        for key in ("worker_rss_mib", "server_rss_mib", "generator_seconds", "create_seconds_total")
    }
    return {"queries": queries, "scale": {"points": points, "slope_per_1000": slopes}}


async def _extend(ids: list[str], client: EnrollmentsClient, count: int, concurrency: int) -> None:
    ids.extend(await _create(client, count, concurrency))


# --- 6. database ----------------------------------------------------------------------------------


async def _each(write: Callable[[str], Awaitable[None]], ids: list[str]) -> None:
    await asyncio.gather(*(write(enrollment_id) for enrollment_id in ids))


_RAW_ORDER = text(
    "INSERT INTO orders (id, number, enrollment_id, period_start, period_end, status, context, created, updated) "
    "VALUES (:id, :number, :enrollment_id, :start, :end, 'PENDING', CAST(:context AS JSON), :now, :now)"
)
_RAW_POSITION = text(
    "INSERT INTO order_positions (order_id, position, product_id, original_product_id, quantity, configuration) "
    "VALUES (:order_id, 0, :product_id, :product_id, 1, CAST(:configuration AS JSON))"
)
_RAW_PERIOD = text(
    'INSERT INTO enrollment_periods (enrollment_id, start, "end", is_trial, order_id) '
    "VALUES (:enrollment_id, :start, :end, false, :order_id)"
)


async def database_throughput(database_url: str, periods: int, concurrency: int) -> dict[str, Any]:
    """Periods with their order persisted per second: ``Store.add_period`` vs plain INSERTs of the
    same rows (order, position, period; one transaction per period) through the same engine and pool.

    ``concurrency`` enrollments are written at once, each one's periods in sequence; two alternating rounds.
    """
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    await add_product(database_url, PRODUCT, MONTHLY)
    now = datetime.now(UTC)
    base = datetime(2030, 1, 1, tzinfo=UTC)
    per_enrollment = max(periods // (2 * concurrency), 1)

    async def enrollments(count: int) -> list[str]:
        ids = [uuid.uuid4().hex for _ in range(count)]
        for enrollment_id in ids:
            await store.enrollments.create(
                enrollment_id,
                EnrollmentTerms(product_id=PRODUCT, user_id="u"),
                anchor=base,
                adapter_key="bench",
                now=now,
                status=EnrollmentStatus.ACTIVE,
            )
        return ids

    def window(index: int) -> PeriodWindow:
        return PeriodWindow(start=base + timedelta(days=30 * index), end=base + timedelta(days=30 * (index + 1)))

    async def ours(enrollment_id: str) -> None:
        for index in range(per_enrollment):
            period = window(index)
            order = OrderConfiguration(
                period=period,
                order_position_templates=[OrderPosition(product_id=PRODUCT, original_product_id=PRODUCT, quantity=1)],
            )
            await store.billing.add_period(enrollment_id, period, order, now=now)

    async def raw(enrollment_id: str) -> None:
        for index in range(per_enrollment):
            period = window(index)
            order_id = uuid.uuid4().hex
            async with engine.begin() as connection:
                values = {"enrollment_id": enrollment_id, "start": period.start, "end": period.end, "now": now}
                await connection.execute(
                    _RAW_ORDER, {**values, "id": order_id, "number": f"B-{order_id[:10]}", "context": "{}"}
                )
                await connection.execute(
                    _RAW_POSITION, {"order_id": order_id, "product_id": PRODUCT, "configuration": json.dumps([])}
                )
                await connection.execute(_RAW_PERIOD, {**values, "order_id": order_id})

    seconds = {"ours": 0.0, "baseline": 0.0}
    try:
        for round_ in range(2):
            sides: list[tuple[str, Callable[[str], Awaitable[None]]]] = [("ours", ours), ("baseline", raw)]
            for name, write in sides if round_ == 0 else reversed(sides):
                ids = await enrollments(concurrency)
                seconds[name] += await timed(functools.partial(_each, write, ids))
    finally:
        await engine.dispose()
    written = 2 * concurrency * per_enrollment
    rates = {name: round(written / value, 1) for name, value in seconds.items()}
    return {
        "backend": "postgresql (asyncpg)",
        "periods_per_side": written,
        "concurrency": concurrency,
        "per_second": rates,
        "db_ratio": ratio(rates["ours"], rates["baseline"]),
    }
