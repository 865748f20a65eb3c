"""Commands of the order generator and its schedule.

- ``generate-orders [--json]``: run ``GenerateEnrollmentOrders`` now and print its result (exit 1 when
  some enrollments could not be processed);
- ``schedule generate-orders [--cron CRON] [--pause | --unpause | --delete]`` and ``schedule list``: the
  Temporal Schedule that runs it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from temporalio.service import RPCError, RPCStatusCode

from adapters.lifecycle import generator_task_queue
from starter.cli.app import state
from starter.cli.errors import EXIT_RUNTIME, CliError
from starter.cli.execution import JsonOption, echo_json, run_async
from starter.cli.output import echo_lines
from starter.connection import connect
from starter.runtime import schedules
from starter.runtime.schedules import ScheduleView, next_run_text
from workflows.order_generator import GenerateEnrollmentOrders, GenerateOrdersInput, GenerateOrdersResult

schedule_app = typer.Typer(name="schedule", help="Temporal Schedules of the order generator.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("generate-orders")(generate_orders)
    app.add_typer(schedule_app)


# --- generate-orders ---------------------------------------------------------------------------------


def generate_orders(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the workflow's result as JSON.")] = False,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=1_000, help="Enrollments per page.")] = 100,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=200, help="Enrollments processed at once.")
    ] = 20,
    every_open: Annotated[
        bool, typer.Option("--all", help="Every INITIAL, ACTIVE and PAUSED enrollment, not only the due ones.")
    ] = False,
) -> None:
    """Make sure every due enrollment's workflow runs and has caught up, now.

    Due: the database's next wake-up of the enrollment has come (or comes within a minute). Starts the
    GenerateEnrollmentOrders workflow and waits for its result; exit status 1 when some enrollments could
    not be processed.
    """
    settings = state(ctx).effective_settings()
    workflow_id = f"generate-enrollment-orders-manual-{uuid.uuid4().hex[:12]}"

    async def work() -> GenerateOrdersResult:
        client = await connect(settings)
        return await client.execute_workflow(
            GenerateEnrollmentOrders.run,
            GenerateOrdersInput(page_size=page_size, concurrency=concurrency, every_open=every_open),
            id=workflow_id,
            task_queue=generator_task_queue(settings.task_queue),
            static_summary="Manual order generation (enrollments generate-orders)",
        )

    result = run_async(settings, work)
    if as_json:
        typer.echo(result.model_dump_json())
    elif result.error is None:
        which = "open" if every_open else "due"
        typer.echo(f"order generation succeeded: every {which} enrollment is caught up ({workflow_id})")
    else:
        typer.echo(f"order generation: {len(result.error.logs)} problems reported ({workflow_id})")
        echo_lines(f"  {entry.name}: {entry.message}" for entry in result.error.logs)
    if not result.success:
        raise typer.Exit(EXIT_RUNTIME)


# --- schedule ----------------------------------------------------------------------------------------


def _schedule_json(view: ScheduleView) -> dict[str, Any]:
    return view.model_dump(mode="json")


def _schedule_line(view: ScheduleView) -> str:
    cron = ", ".join(view.cron) or "no cron"
    return f"{view.id}: {view.workflow_type or '?'} on {cron!r} (UTC), {next_run_text(view)}"


@schedule_app.command("generate-orders")
def schedule_generate_orders(
    ctx: typer.Context,
    cron: Annotated[
        str | None,
        typer.Option("--cron", help='Cron in UTC (default "0 0 * * *": daily at midnight).', show_default=False),
    ] = None,
    pause: Annotated[bool, typer.Option("--pause", help="Pause the schedule.")] = False,
    unpause: Annotated[bool, typer.Option("--unpause", help="Unpause the schedule.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the schedule.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create or update the schedule that runs the order generator (idempotent); or pause, unpause, delete it.

    Scheduled runs retry up to 5 times. With --pause or --unpause, --cron first creates or updates it.
    """
    if pause + unpause + delete > 1:
        raise CliError("--pause, --unpause and --delete exclude each other")
    if delete and cron is not None:
        raise CliError("--delete takes no --cron")
    if cron is not None and not cron.strip():
        raise CliError("--cron: must not be empty")
    settings = state(ctx).effective_settings()

    async def work() -> list[schedules.ScheduleChange]:
        client = await connect(settings)
        if delete:
            return [await schedules.delete_generator_schedule(client)]
        changes = []
        if cron is not None or not (pause or unpause):
            wanted = cron or schedules.DEFAULT_CRON
            try:
                ensured = await schedules.ensure_generator_schedule(
                    client, cron=wanted, task_queue=generator_task_queue(settings.task_queue)
                )
            except RPCError as error:  # the server parses the cron: an invalid one changes nothing
                if error.status is not RPCStatusCode.INVALID_ARGUMENT:
                    raise
                raise CliError(f"--cron: {wanted!r} is not a valid cron expression ({error.message})") from None
            changes.append(ensured)
        if pause:
            changes.append(await schedules.pause_generator_schedule(client))
        if unpause:
            changes.append(await schedules.unpause_generator_schedule(client))
        return changes

    changes = run_async(settings, work)
    if as_json:
        echo_json([change.model_dump(mode="json") for change in changes])
        return
    for change in changes:
        typer.echo(f"schedule {change.action}: {_schedule_line(change.schedule)}")


@schedule_app.command("list")
def schedule_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the schedules of the namespace."""
    settings = state(ctx).effective_settings()

    async def work() -> list[ScheduleView]:
        return await schedules.list_schedules(await connect(settings))

    views = run_async(settings, work)
    if as_json:
        echo_json([_schedule_json(view) for view in views])
    elif not views:
        typer.echo("no schedules")
    else:
        for view in views:
            typer.echo(_schedule_line(view))
