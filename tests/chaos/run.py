"""The fault suite: enrollments on a MINUTES plan advance on a dev server while things break.

``python -m tests.chaos.run`` (``make chaos``) runs the full form: 200 enrollments, worker processes killed
with ``kill -9`` and restarted, PostgreSQL (a private cluster) stopped for 30 s, the Temporal dev server
restarted on its persisted state, and crashes between an activity's commit and its completion
(``ENROLLMENTS_FAULTS=after_commit:<p>``) all along; a webhook endpoint on a loopback receiver gets every event.
Afterwards every enrollment must have exactly the periods its schedule implies and one order per billable
period, every change exactly one event, and the receiver every event; the last line of output is one JSON object:
``{"enrollments": N, "periods": N, "orders": N, "lost": N, "duplicated": N, "events": N, "events_lost": N,
"events_duplicated": N}``. The exit status is 1 when anything was lost or duplicated. ``--help`` lists the knobs;
progress goes to stderr.
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

from starter.client import EnrollmentsClient
from starter.devtools.receiver import WebhookReceiver
from tests.chaos.events_check import check_events
from tests.chaos.harness import (
    DevServer,
    PostgresCluster,
    Report,
    WorkerProcess,
    create_enrollments,
    free_port,
    log,
    seed_product,
    settle,
)

TASK_QUEUE = "enrollments-chaos"
WEBHOOK_SECRET = "chaos-webhook-secret"


@dataclass(frozen=True)
class ChaosConfig:
    enrollments: int = 200
    period_minutes: int = 1
    backlog_periods: int = 2
    duration: float = 300.0
    """Seconds of chaos after the enrollments exist; the faults are spread evenly over it."""
    worker_kills: int = 3
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
    worker = WorkerProcess(
        directory,
        {
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": server.address,
            "ENROLLMENTS_TASK_QUEUE": TASK_QUEUE,
            "ENROLLMENT_ADAPTERS": "licensed",
            "ENROLLMENTS_FAULTS": f"after_commit:{config.fault_probability}" if config.fault_probability else "",
            "ENROLLMENTS_LOG_FORMAT": "text",
            "ENROLLMENTS_LOG_LEVEL": "WARNING",
            "ENROLLMENTS_AUTOSCHEDULE_CRON": "",
            "ENROLLMENTS_METRICS_PORT": "",
            "ENROLLMENTS_CODEC_KEY": "",
            "ENROLLMENTS_WEBHOOK_POLL_SECONDS": "0.5",
            "ENROLLMENTS_WEBHOOK_RETRY_INITIAL_SECONDS": "0.5",
            "ENROLLMENTS_WEBHOOK_RETRY_MAX_SECONDS": "5",
        },
    )
    receiver = WebhookReceiver().start()
    monitor: asyncio.Task[None] | None = None
    try:
        plan = await seed_product(database_url, config.period_minutes)
        await server.start()
        log(f"Temporal dev server on {server.address}")
        worker.start()
        client = EnrollmentsClient(await server.client(), task_queue=TASK_QUEUE, database_url=database_url)
        await client.add_webhook(receiver.url, WEBHOOK_SECRET)
        began = time.monotonic()
        ids = await create_enrollments(client, config.enrollments, plan, config.backlog_periods)
        await client.close()
        log(f"{len(ids)} enrollments created in {time.monotonic() - began:.1f}s")

        paused = asyncio.Event()  # set while a fault deliberately keeps the worker down

        async def keep_worker_alive() -> None:
            while True:
                await asyncio.sleep(1)
                if not worker.alive and not paused.is_set():
                    log("worker exited on its own; restarting it")
                    worker.start()

        monitor = asyncio.create_task(keep_worker_alive())
        await _inject_faults(config, worker, server, cluster, paused)
        cutoff = datetime.now(UTC)
        log(f"faults done; settling (cutoff {cutoff.isoformat()})")
        report = await settle(database_url, plan, ids, cutoff, config.settle_timeout)
        repeats = await check_events(database_url, receiver, config.settle_timeout, report)
        log(f"{report.events} events; {len(receiver.received)} webhook requests, {repeats} repeated deliveries")
        log(f"injected after-commit faults (seen in worker logs): {worker.injected_faults()}")
        for problem in report.problems[:20]:
            log(f"problem: {problem}")
        return report
    finally:
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        worker.stop()
        server.stop()
        receiver.stop()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")


async def _inject_faults(
    config: ChaosConfig,
    worker: WorkerProcess,
    server: DevServer,
    cluster: PostgresCluster | None,
    paused: asyncio.Event,
) -> None:
    async def kill_worker() -> None:
        paused.set()
        log(f"kill -9 worker (generation {worker.generation})")
        worker.kill()
        await asyncio.sleep(1)
        worker.start()
        paused.clear()

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
            faults.append(kill_worker)
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
