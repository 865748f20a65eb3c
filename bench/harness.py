"""What the benchmarks run on: their own servers, database and worker processes, and the measuring tools.

Everything listens on loopback only. The PostgreSQL database is created for the run (``bench_<random>``)
on ``BENCH_POSTGRES_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``) and dropped
afterwards; no other database is touched.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.persistence import Store, create_engine, normalize_database_url, session_factory
from activities.persistence.migrate import upgrade_async as migrate
from activities.persistence.models import PeriodRow
from adapters.domain import EnrollmentStatus, EnrollmentTerms, Product, ProductPlan
from starter.devtools.binaries import register_search_attributes, temporal_cli_path, test_server_path
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

T = TypeVar("T")

POSTGRES_URL_ENV = "BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


# --- databases ------------------------------------------------------------------------------------


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A migrated PostgreSQL database of its own for this run (URL), dropped on exit."""
    admin_url = normalize_database_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        await migrate(url)
        yield url
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def add_product(database_url: str, product_id: str, plan: ProductPlan) -> None:
    """Store a plan product the benchmark enrollments are created for."""
    engine = create_engine(database_url)
    try:
        await Store.over(session_factory(engine)).products.upsert(
            Product(id=product_id, plan=plan), now=datetime.now(UTC)
        )
    finally:
        await engine.dispose()


async def add_enrollment_rows(
    engine: AsyncEngine, ids: Sequence[str], *, product_id: str, anchor: datetime, adapter_key: str = "bench"
) -> None:
    """Store ACTIVE enrollments (rows, log and created event; no workflow) through the store, ten at a time;
    their stored next wake-up is ``anchor``."""
    store = Store.over(session_factory(engine))
    now = datetime.now(UTC)

    async def one(enrollment_id: str) -> None:
        await store.enrollments.create(
            enrollment_id,
            EnrollmentTerms(product_id=product_id, user_id=f"user-{enrollment_id[:8]}"),
            anchor=anchor,
            adapter_key=adapter_key,
            now=now,
            status=EnrollmentStatus.ACTIVE,
        )

    await bounded([functools.partial(one, enrollment_id) for enrollment_id in ids], 10)


async def periods_with_order(engine: AsyncEngine, ids: Sequence[str], *, start: datetime | None = None) -> int:
    """Periods of ``ids`` that have their order (only those starting at ``start``, when given)."""
    query = select(func.count()).select_from(PeriodRow).where(PeriodRow.order_id.is_not(None))
    query = (
        query.where(PeriodRow.enrollment_id.in_(list(ids))) if start is None else query.where(PeriodRow.start == start)
    )
    async with engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


# --- Temporal servers -----------------------------------------------------------------------------


@contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null meanwhile: a server started then keeps its banner off our stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (real time) on a free loopback port, persisting to its SQLite file (in a
    temporary directory, removed afterwards) as ``enrollments dev`` runs it."""
    with tempfile.TemporaryDirectory(prefix="bench-temporal-") as directory:
        with _stdout_to_devnull():
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_cli_path(),
                data_converter=pydantic_data_converter,
                search_attributes=ALL_SEARCH_ATTRIBUTES,
                dev_server_log_level="error",
                dev_server_extra_args=["--db-filename", str(Path(directory) / "temporal.db")],
                ip="127.0.0.1",
            )
        try:
            yield env
        finally:
            await env.shutdown()


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server on a free loopback port, search attributes registered."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
    )
    try:
        await register_search_attributes(env.client, "default")
        yield env
    finally:
        await env.shutdown()


def server_address(env: WorkflowEnvironment) -> str:
    """``host:port`` of the server ``env`` talks to."""
    return env.client.service_client.config.target_host


# --- processes and memory -------------------------------------------------------------------------


def child_pids(parent: int) -> list[int]:
    """Pids of the direct children of ``parent`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the command name in parentheses, which may itself hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def dev_server_pid() -> int | None:
    """The pid of the dev server this process started (the ``temporal`` child), if any."""
    found = [pid for pid in child_pids(os.getpid()) if process_name(pid).startswith("temporal")]
    return max(found) if found else None


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError(f"no VmRSS for pid {pid}")


class WorkerProcess:
    """The production worker (``enrollments worker``) as a process of its own, so its memory can be read."""

    def __init__(
        self,
        *,
        address: str,
        database_url: str,
        task_queue: str,
        command: Sequence[str] = ("-m", "starter", "worker"),
        env: dict[str, str] | None = None,
    ) -> None:
        self._command = list(command)
        self._env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "DATABASE_URL": database_url,
            "ENROLLMENTS_TASK_QUEUE": task_queue,
            "ENROLLMENTS_LOG_LEVEL": "WARNING",
            "ENROLLMENTS_METRICS_PORT": "",
            "ENROLLMENTS_AUTOSCHEDULE_CRON": "",
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the worker process is not running")
        return self._process.pid

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, *self._command],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def restart(self) -> None:
        await self.stop()
        self.start()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StatementCounter:
    """SQL statements and transactions (commits and rollbacks) issued through ``engine`` since it was made."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.transactions = 0
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._statement)
        event.listen(sync, "commit", self._transaction)
        event.listen(sync, "rollback", self._transaction)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _transaction(self, *_: Any) -> None:
        self.transactions += 1

    def snapshot(self) -> tuple[int, int]:
        return self.statements, self.transactions


# --- measuring ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, nearest rank."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    """Run ``calls`` with at most ``concurrency`` in flight; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    """Wall-clock seconds ``call`` takes."""
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def ratio(ours: float, baseline: float) -> float:
    return round(ours / baseline, 3) if baseline else math.nan


def machine() -> dict[str, Any]:
    """What the run ran on (absolute figures depend on it; ratios much less)."""
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024**2, 1),
        "load_average_at_start": [round(value, 2) for value in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
