"""The fault suite's moving parts: a private PostgreSQL cluster, a Temporal dev server with persisted state,
worker subprocesses, the enrollments under test, and the check that nothing was lost or duplicated.

Everything binds to loopback on free ports and lives in one scratch directory; nothing here touches the
machine's own PostgreSQL or any other Temporal server. ``tests/chaos/run.py`` drives a full run
(``make chaos``); ``tests/chaos/test_chaos_short.py`` a short one inside the normal test suite.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.persistence import Store, create_engine, session_factory
from activities.persistence.migrate import upgrade_async
from adapters.calendar import Schedule
from adapters.domain import BillingInterval, Product, ProductPlan
from starter.client import EnrollmentsClient
from starter.devtools.binaries import register_search_attributes, temporal_cli_path
from tests.support.paths import REPO_ROOT

LOOPBACK = "127.0.0.1"
PRODUCT_ID = "chaos-minutes"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def log(message: str) -> None:
    print(f"chaos {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- PostgreSQL -------------------------------------------------------------------------------------------


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return versions[-1].parent


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb, trust auth, loopback only) that can be stopped and started."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = port
        self.bin = _postgres_bin()
        self.logfile = directory / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/enrollments"

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, timeout=120, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()}")

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the server runs as postgres: it must reach and own its directory
            self.directory.parent.chmod(0o755)
            shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={LOOPBACK} -k {self.directory} -c fsync=off"
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.logfile), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        self._as_postgres(
            str(self.bin / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres", "enrollments"
        )


# --- Temporal dev server ------------------------------------------------------------------------------


class DevServer:
    """``temporal server start-dev`` with its state in a file, so a restart keeps every workflow."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.db_file = directory / "temporal.db"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        self._spawn()
        client = await self.client(wait_seconds=60)
        await register_search_attributes(client, "default")

    def _spawn(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = (self.directory / "temporal.log").open("ab")
        command = [
            temporal_cli_path(), "server", "start-dev", "--ip", LOOPBACK, "--port", str(self.port), "--headless",
            "--db-filename", str(self.db_file), "--log-level", "error",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    async def client(self, wait_seconds: float = 60) -> Client:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return await Client.connect(self.address, data_converter=pydantic_data_converter)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"the Temporal dev server exited ({self.process.returncode})") from None
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()


# --- workers ---------------------------------------------------------------------------------------------


class WorkerProcess:
    """``python -m starter worker`` with the stack's settings, optionally armed with fault injection."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.generation += 1
        self._log = (self.directory / f"worker-{self.generation}.log").open("wb")
        env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "starter", "worker"]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no shutdown, in-flight tasks and activities are simply lost."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        if self._log is not None:
            self._log.close()

    def stop(self) -> None:
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # a graceful shutdown waits for running tasks: not needed here
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()

    def injected_faults(self) -> int:
        return sum(
            path.read_text(errors="replace").count("injected fault at") for path in self.directory.glob("worker-*.log")
        )


# --- enrollments and the check --------------------------------------------------------------------------


async def seed_product(database_url: str, period_minutes: int) -> ProductPlan:
    await upgrade_async(database_url)
    plan = ProductPlan(billing_interval=BillingInterval.MINUTES, billing_interval_count=period_minutes)
    engine = create_engine(database_url)
    try:
        await Store.over(session_factory(engine)).products.upsert(
            Product(id=PRODUCT_ID, plan=plan), now=datetime.now(UTC)
        )
    finally:
        await engine.dispose()
    return plan


async def create_enrollments(
    client: EnrollmentsClient, count: int, plan: ProductPlan, backlog_periods: int, seed: int = 8
) -> list[str]:
    """``count`` ACTIVE enrollments whose anchors lie ``backlog_periods`` periods (plus a random part of one)
    in the past: each catches up at once, and their later boundaries are spread over the whole period."""
    rng = random.Random(seed)
    period = timedelta(minutes=plan.billing_interval_count)
    now = datetime.now(UTC)
    semaphore = asyncio.Semaphore(10)  # more at once only makes workflow tasks time out on a small machine

    async def one(index: int) -> str:
        start = now - backlog_periods * period - period * rng.random()
        async with semaphore:
            return await client.create_enrollment(
                product_id=PRODUCT_ID,
                user_id=f"chaos-user-{index}",
                start=start,
                enrollment_id=f"chaos-{index:04d}",
                backdate=True,
            )

    return list(await asyncio.gather(*(one(index) for index in range(count))))


@dataclass
class Report:
    enrollments: int = 0
    periods: int = 0
    orders: int = 0
    lost: int = 0
    duplicated: int = 0
    events: int = 0
    events_lost: int = 0
    events_duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> dict[str, int]:
        return {
            "enrollments": self.enrollments,
            "periods": self.periods,
            "orders": self.orders,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "events": self.events,
            "events_lost": self.events_lost,
            "events_duplicated": self.events_duplicated,
        }

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.events_lost == self.events_duplicated == 0


async def check(database_url: str, plan: ProductPlan, enrollment_ids: Sequence[str], cutoff: datetime) -> Report:
    """Compare the database with each enrollment's schedule up to ``cutoff``.

    Lost: a scheduled period that started by ``cutoff`` and is missing, a billable period without its order,
    an enrollment that was created but has no row. Duplicated: a stored period that is not on the schedule,
    more than one order for a period, an order no period points at, an enrollment row nobody created.
    """
    engine = create_engine(database_url)
    try:
        # One snapshot: the workers may still be writing, and a period and its order commit together.
        async with engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            anchors = {
                row.id: row.anchor
                for row in await connection.execute(
                    text("SELECT id, anchor FROM enrollments WHERE product_id = :p"), {"p": PRODUCT_ID}
                )
            }
            period_rows = list(
                await connection.execute(
                    text('SELECT enrollment_id, start, "end", is_trial, order_id FROM enrollment_periods')
                )
            )
            order_rows = list(await connection.execute(text("SELECT id, enrollment_id, period_start FROM orders")))
    finally:
        await engine.dispose()

    def utc(value: Any) -> datetime:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    report = Report(enrollments=len(anchors), orders=sum(1 for row in order_rows if utc(row.period_start) <= cutoff))
    periods_of: dict[str, list[tuple[datetime, datetime, bool, str | None]]] = defaultdict(list)
    for row in period_rows:
        periods_of[row.enrollment_id].append((utc(row.start), utc(row.end), bool(row.is_trial), row.order_id))
    order_ids = {row.id for row in order_rows}
    orders_per_period = Counter((row.enrollment_id, utc(row.period_start)) for row in order_rows)
    report.duplicated += sum(count - 1 for count in orders_per_period.values() if count > 1)
    referenced = {order_id for periods in periods_of.values() for *_, order_id in periods if order_id}
    report.duplicated += len(order_ids - referenced)

    created = set(enrollment_ids)
    missing_rows = created - set(anchors)
    report.lost += len(missing_rows)
    report.duplicated += len(set(anchors) - created)
    report.problems += [f"{enrollment_id}: no enrollment row" for enrollment_id in sorted(missing_rows)]
    for enrollment_id, anchor_value in sorted(anchors.items()):
        anchor = utc(anchor_value)
        stored = sorted(periods_of.get(enrollment_id, []))
        schedule = Schedule(plan=plan, anchor=anchor)
        latest = max([cutoff, *(start for start, *_ in stored)])
        expected = schedule.periods(schedule.index_of_period_containing(latest) + 1)
        on_schedule = {(window.start, window.end) for window in expected}
        due = [(window.start, window.end) for window in expected if window.start <= cutoff]
        have = {(start, end) for start, end, *_ in stored}
        for window in due:
            if window not in have:
                report.lost += 1
                report.problems.append(f"{enrollment_id}: period {window[0].isoformat()} is missing")
        for start, end, is_trial, order_id in stored:
            if (start, end) not in on_schedule:
                report.duplicated += 1
                report.problems.append(f"{enrollment_id}: period {start.isoformat()}–{end.isoformat()} is off schedule")
            elif not is_trial and (order_id is None or order_id not in order_ids):
                report.lost += 1
                report.problems.append(f"{enrollment_id}: period {start.isoformat()} has no order")
        report.periods += sum(1 for start, *_ in stored if start <= cutoff)
    return report


async def settle(
    database_url: str, plan: ProductPlan, enrollment_ids: Sequence[str], cutoff: datetime, wait_seconds: float
) -> Report:
    """Check until nothing is lost (the workers catch up after the last fault) or ``wait_seconds`` pass."""
    began = time.monotonic()
    while True:
        report = await check(database_url, plan, enrollment_ids, cutoff)
        waited = time.monotonic() - began
        if report.lost == 0 or waited > wait_seconds:
            log(f"settled after {waited:.0f}s: {report.lost} missing, {report.duplicated} duplicated")
            return report
        await asyncio.sleep(3)
