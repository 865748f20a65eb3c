"""``enrollments dev``: the embedded stack (Temporal dev server + Web UI, migrated database, worker) in one command."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from starter.cli.app import state
from starter.cli.errors import EXIT_RUNTIME, CliError
from starter.cli.parsing import not_blank
from starter.devtools.demo import DEMO_ENROLLMENTS, demo_steps, seed_demo
from starter.devtools.stack import DevConfig, DevStack
from starter.devtools.state import DevStackError
from starter.runtime.observability import configure_logging, metrics_runtime


def register(app: typer.Typer) -> None:
    app.command()(dev)


def dev(
    ctx: typer.Context,
    temporal_port: Annotated[
        int, typer.Option("--temporal-port", min=1, max=65_535, help="gRPC port of the Temporal dev server.")
    ] = 7233,
    ui_port: Annotated[int, typer.Option("--ui-port", min=1, max=65_535, help="Port of the Temporal Web UI.")] = 8233,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="SQLAlchemy URL (default: the global --database-url, $DATABASE_URL, else STATE_DIR/enrollments.db).",
        ),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where the server's state, its log and the SQLite file live.")
    ] = Path(".enrollments"),
    demo: Annotated[
        bool, typer.Option("--demo", help="Add demo products on MINUTES plans and a few enrollments (idempotent).")
    ] = False,
) -> None:
    """Run the whole stack locally until Ctrl-C or SIGTERM: Temporal dev server with the Web UI, database, worker."""
    options = state(ctx)
    settings = options.settings
    explicit_url = not_blank("--database-url", database_url) or options.database_url_option
    if explicit_url is None and "database_url" in settings.model_fields_set:
        explicit_url = settings.database_url  # $DATABASE_URL
    config = DevConfig(
        state_dir=state_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        database_url=explicit_url,
        namespace=options.namespace_option or settings.temporal_namespace,
        task_queue=settings.task_queue,
        adapter_names=tuple(settings.adapter_names),
        metrics_port=settings.metrics_port,
        next_period_attribute=settings.next_period_attribute,
    )
    try:
        asyncio.run(_run(config, demo, settings.metrics_host))
    except DevStackError as error:
        raise CliError(str(error), EXIT_RUNTIME) from error


async def _run(config: DevConfig, demo: bool, metrics_host: str) -> None:
    configure_logging("text", "WARNING")
    console = Console(stderr=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    typer.echo(f"starting the Temporal dev server on {config.address} (state in {config.state_dir}) …", err=True)
    async with DevStack(config, runtime=metrics_runtime(config.metrics_port, metrics_host)) as stack:
        if demo:
            with Progress(
                TextColumn("demo data"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                console=console, transient=True,
            ) as progress:  # fmt: skip
                task = progress.add_task("", total=demo_steps())
                created = await seed_demo(
                    stack.client,
                    config.effective_database_url,
                    progress=lambda label: progress.update(task, advance=1, description=label),
                )
            kept = len(DEMO_ENROLLMENTS) - len(created)
            typer.echo(f"demo: {len(created)} enrollments created, {kept} kept from an earlier start", err=True)
        addresses = stack.addresses()
        typer.echo(
            "\n".join(
                [
                    "durable-enrollments dev stack is running (Ctrl-C to stop)",
                    f"  Temporal gRPC  {addresses['temporal']}  (namespace {config.namespace})",
                    f"  Web UI         {addresses['web_ui']}",
                    f"  database       {addresses['database']}",
                    f"  state          {addresses['state']}",
                    *(
                        [f"  metrics        http://{metrics_host}:{config.metrics_port}/metrics"]
                        if config.metrics_port
                        else []
                    ),
                ]
            )
        )
        await stop.wait()
        typer.echo("stopping: worker, then the Temporal dev server …", err=True)
    typer.echo("stopped", err=True)
