"""Run the benchmarks: ``python -m bench --mode quick|full|tiny [--out DIR]``.

Writes ``<out>/<mode>.json`` (all figures, the sizes and the machine) and prints one JSON line of the
headline figures last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from bench import scenarios
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


MODES = {
    # The smoke test's: proves the harness end to end, says nothing about speed.
    "tiny": Sizes(4, 4, 1, 25, 6, 4, (), 4, False, 16, 2, 4, 6),
    # Under two minutes: every ratio, queries with 60 open enrollments, no scale curve, no generator pass.
    "quick": Sizes(60, 20, 8, 30, 60, 60, (), 20, False, 240, 4, 50, 60),
    # The full run: 1,000 open enrollments for queries, the scale curve (``--scale 1000,10000`` for 10k).
    "full": Sizes(400, 20, 20, 60, 1000, 500, (1000, 3000), 20, True, 2000, 4, 100, 100),
}


async def run(mode: str, scale_sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Every measurement of ``mode``; returns the full results (``summary`` holds the headline figures)."""
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
    _progress(f"{mode}: start throughput ({sizes.start_count} per side)")
    async with postgres_database() as url, dev_server() as env:
        results["start"] = await scenarios.start_throughput(env, url, sizes.start_count, sizes.start_concurrency)
        if not sizes.scale_sizes:  # no memory curve: the queries may share the server and database
            _progress(f"{mode}: query latency ({sizes.query_open} open enrollments)")
            results.update(await _scale_and_queries(env, url, sizes))
    backlog = sizes.webhook_enrollments * (2 + sizes.webhook_events_each)
    _progress(f"{mode}: webhook delivery ({backlog} events of {sizes.webhook_enrollments} enrollments per round)")
    async with postgres_database() as url, dev_server() as env:
        results["webhooks"] = await webhook_throughput(
            env, url, enrollments=sizes.webhook_enrollments, events_each=sizes.webhook_events_each, concurrency=10
        )
    _progress(f"{mode}: renewal throughput and cost ({sizes.renewal_enrollments} × {sizes.renewal_periods} periods)")
    async with postgres_database() as url, time_skipping_server() as env:
        results.update(await scenarios.renewal_throughput(env, url, sizes.renewal_enrollments, sizes.renewal_periods))
        results.update(await scenarios.period_cost(env, url, enrollments=2))
    if sizes.scale_sizes:  # a server and database of their own, so their memory is the scale's alone
        _progress(f"{mode}: query latency and scale ({', '.join(map(str, sizes.scale_sizes))} open enrollments)")
        async with postgres_database() as url, dev_server() as env:
            results.update(await _scale_and_queries(env, url, sizes))
    _progress(f"{mode}: database ({sizes.db_periods} periods per side)")
    async with postgres_database() as url:
        results["database"] = await scenarios.database_throughput(url, sizes.db_periods, sizes.db_concurrency)
    results["seconds"] = round(time.perf_counter() - clock, 1)
    results["summary"] = summary(results)
    return results


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _scale_and_queries(env: WorkflowEnvironment, url: str, sizes: Sizes) -> dict[str, Any]:
    return await scenarios.scale_and_queries(
        env,
        url,
        sizes=sizes.scale_sizes,
        query_open=sizes.query_open,
        query_samples=sizes.query_samples,
        concurrency=sizes.scale_concurrency,
        generator=sizes.generator,
    )


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures: what ``make bench-quick`` prints as its last line."""
    cost, queries = results["cost"], results["queries"]
    return {
        "mode": results["mode"],
        "start_ratio": results["start"]["start_ratio"],
        "start_ratio_vs_plain_start": results["start"]["start_ratio_vs_plain_start"],
        "renewal_ratio": results["renewal"]["renewal_ratio"],
        "events_per_period": cost["events_per_period"],
        "actions_per_period": cost["actions_per_period"],
        "query_p50_ms": queries["warm"]["p50_ms"],
        "query_p99_ms": queries["warm"]["p99_ms"],
        "query_p99_after_restart_ms": queries["after_restart"]["p99_ms"],
        "query_open_enrollments": queries["open_enrollments"],
        "db_ratio": results["database"]["db_ratio"],
        "webhook_ratio": results["webhooks"]["webhook_ratio"],
        "seconds": results["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of <mode>.json (default: bench/results)")
    parser.add_argument(
        "--scale", help="open-enrollment counts of the scale curve, comma-separated (default: the mode's)"
    )
    args = parser.parse_args(argv)
    scale = tuple(int(value) for value in args.scale.split(",")) if args.scale else None
    results = asyncio.run(run(args.mode, scale))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.mode}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
