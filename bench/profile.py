"""Where a renewal's CPU goes: ``python -m bench.profile [--enrollments N] [--minutes M] [--top K]``.

Runs ``enrollments`` enrollments on a 1-minute plan for ``minutes`` simulated minutes (time-skipping server,
PostgreSQL, as ``renewal_ratio`` does) on one ``enrollments worker`` process profiled with cProfile in every
thread (the SDK runs workflow activations in threads of its own, activities in the main thread's event loop),
then prints the worker's CPU per period and the functions that took the most of it. py-spy is not needed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROFILE_DIR_ENV = "BENCH_PROFILE_DIR"


def _profiled_worker() -> None:
    """``enrollments worker`` with every thread profiled; one stats file per thread in ``$BENCH_PROFILE_DIR``."""
    directory = Path(os.environ[PROFILE_DIR_ENV])
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU time: waiting on a socket or a queue costs nothing
        try:
            profile.runcall(original_run, thread)
        finally:
            profile.dump_stats(directory / f"thread-{thread.ident}.prof")

    threading.Thread.run = run  # type: ignore[method-assign,assignment]
    from starter.cli import main

    sys.argv = ["enrollments", "worker"]
    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(main)
    except SystemExit:
        pass
    finally:
        profile.dump_stats(directory / "main.prof")


async def _measure(enrollments: int, minutes: int, directory: Path) -> dict[str, Any]:
    from activities.persistence import create_engine
    from adapters.lifecycle import workflow_id_for
    from bench.harness import (
        WorkerProcess,
        add_product,
        cpu_seconds,
        periods_with_order,
        postgres_database,
        server_address,
        time_skipping_server,
    )
    from bench.scenarios import MINUTELY, PRODUCT, _create, _queue, _skip
    from starter.client import EnrollmentsClient

    async with postgres_database() as url, time_skipping_server() as env:
        await add_product(url, PRODUCT, MINUTELY)
        queue = _queue("profile")
        worker = WorkerProcess(
            address=server_address(env),
            database_url=url,
            task_queue=queue,
            command=("-m", "bench.profile", "--worker"),
            env={PROFILE_DIR_ENV: str(directory)},
        )
        engine = create_engine(url)
        worker.start()
        try:
            ids = await _create(EnrollmentsClient(env.client, task_queue=queue), enrollments, enrollments)
            await _skip(env, 5)  # past registration and the first run's start
            cpu, before = cpu_seconds(worker.pid), await periods_with_order(engine, ids)
            await _skip(env, minutes)
            periods = await periods_with_order(engine, ids) - before
            used = cpu_seconds(worker.pid) - cpu
            for enrollment_id in ids:
                await env.client.get_workflow_handle(workflow_id_for(enrollment_id)).terminate()
        finally:
            await worker.stop()
            await engine.dispose()
    return {"periods": periods, "worker_cpu_ms_per_period": round(used * 1000 / periods, 2)}


AREAS = (
    ("workflow sandbox", "temporalio/worker/workflow_sandbox"),
    ("temporalio SDK (other)", "temporalio/"),
    ("SQLAlchemy", "sqlalchemy/"),
    ("asyncpg", "asyncpg"),
    ("pydantic", "pydantic"),
    ("project: activities", "/activities/"),
    ("project: workflows", "/workflows/"),
    ("project: adapters", "/adapters/"),
    ("project: starter", "/starter/"),
    ("asyncio", "asyncio/"),
)


def _by_area(stats: pstats.Stats) -> str:
    """CPU (tottime) grouped by library: where a period's CPU goes, in percent."""
    areas: Counter[str] = Counter()
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename if filename != "~" else name
        area = next((label for label, marker in AREAS if marker in where), "other (builtins, json, ssl, …)")
        areas[area] += tottime
    total = sum(areas.values()) or 1.0
    return "\n".join(
        f"{area:<34} {seconds:8.2f} s {100 * seconds / total:5.1f} %" for area, seconds in areas.most_common()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--enrollments", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _profiled_worker()
        return 0
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        figures = asyncio.run(_measure(args.enrollments, args.minutes, directory))
        files = sorted(directory.glob("*.prof"))
        stats = pstats.Stats(str(files[0]), stream=io.StringIO())
        for file in files[1:]:
            stats.add(str(file))
    print(figures)
    print(_by_area(stats))
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
