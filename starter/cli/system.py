"""System commands: ``preview`` a plan's schedule, ``db upgrade``, run a ``worker``, ``simulate`` a scenario."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from activities.persistence import redacted
from activities.persistence.migrate import upgrade
from adapters.calendar import preview as preview_periods
from adapters.domain import PeriodWindow, ProductPlan, isoformat_utc
from adapters.dunning import due_time, schedule
from starter.cli.app import state
from starter.cli.parsing import not_blank, parse_aware_datetime, parse_plan, parse_timezone
from starter.devtools.simulation import main_simulate
from starter.runtime.worker import run_worker

MAX_PREVIEW_PERIODS = 1_000

db_app = typer.Typer(name="db", help="The application database.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(preview)
    app.add_typer(db_app)
    app.command()(worker)
    app.command()(simulate)


def period_json(window: PeriodWindow, plan: ProductPlan | None = None) -> dict[str, Any]:
    """A period as JSON; with a plan that has a dunning policy, the times of its order's steps if it stays unpaid."""
    period: dict[str, Any] = {
        "start": isoformat_utc(window.start),
        "end": isoformat_utc(window.end),
        "is_trial": window.is_trial,
    }
    policy = None if plan is None else plan.dunning
    due = None if plan is None else due_time(plan, window)
    if policy is not None and due is not None:
        period["dunning"] = [
            {"action": str(step.action), "at": isoformat_utc(step.at)} for step in schedule(policy, due)
        ]
    return period


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
    """Print the first periods of a plan as a JSON array (UTC), without side effects; with a dunning policy, each
    period lists when its order's steps would run if it stayed unpaid."""
    product_plan = parse_plan(plan)
    anchor = parse_aware_datetime("--start", start)
    zone = parse_timezone("--timezone", timezone)
    windows = preview_periods(product_plan, anchor, zone, periods)
    typer.echo(json.dumps([period_json(window, product_plan) for window in windows], indent=2))


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: the global --database-url).")
    ] = None,
) -> None:
    """Migrate the database to the newest schema (safe to repeat)."""
    url = not_blank("--database-url", database_url) or state(ctx).database_url
    upgrade(url)
    typer.echo(f"{redacted(url)}: schema is up to date")


def worker(ctx: typer.Context) -> None:
    """Run a worker (enrollment workflows, webhook delivery on its own queue) until Ctrl-C or SIGTERM."""
    settings = state(ctx).effective_settings()
    typer.echo(
        f"worker: task queues {settings.task_queue!r} and {settings.webhook_task_queue!r} "
        f"on {settings.temporal_address} "
        f"(namespace {settings.temporal_namespace}), database {redacted(settings.database_url)}"
    )
    asyncio.run(run_worker(settings))


def simulate(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario JSON file.", show_default=False)],
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Keep the rows in this database (default: a throwaway SQLite file)."),
    ] = None,
) -> None:
    """Run a scripted scenario on the real workflow and the time-skipping test server; print JSON."""
    # Only an explicit URL is used: the default is a throwaway database, never the configured one.
    url = not_blank("--database-url", database_url) or state(ctx).database_url_option
    raise typer.Exit(main_simulate(scenario, url))
