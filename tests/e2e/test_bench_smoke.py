"""The benchmark harness runs end to end in its tiny mode (structure and counts only: no timing is asserted)."""

from __future__ import annotations

import math

from bench.__main__ import run

SUMMARY_KEYS = {
    "start_ratio",
    "start_ratio_vs_floor",
    "renewal_ratio",
    "renewal_ratio_vs_floor",
    "period_cost_age_ratio",
    "generator_idle_s",
    "generator_due_ratio",
    "generator_late_ratio",
    "events_per_period",
    "actions_per_period",
    "query_p99_ms",
    "webhook_ratio",
}


async def test_bench_tiny_mode_measures_every_figure():
    results = await run("tiny")
    summary = results["summary"]
    assert summary.keys() >= SUMMARY_KEYS
    assert all(isinstance(summary[key], float) and math.isfinite(summary[key]) for key in SUMMARY_KEYS)
    assert all(summary[key] > 0 for key in SUMMARY_KEYS)
    assert results["start"]["starts_per_side"] > 0
    assert results["renewal"]["periods"]["ours"] > 0 and results["renewal"]["periods"]["baseline"] > 0
    assert results["cost"]["steady_runs"] >= 1 and results["cost"]["periods"] > 0
    assert results["queries"]["warm"]["samples"] > 0 and results["queries"]["after_restart"]["samples"] > 0
    assert results["database"]["periods_per_side"] > 0
    assert results["webhooks"]["events_per_side"] == 2 * 4 * (2 + 6)  # two rounds of 4 enrollments with 8 events
    assert results["renewal"]["periods"]["floor"] > 0
    assert results["age_cost"]["ages"] == {"young": 10, "old": 30}
    generator = results["generator"]
    assert generator["idle_pass_success"] and generator["open_enrollments"] == 30
    assert generator["due_rows_per_round"] == [5] * 6  # each side of each round found the 5 due (or late) ones
