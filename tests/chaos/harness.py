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

from activities.persistence import CREATED_EVENT, Store, create_engine, session_factory
from activities.persistence.migrate import upgrade_async
from adapters.calendar import Schedule
from adapters.domain import BillingInterval, EnrollmentStatus, Product, ProductPlan, UsageCalculationType
from starter.client import EnrollmentsClient
from starter.devtools.binaries import register_search_attributes, temporal_cli_path
from tests.support.paths import REPO_ROOT

LOOPBACK = "127.0.0.1"
PRODUCT_ID = "chaos-minutes"
METERED_PRODUCT_ID = "chaos-metered"


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

    def __init__(self, directory: Path, env: dict[str, str], name: str = "worker") -> None:
        self.directory = directory
        self.env = env
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.generation += 1
        self._log = (self.directory / f"{self.name}-{self.generation}.log").open("wb")
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


def injected_faults(directory: Path) -> int:
    """Crashes after commit the workers of ``directory`` logged (every generation of every worker)."""
    return sum(path.read_text(errors="replace").count("injected fault at") for path in directory.glob("worker-*.log"))


# --- enrollments and the check --------------------------------------------------------------------------


async def seed_product(database_url: str, period_minutes: int) -> ProductPlan:
    """The migrated database with the suite's two products: a licensed and a metered plan of the same interval."""
    await upgrade_async(database_url)
    plan = ProductPlan(billing_interval=BillingInterval.MINUTES, billing_interval_count=period_minutes)
    metered = plan.model_copy(update={"usage_calculation_type": UsageCalculationType.METERED})
    engine = create_engine(database_url)
    try:
        products = Store.over(session_factory(engine)).products
        await products.upsert(Product(id=PRODUCT_ID, plan=plan), now=datetime.now(UTC))
        await products.upsert(Product(id=METERED_PRODUCT_ID, plan=metered), now=datetime.now(UTC))
    finally:
        await engine.dispose()
    return plan


@dataclass(frozen=True)
class Population:
    """The enrollments a run created (id → the start it was given), those the command driver may pause, resume
    and terminate, and those on the metered plan."""

    starts: dict[str, datetime]
    commanded: frozenset[str] = frozenset()
    metered: frozenset[str] = frozenset()

    @property
    def licensed(self) -> list[str]:
        return [enrollment_id for enrollment_id in self.starts if enrollment_id not in self.metered]


async def create_enrollments(
    client: EnrollmentsClient,
    count: int,
    plan: ProductPlan,
    backlog_periods: int,
    seed: int = 8,
    *,
    product_id: str = PRODUCT_ID,
    prefix: str = "chaos",
) -> dict[str, datetime]:
    """``count`` ACTIVE enrollments whose anchors lie ``backlog_periods`` periods (plus a random part of one)
    in the past: each catches up at once, and their later boundaries are spread over the whole period.
    Returns each one's start."""
    rng = random.Random(seed)
    period = timedelta(minutes=plan.billing_interval_count)
    now = datetime.now(UTC)
    starts = {f"{prefix}-{index:04d}": now - backlog_periods * period - period * rng.random() for index in range(count)}
    semaphore = asyncio.Semaphore(10)  # more at once only makes workflow tasks time out on a small machine

    async def one(index: int, enrollment_id: str) -> str:
        async with semaphore:
            return await client.create_enrollment(
                product_id=product_id,
                user_id=f"{prefix}-user-{index}",
                start=starts[enrollment_id],
                enrollment_id=enrollment_id,
                backdate=True,
            )

    created = await asyncio.gather(*(one(index, enrollment_id) for index, enrollment_id in enumerate(starts)))
    assert created == list(starts), "create_enrollment returns the id it was given"
    return starts


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
    commands: int = 0
    disagreements: int = 0
    wedged: int = 0
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
            "commands": self.commands,
            "disagreements": self.disagreements,
            "wedged": self.wedged,
        }

    @property
    def clean(self) -> bool:
        counts = (self.lost, self.duplicated, self.events_lost, self.events_duplicated, self.disagreements, self.wedged)
        return not any(counts)


def utc(value: Any) -> datetime:
    """A stored moment as an aware UTC datetime (SQLite hands back strings or naive values)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


StoredPeriod = tuple[datetime, datetime, bool, str | None]
"""start, end, is_trial, order id"""


async def check(database_url: str, plan: ProductPlan, population: Population, cutoff: datetime) -> Report:
    """Compare the database with each enrollment's schedule up to ``cutoff``.

    Lost: a scheduled period that started by ``cutoff`` and is missing, a licensed period without its order,
    an enrollment that was created but has no row. Duplicated: a stored period that is not on the schedule,
    more than one order for a period, an order no period points at, an enrollment row nobody created. The
    schedule of an enrollment the driver commanded follows its log (:func:`check_commanded`); metered orders
    are checked against the usage (``tests/chaos/commands_check.py``). ``periods`` and ``orders`` count the
    licensed enrollments' rows.
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
                    text("SELECT id, anchor FROM enrollments WHERE product_id IN (:p, :m)"),
                    {"p": PRODUCT_ID, "m": METERED_PRODUCT_ID},
                )
            }
            period_rows = list(
                await connection.execute(
                    text('SELECT enrollment_id, start, "end", is_trial, order_id FROM enrollment_periods')
                )
            )
            order_rows = list(await connection.execute(text("SELECT id, enrollment_id, period_start FROM orders")))
            log_rows = list(
                await connection.execute(
                    text("SELECT enrollment_id, at, status FROM enrollment_log WHERE event_key <> :c ORDER BY id"),
                    {"c": CREATED_EVENT},
                )
            )
    finally:
        await engine.dispose()

    report = Report(
        enrollments=len(anchors),
        orders=sum(
            1 for row in order_rows if utc(row.period_start) <= cutoff and row.enrollment_id not in population.metered
        ),
    )
    periods_of: dict[str, list[StoredPeriod]] = defaultdict(list)
    for row in period_rows:
        periods_of[row.enrollment_id].append((utc(row.start), utc(row.end), bool(row.is_trial), row.order_id))
    log_of: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for row in log_rows:
        log_of[row.enrollment_id].append((utc(row.at), row.status))
    order_ids = {row.id for row in order_rows}
    orders_per_period = Counter((row.enrollment_id, utc(row.period_start)) for row in order_rows)
    report.duplicated += sum(count - 1 for count in orders_per_period.values() if count > 1)
    referenced = {order_id for periods in periods_of.values() for *_, order_id in periods if order_id}
    report.duplicated += len(order_ids - referenced)

    created = set(population.starts)
    missing_rows = created - set(anchors)
    report.lost += len(missing_rows)
    report.duplicated += len(set(anchors) - created)
    report.problems += [f"{enrollment_id}: no enrollment row" for enrollment_id in sorted(missing_rows)]
    for enrollment_id, anchor_value in sorted(anchors.items()):
        stored = sorted(periods_of.get(enrollment_id, []))
        metered = enrollment_id in population.metered
        if enrollment_id in population.commanded:
            check_commanded(report, enrollment_id, population.starts[enrollment_id], log_of[enrollment_id], stored,
                            cutoff, plan, order_ids)  # fmt: skip
        else:
            _check_schedule(
                report, enrollment_id, utc(anchor_value), stored, cutoff, plan, None if metered else order_ids
            )
        if not metered:
            report.periods += sum(1 for start, *_ in stored if start <= cutoff)
    return report


def _check_schedule(
    report: Report,
    enrollment_id: str,
    anchor: datetime,
    stored: list[StoredPeriod],
    cutoff: datetime,
    plan: ProductPlan,
    order_ids: set[str] | None,
) -> None:
    """Exactly the periods of the schedule from ``anchor`` up to ``cutoff``; each with its order unless
    ``order_ids`` is None (billed in arrears: checked against the usage)."""
    schedule = Schedule(plan=plan, anchor=anchor)
    latest = max([cutoff, *(start for start, *_ in stored)])
    expected = schedule.periods(schedule.index_of_period_containing(latest) + 1)
    on_schedule = {(window.start, window.end) for window in expected}
    have = {(start, end) for start, end, *_ in stored}
    for window in expected:
        if window.start <= cutoff and (window.start, window.end) not in have:
            report.lost += 1
            report.problems.append(f"{enrollment_id}: period {window.start.isoformat()} is missing")
    for start, end, is_trial, order_id in stored:
        if (start, end) not in on_schedule:
            report.duplicated += 1
            report.problems.append(f"{enrollment_id}: period {start.isoformat()}–{end.isoformat()} is off schedule")
        elif order_ids is not None and not is_trial and (order_id is None or order_id not in order_ids):
            report.lost += 1
            report.problems.append(f"{enrollment_id}: period {start.isoformat()} has no order")


def active_windows(start: datetime, log: Sequence[tuple[datetime, str]]) -> list[tuple[datetime, datetime | None]]:
    """When an enrollment created ACTIVE at ``start`` was ACTIVE, by its log of status changes (None: still)."""
    windows: list[tuple[datetime, datetime | None]] = []
    since: datetime | None = start
    for at, status in sorted(log, key=lambda entry: entry[0]):
        if status == EnrollmentStatus.ACTIVE.value:
            since = at if since is None else since
        elif since is not None:
            windows.append((since, at))
            since = None
    if since is not None:
        windows.append((since, None))
    return windows


def check_commanded(
    report: Report,
    enrollment_id: str,
    start: datetime,
    log: Sequence[tuple[datetime, str]],
    stored: list[StoredPeriod],
    cutoff: datetime,
    plan: ProductPlan,
    order_ids: set[str],
) -> None:
    """An enrollment paused, resumed and terminated along the way: its log says when it was ACTIVE.

    Lost: a moment up to ``cutoff`` when it was ACTIVE that no period covers, a period without its order.
    Duplicated: a period that overlaps the one before, does not last one interval, starts while the enrollment
    was not ACTIVE, or starts neither where the one before ended nor where a schedule began (its start or a
    resume).
    """
    windows = active_windows(start, log)
    anchors = {start} | {at for at, status in log if status == EnrollmentStatus.ACTIVE.value}
    length = timedelta(minutes=plan.billing_interval_count)
    previous_end: datetime | None = None
    for period_start, end, is_trial, order_id in stored:
        active = any(since <= period_start and (until is None or period_start < until) for since, until in windows)
        if previous_end is not None and period_start < previous_end:
            why = f"overlaps the period before (which ends {previous_end.isoformat()})"
        elif end - period_start != length:
            why = f"lasts {end - period_start}"
        elif not active:
            why = "starts while the enrollment is not ACTIVE"
        elif period_start != previous_end and period_start not in anchors:
            why = "starts neither at the end of the period before nor where a schedule began"
        else:
            why = ""
        if why:
            report.duplicated += 1
            report.problems.append(f"{enrollment_id}: period {period_start.isoformat()} {why}")
        elif not is_trial and (order_id is None or order_id not in order_ids):
            report.lost += 1
            report.problems.append(f"{enrollment_id}: period {period_start.isoformat()} has no order")
        previous_end = end if previous_end is None else max(previous_end, end)
    for since, until in windows:
        moment, bound = since, min(until or cutoff, cutoff)
        while moment < bound:
            covering = next((end for period_start, end, *_ in stored if period_start <= moment < end), None)
            if covering is None:
                report.lost += 1
                report.problems.append(f"{enrollment_id}: ACTIVE at {moment.isoformat()} but no period covers it")
                break
            moment = covering


async def settle(
    database_url: str, plan: ProductPlan, population: Population, cutoff: datetime, wait_seconds: float
) -> Report:
    """Check until nothing is lost (the workers catch up after the last fault) or ``wait_seconds`` pass."""
    began = time.monotonic()
    while True:
        report = await check(database_url, plan, population, cutoff)
        waited = time.monotonic() - began
        if report.lost == 0 or waited > wait_seconds:
            log(f"settled after {waited:.0f}s: {report.lost} missing, {report.duplicated} duplicated")
            return report
        await asyncio.sleep(3)
