"""Run the benchmarks: ``python -m bench --mode quick|full|tiny [--out DIR]``.

Writes ``<out>/<mode>.json`` (all figures, the sizes and the machine) and prints one JSON line of the
headline figures last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from adapters.domain import BillingInterval, ProductPlan
from bench import scenarios
from bench.database import database_throughput
from bench.growth import YOUNG_AGE, generator_passes, period_cost_by_age, renewal_storm, renewals_by_workers
from bench.harness import dev_server, machine, postgres_database, time_skipping_server
from bench.webhooks import webhook_throughput

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does in a mode."""

    start_count: int
    start_concurrency: int
    renewal_enrollments: int
    renewal_periods: int
    query_open: int
    query_samples: int
    scale_sizes: tuple[int, ...]
    scale_concurrency: int
    generator: bool
    db_periods: int
    db_concurrency: int
    webhook_enrollments: int
    webhook_events_each: int
    age_enrollments: int
    age_old: int
    age_window: int
    generator_open: int
    generator_due: int
    storm: bool
    worker_processes: tuple[int, ...]


_COMMON: dict[str, Any] = {
    "start_concurrency": 20,
    "scale_sizes": (),
    "scale_concurrency": 20,
    "generator": False,
    "db_concurrency": 4,
    "age_enrollments": 1,
    "age_window": 50,
    "storm": False,
    "worker_processes": (),
}
"""What the modes share unless they say otherwise."""


def _mode(**sizes: Any) -> Sizes:
    return Sizes(**{**_COMMON, **sizes})


MODES = {
    # The smoke test's: proves the harness end to end, says nothing about speed.
    "tiny": _mode(
        start_count=4,
        start_concurrency=4,
        renewal_enrollments=1,
        renewal_periods=25,
        query_open=6,
        query_samples=4,
        scale_concurrency=4,
        db_periods=16,
        db_concurrency=2,
        webhook_enrollments=4,
        webhook_events_each=6,
        age_old=30,
        age_window=10,
        generator_open=30,
        generator_due=5,
    ),
    # About two minutes on a quiet machine: every ratio, queries with 60 open enrollments, no scale curve; the
    # age ratio at the 200th period, the generator over 1,000 open enrollments with 100 due.
    "quick": _mode(
        start_count=60,
        renewal_enrollments=8,
        renewal_periods=30,
        query_open=60,
        query_samples=60,
        db_periods=240,
        webhook_enrollments=50,
        webhook_events_each=60,
        age_old=200,
        generator_open=1000,
        generator_due=100,
    ),
    # The full run: 10,000 open enrollments (the scale curve, then their renewal storm), the age ratio at the
    # 1,000th period, the generator over 10,000 with 1,000 due, renewals with 1, 2 and 4 worker processes.
    "full": _mode(
        start_count=200,
        renewal_enrollments=20,
        renewal_periods=60,
        query_open=1000,
        query_samples=500,
        scale_sizes=(1000, 10000),
        generator=True,
        db_periods=2000,
        webhook_enrollments=100,
        webhook_events_each=100,
        age_enrollments=2,
        age_old=1000,
        generator_open=10000,
        generator_due=1000,
        storm=True,
        worker_processes=(1, 2, 4),
    ),
}


async def run(
    mode: str, scale_sizes: tuple[int, ...] | None = None, checkpoint: Path | None = None, only: str | None = None
) -> dict[str, Any]:
    """Every measurement of ``mode``; returns the full results (``summary`` holds the headline figures).

    ``checkpoint``: a file the results so far are written to before each measurement (a long run that is
    stopped keeps what it measured). ``only="scale"``: the start throughput (the storm's period comes from it)
    and the scale with its storm, nothing else (no summary)."""
    sizes = MODES[mode]
    if scale_sizes is not None:
        sizes = Sizes(**{**asdict(sizes), "scale_sizes": scale_sizes})
    results: dict[str, Any] = {
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": asdict(sizes),
    }
    clock = time.perf_counter()

    def step(message: str) -> None:
        if checkpoint is not None:
            checkpoint.write_text(json.dumps(results, indent=2) + "\n")
        _progress(message)

    step(f"{mode}: start throughput ({sizes.start_count} per side)")
    async with postgres_database() as url, dev_server() as env:
        results["start"] = await scenarios.start_throughput(env, url, sizes.start_count, sizes.start_concurrency)
        if not sizes.scale_sizes:  # no memory curve: the queries may share the server and database
            step(f"{mode}: query latency ({sizes.query_open} open enrollments)")
            results.update(await _scale_and_queries(env, url, sizes))
    if sizes.scale_sizes:  # a server and database of their own, so their memory is the scale's alone
        step(f"{mode}: query latency and scale ({', '.join(map(str, sizes.scale_sizes))} open enrollments)")
        async with postgres_database() as url, dev_server() as env:
            results.update(await _scale_and_queries(env, url, sizes, _storm(sizes, results) if sizes.storm else None))
    if only == "scale":
        results["seconds"] = round(time.perf_counter() - clock, 1)
        return results
    backlog = sizes.webhook_enrollments * (2 + sizes.webhook_events_each)
    step(f"{mode}: webhook delivery ({backlog} events of {sizes.webhook_enrollments} enrollments per round)")
    async with postgres_database() as url, dev_server() as env:
        results["webhooks"] = await webhook_throughput(
            env, url, enrollments=sizes.webhook_enrollments, events_each=sizes.webhook_events_each, concurrency=10
        )
    step(f"{mode}: renewal throughput and cost ({sizes.renewal_enrollments} × {sizes.renewal_periods} periods)")
    async with postgres_database() as url, time_skipping_server() as env:
        results.update(await scenarios.renewal_throughput(env, url, sizes.renewal_enrollments, sizes.renewal_periods))
    # A server and database of its own: its rows per period are counted, and a test server that served the
    # renewal measurement sometimes stops answering skips on a loaded machine.
    async with postgres_database() as url, time_skipping_server() as env:
        results.update(await scenarios.period_cost(env, url, enrollments=2))
    step(f"{mode}: CPU per period at the {YOUNG_AGE}th and the {sizes.age_old}th period")
    async with postgres_database() as url, time_skipping_server() as env:
        results.update(
            await period_cost_by_age(
                env, url, enrollments=sizes.age_enrollments, old=sizes.age_old, window=sizes.age_window
            )
        )
    step(f"{mode}: order generator ({sizes.generator_open} open, {sizes.generator_due} due)")
    async with postgres_database() as url, dev_server() as env:
        results.update(await generator_passes(env, url, open_count=sizes.generator_open, due=sizes.generator_due))
    if sizes.worker_processes:
        step(f"{mode}: renewals with {', '.join(map(str, sizes.worker_processes))} worker processes")
        async with postgres_database() as url, time_skipping_server() as env:
            results.update(
                await renewals_by_workers(env, url, processes=sizes.worker_processes, enrollments=40, minutes=15)
            )
    step(f"{mode}: database ({sizes.db_periods} periods per side)")
    async with postgres_database() as url:
        results["database"] = await database_throughput(url, sizes.db_periods, sizes.db_concurrency)
    results["seconds"] = round(time.perf_counter() - clock, 1)
    results["summary"] = summary(results)
    return results


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Storm:
    """The scale's enrollments all start at ``start`` on a plan of ``minutes``: all renew at ``boundary``."""

    start: datetime
    minutes: int

    @property
    def boundary(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)


def _storm(sizes: Sizes, results: dict[str, Any]) -> Storm:
    """A period long enough for every scale enrollment to be created before it ends: 1.25 × the time the start
    rate measured in this run would take, plus three minutes for the queries and generator passes."""
    rate = results["start"]["per_second"]["ours"]
    seconds = 1.25 * max(sizes.scale_sizes) / rate + 180
    return Storm(start=datetime.now(UTC).replace(second=0, microsecond=0), minutes=math.ceil(seconds / 60) + 1)


async def _scale_and_queries(
    env: WorkflowEnvironment, url: str, sizes: Sizes, storm: Storm | None = None
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if storm is not None:
        _progress(f"storm: every scale enrollment renews at {storm.boundary.isoformat()}")
        extra = {
            "plan": ProductPlan(billing_interval=BillingInterval.MINUTES, billing_interval_count=storm.minutes),
            "start": storm.start,
            "create_until": storm.boundary - timedelta(seconds=60),
            "then": lambda ids, ours: renewal_storm(
                env, url, ids, ours, storm.boundary, timedelta(minutes=storm.minutes)
            ),
        }
    return await scenarios.scale_and_queries(
        env,
        url,
        sizes=sizes.scale_sizes,
        query_open=sizes.query_open,
        query_samples=sizes.query_samples,
        concurrency=sizes.scale_concurrency,
        generator=sizes.generator,
        **extra,
    )


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: what ``make bench-quick`` prints as its last line."""
    cost, queries, generator = results["cost"], results["queries"], results["generator"]
    figures = {
        "mode": results["mode"],
        "start_ratio": results["start"]["start_ratio"],
        "start_ratio_vs_floor": results["start"]["start_ratio_vs_floor"],
        "start_ratio_vs_plain_start": results["start"]["start_ratio_vs_plain_start"],
        "renewal_ratio": results["renewal"]["renewal_ratio"],
        "renewal_ratio_vs_floor": results["renewal"]["renewal_ratio_vs_floor"],
        "period_cost_age_ratio": results["age_cost"]["period_cost_age_ratio"],
        "period_cost_old_age": results["age_cost"]["ages"]["old"],
        "events_per_period": cost["events_per_period"],
        "actions_per_period": cost["actions_per_period"],
        "query_p50_ms": queries["warm"]["p50_ms"],
        "query_p99_ms": queries["warm"]["p99_ms"],
        "query_p99_after_restart_ms": queries["after_restart"]["p99_ms"],
        "query_open_enrollments": queries["open_enrollments"],
        "db_ratio": results["database"]["db_ratio"],
        "webhook_ratio": results["webhooks"]["webhook_ratio"],
        "generator_idle_s": generator["idle_pass_seconds"],
        "generator_open_enrollments": generator["open_enrollments"],
        "generator_due_ratio": generator["generator_due_ratio"],
        "generator_late_ratio": generator["generator_late_ratio"],
    }
    if generator["open_enrollments"] == 10_000:
        figures["generator_idle_10k_s"] = generator["idle_pass_seconds"]
    if "storm" in results:
        figures["storm_seconds"] = results["storm"]["seconds"]["ours"]
        figures["storm_ratio_vs_floor"] = results["storm"]["storm_ratio_vs_floor"]
    if "workers" in results:
        figures["renewals_per_second_by_workers"] = results["workers"]["periods_per_second"]
    figures["seconds"] = results["seconds"]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of <mode>.json (default: bench/results)")
    parser.add_argument(
        "--scale", help="open-enrollment counts of the scale curve, comma-separated (default: the mode's)"
    )
    parser.add_argument(
        "--only",
        choices=["scale"],
        help="the scale and its storm alone (after the start throughput): <mode>.scale.json",
    )
    args = parser.parse_args(argv)
    scale = tuple(int(value) for value in args.scale.split(",")) if args.scale else None
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.mode if args.only is None else f"{args.mode}.{args.only}"
    partial = args.out / f"{name}.partial.json"
    results = asyncio.run(run(args.mode, scale, checkpoint=partial, only=args.only))
    partial.unlink(missing_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results.get("summary") or {key: results.get(key) for key in ("scale", "storm")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
