"""The ``enrollments`` command line: schedule preview, database, worker and simulator commands.

Topic modules (``starter/cli_*.py``) register their commands on the same app; importing them here is what
adds them to ``enrollments``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

import starter.cli_orders  # registers commands
import starter.cli_security  # registers commands
import starter.cli_usage  # noqa: F401  (registers commands)
from adapters.calendar import preview as preview_periods
from adapters.domain import PeriodWindow, isoformat_utc
from starter import cli_dev, cli_enrollments  # noqa: F401  (registers commands)
from starter.cli_core import (
    MAX_PREVIEW_PERIODS,
    app,
    db_app,
    not_blank,
    parse_aware_datetime,
    parse_plan,
    parse_timezone,
    redacted,
    state,
)

__all__ = ["app", "main", "state"]


def period_json(window: PeriodWindow) -> dict[str, Any]:
    return {"start": isoformat_utc(window.start), "end": isoformat_utc(window.end), "is_trial": window.is_trial}


@app.command()
def preview(
    plan: Annotated[
        str,
        typer.Option(
            "--plan",
            help='The plan as JSON, e.g. \'{"billing_interval": "MONTHS", "trial_interval": "DAYS", '
            '"trial_interval_count": 14}\'.',
            show_default=False,
        ),
    ],
    start: Annotated[
        str, typer.Option("--start", help="The anchor: ISO 8601 with a UTC offset or Z.", show_default=False)
    ],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone whose wall clock days/months keep.")] = "UTC",
    periods: Annotated[
        int, typer.Option("--periods", min=1, max=MAX_PREVIEW_PERIODS, help="How many periods to show.")
    ] = 12,
) -> None:
    """Print the first periods of a plan as a JSON array (UTC), without side effects."""
    product_plan = parse_plan(plan)
    anchor = parse_aware_datetime("--start", start)
    zone = parse_timezone("--timezone", timezone)
    windows = preview_periods(product_plan, anchor, zone, periods)
    typer.echo(json.dumps([period_json(window) for window in windows], indent=2))


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: the global --database-url).")
    ] = None,
) -> None:
    """Migrate the database to the newest schema (safe to repeat)."""
    from activities.persistence.migrate import upgrade

    url = not_blank("--database-url", database_url) or state(ctx).database_url
    upgrade(url)
    typer.echo(f"{redacted(url)}: schema is up to date")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run a worker (the enrollment workflow and its activities) until Ctrl-C or SIGTERM."""
    import asyncio

    from starter.worker import run_worker

    settings = state(ctx).effective_settings()
    typer.echo(
        f"worker: task queue {settings.task_queue!r} on {settings.temporal_address} "
        f"(namespace {settings.temporal_namespace}), database {redacted(settings.database_url)}"
    )
    asyncio.run(run_worker(settings))


@app.command()
def simulate(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario JSON file.", show_default=False)],
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Keep the rows in this database (default: a throwaway SQLite file)."),
    ] = None,
) -> None:
    """Run a scripted scenario on the real workflow and the time-skipping test server; print JSON."""
    from starter.simulate import main_simulate

    # Only an explicit URL is used: the default is a throwaway database, never the configured one.
    url = not_blank("--database-url", database_url) or state(ctx).database_url_option
    raise typer.Exit(main_simulate(scenario, url))


def main() -> None:
    """Entry point of the ``enrollments`` console script."""
    app(prog_name="enrollments")
