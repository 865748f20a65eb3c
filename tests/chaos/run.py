"""The fault suite: enrollments on a MINUTES plan advance on a dev server while things break and a caller keeps
sending commands.

``python -m tests.chaos.run`` (``make chaos``) runs the full form: 200 licensed and 20 metered enrollments, two
worker processes on the task queue killed with ``kill -9`` and restarted (one at a time, and both at once),
PostgreSQL (a private cluster) stopped for 30 s, the Temporal dev server restarted on its persisted state, and
crashes between an activity's commit and its completion (``ENROLLMENTS_FAULTS=after_commit:<p>``) all along; a
webhook endpoint on a loopback receiver gets every event, and a command driver (``tests/chaos/driver.py``) pauses,
resumes and terminates a quarter of the licensed enrollments, pays their orders and records the metered usage
through the client, sending again what a fault cut off. Afterwards every enrollment must have exactly the periods
its schedule (and its log of commands) implies, one order per licensed period, every answered command and usage
record stored once and billed once, every change exactly one event, the receiver every event, and every workflow
must agree with the database (``tests/chaos/agreement.py``: the doctor's checkup). The last line of output is one
JSON object: ``{"enrollments": N, "periods": N, "orders": N, "lost": N, "duplicated": N, "events": N,
"events_lost": N, "events_duplicated": N, "commands": N, "disagreements": N, "wedged": N}``. The exit status is 1
when anything was lost or duplicated, disagrees or is wedged. ``--help`` lists the knobs; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.domain import ProductPlan
from starter.client import EnrollmentsClient
from starter.devtools.receiver import WebhookReceiver
from tests.chaos.agreement import check_agreement
from tests.chaos.commands_check import check_commands
from tests.chaos.driver import CommandDriver
from tests.chaos.events_check import check_events
from tests.chaos.harness import (
    METERED_PRODUCT_ID,
    DevServer,
    Population,
    PostgresCluster,
    Report,
    WorkerProcess,
    create_enrollments,
    free_port,
    injected_faults,
    log,
    seed_product,
    settle,
)

TASK_QUEUE = "enrollments-chaos"
WEBHOOK_SECRET = "chaos-webhook-secret"


@dataclass(frozen=True)
class ChaosConfig:
    enrollments: int = 200
    metered_enrollments: int = 20
    """Enrollments on the metered plan, besides ``enrollments`` on the licensed one; the driver records their usage."""
    commanded: float = 0.25
    """Share of the licensed enrollments the driver pauses, resumes and terminates."""
    command_interval: float = 0.5
    """Seconds between two commands of the driver (0: no driver)."""
    command_timeout: float = 10.0
    """Seconds the driver waits for an answer before it sends a command again."""
    workers: int = 2
    period_minutes: int = 1
    backlog_periods: int = 2
    duration: float = 300.0
    """Seconds of chaos after the enrollments exist; the faults are spread evenly over it."""
    worker_kills: int = 3
    """Every third kill takes down all workers at once; the others one worker in turn."""
    postgres_outage: float = 30.0
    """Seconds PostgreSQL stays down (0: no outage; needs the private cluster)."""
    restart_temporal: bool = True
    fault_probability: float = 0.05
    settle_timeout: float = 600.0
    """How long the workers may take to catch up after the last fault before missing periods count as lost."""


async def run_chaos(config: ChaosConfig, directory: Path, database_url: str | None = None) -> Report:
    """One run in ``directory``; ``database_url`` None starts a private PostgreSQL cluster (needed for outages)."""
    cluster: PostgresCluster | None = None
    if database_url is None:
        cluster = PostgresCluster(directory / "postgres", free_port())
        cluster.init()
        cluster.start()
        cluster.create_database()
        database_url = cluster.url
        log(f"PostgreSQL cluster on port {cluster.port}")
    elif config.postgres_outage:
        raise ValueError("a PostgreSQL outage needs the private cluster (no database_url)")
    server = DevServer(directory / "temporal", free_port())
    env = {
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": server.address,
        "ENROLLMENTS_TASK_QUEUE": TASK_QUEUE,
        "ENROLLMENT_ADAPTERS": "licensed,metered",
        "ENROLLMENTS_FAULTS": f"after_commit:{config.fault_probability}" if config.fault_probability else "",
        "ENROLLMENTS_LOG_FORMAT": "text",
        "ENROLLMENTS_LOG_LEVEL": "WARNING",
        "ENROLLMENTS_AUTOSCHEDULE_CRON": "",
        "ENROLLMENTS_METRICS_PORT": "",
        "ENROLLMENTS_CODEC_KEY": "",
        "ENROLLMENTS_WEBHOOK_POLL_SECONDS": "0.5",
        "ENROLLMENTS_WEBHOOK_RETRY_INITIAL_SECONDS": "0.5",
        "ENROLLMENTS_WEBHOOK_RETRY_MAX_SECONDS": "5",
    }
    workers = [WorkerProcess(directory, env, name=f"worker-{chr(ord('a') + index)}") for index in range(config.workers)]
    receiver = WebhookReceiver().start()
    monitor: asyncio.Task[None] | None = None
    client: EnrollmentsClient | None = None
    try:
        plan = await seed_product(database_url, config.period_minutes)
        await server.start()
        log(f"Temporal dev server on {server.address}")
        for worker in workers:
            worker.start()
        client = EnrollmentsClient(await server.client(), task_queue=TASK_QUEUE, database_url=database_url)
        await client.add_webhook(receiver.url, WEBHOOK_SECRET)
        began = time.monotonic()
        population = await _create_population(client, config, plan)
        log(f"{len(population.starts)} enrollments created in {time.monotonic() - began:.1f}s")

        down: set[WorkerProcess] = set()  # workers a fault deliberately keeps down

        async def keep_workers_alive() -> None:
            while True:
                await asyncio.sleep(1)
                for worker in workers:
                    if not worker.alive and worker not in down:
                        log(f"{worker.name} exited on its own; restarting it")
                        worker.start()

        monitor = asyncio.create_task(keep_workers_alive())
        driver = CommandDriver(client, population, config.command_interval, attempt_timeout=config.command_timeout)
        driving = asyncio.create_task(driver.run(config.duration if config.command_interval else 0.0))
        await _inject_faults(config, workers, server, cluster, down)
        cutoff = datetime.now(UTC)
        log(f"faults done; settling (cutoff {cutoff.isoformat()})")

        async def settle_and_deliver() -> Report:
            report = await settle(database_url, plan, population, cutoff, config.settle_timeout)
            repeats = await check_events(database_url, receiver, config.settle_timeout, report)
            log(f"{report.events} events; {len(receiver.received)} webhook requests, {repeats} repeated deliveries")
            return report

        # The driver's last commands may wait for an activity lost with a killed worker (its 60 s timeout):
        # meanwhile the periods settle and the events reach the receiver.
        ledger, report = await asyncio.gather(driving, settle_and_deliver())
        log(f"driver: {ledger.summary()}")
        await check_commands(database_url, population, ledger, cutoff, report)
        log(f"injected after-commit faults (seen in worker logs): {injected_faults(directory)}")
        findings = await check_agreement(client, report)
        for what in ("disagreements", "wedged"):
            if getattr(report, what):
                log(f"{what}: {getattr(report, what)} enrollments: {', '.join(sorted(findings))}")
        for problem in report.problems[:20]:
            log(f"problem: {problem}")
        log(f"result {json.dumps(report.line())}")  # the CI form's figures too (pytest -s, or with a failure)
        return report
    finally:
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        if client is not None:
            await client.close()
        for worker in workers:
            worker.stop()
        server.stop()
        receiver.stop()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")


async def _create_population(client: EnrollmentsClient, config: ChaosConfig, plan: ProductPlan) -> Population:
    licensed = await create_enrollments(client, config.enrollments, plan, config.backlog_periods)
    metered = await create_enrollments(
        client,
        config.metered_enrollments,
        plan,
        config.backlog_periods,
        product_id=METERED_PRODUCT_ID,
        prefix="metered",
    )
    commanded = sorted(licensed)[: round(config.enrollments * config.commanded)]
    return Population(starts={**licensed, **metered}, commanded=frozenset(commanded), metered=frozenset(metered))


async def _inject_faults(
    config: ChaosConfig,
    workers: list[WorkerProcess],
    server: DevServer,
    cluster: PostgresCluster | None,
    down: set[WorkerProcess],
) -> None:
    kills = 0

    async def kill_workers() -> None:
        nonlocal kills
        kills += 1
        victims = workers if kills % 3 == 0 else [workers[(kills - 1) % len(workers)]]
        down.update(victims)
        for worker in victims:
            log(f"kill -9 {worker.name} (generation {worker.generation})")
            worker.kill()
        await asyncio.sleep(1)
        for worker in victims:
            worker.start()
        down.clear()

    async def postgres_outage() -> None:
        assert cluster is not None
        log(f"stopping PostgreSQL for {config.postgres_outage:.0f}s")
        cluster.stop("fast")
        await asyncio.sleep(config.postgres_outage)
        cluster.start()
        log("PostgreSQL is back")

    async def restart_temporal() -> None:
        log("restarting the Temporal dev server")
        server.stop()
        await server.start()
        log("Temporal dev server is back")

    faults: list[Callable[[], Awaitable[None]]] = []
    extra: list[Callable[[], Awaitable[None]]] = []
    if config.postgres_outage:
        extra.append(postgres_outage)
    if config.restart_temporal:
        extra.append(restart_temporal)
    for index in range(max(config.worker_kills, len(extra) + 1)):
        if index < config.worker_kills:
            faults.append(kill_workers)
        if index < len(extra):
            faults.append(extra[index])
    start = time.monotonic()
    for index, fault in enumerate(faults):
        at = config.duration * (index + 1) / (len(faults) + 1)
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        await fault()
    await asyncio.sleep(max(0.0, start + config.duration - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__.split("\n\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--enrollments", type=int, default=defaults.enrollments)
    parser.add_argument("--metered-enrollments", type=int, default=defaults.metered_enrollments)
    parser.add_argument("--commanded", type=float, default=defaults.commanded, help="share of licensed enrollments")
    parser.add_argument("--command-interval", type=float, default=defaults.command_interval, help="seconds; 0: none")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--period-minutes", type=int, default=defaults.period_minutes)
    parser.add_argument("--backlog-periods", type=int, default=defaults.backlog_periods)
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds of faults")
    parser.add_argument("--worker-kills", type=int, default=defaults.worker_kills)
    parser.add_argument("--postgres-outage", type=float, default=defaults.postgres_outage, help="seconds; 0: none")
    parser.add_argument("--no-temporal-restart", action="store_true")
    parser.add_argument("--fault-probability", type=float, default=defaults.fault_probability)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs) and print it")
    arguments = parser.parse_args(argv)
    config = ChaosConfig(
        enrollments=arguments.enrollments,
        metered_enrollments=arguments.metered_enrollments,
        commanded=arguments.commanded,
        command_interval=arguments.command_interval,
        workers=arguments.workers,
        period_minutes=arguments.period_minutes,
        backlog_periods=arguments.backlog_periods,
        duration=arguments.duration,
        worker_kills=arguments.worker_kills,
        postgres_outage=arguments.postgres_outage,
        restart_temporal=not arguments.no_temporal_restart,
        fault_probability=arguments.fault_probability,
    )
    directory = Path(tempfile.mkdtemp(prefix="enrollments-chaos-"))
    try:
        report = asyncio.run(run_chaos(config, directory))
    finally:
        if arguments.keep:
            log(f"scratch directory kept: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(report.line()), flush=True)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
