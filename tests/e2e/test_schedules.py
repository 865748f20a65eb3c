"""The order generator's Temporal Schedule on the real dev server (the time-skipping server has no schedules).

One dev server for the module. The CLI creates, updates (idempotently), pauses, unpauses, lists and
deletes the schedule; the Temporal CLI lists it too; ``ENROLLMENTS_AUTOSCHEDULE_CRON`` applies it at
worker start, and a triggered scheduled run executes ``GenerateEnrollmentOrders`` against the database.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, EnrollmentStatus, EnrollmentTerms, ProductPlan
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import GENERATOR_WORKFLOW_TYPE, MessageName, workflow_id_for
from starter.cli import app
from starter.connection.settings import Settings
from starter.devtools.binaries import register_search_attributes, temporal_cli_path
from starter.runtime.schedules import (
    GENERATOR_SCHEDULE_ID,
    SCHEDULED_ATTEMPTS,
    ScheduleNotFound,
    apply_autoschedule,
    describe_schedule,
)
from starter.runtime.worker import build_worker
from tests.support.temporal_env import add_product

T = TypeVar("T")


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(), data_converter=pydantic_data_converter, ui=False
    )
    await register_search_attributes(env.client, "default")
    try:
        yield env
    finally:
        await env.shutdown()


def _address(client: Client) -> str:
    return client.service_client.config.target_host


async def _cli(client: Client, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    outcome = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["--address", _address(client), *args],
        env={"ENROLLMENTS_TASK_QUEUE": "q1", **(env or {})},
    )
    return outcome.exit_code, outcome.output


async def _temporal_schedule_list(client: Client) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_cli_path(),
        "schedule",
        "list",
        "--address",
        _address(client),
        "--namespace",
        "default",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def _eventually(check: Callable[[], Awaitable[T]]) -> T:
    """``check()`` until it returns something truthy, for up to 10 s (schedule lists are eventually consistent)."""
    deadline = asyncio.get_running_loop().time() + 10.0
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_schedule_commands_are_idempotent_and_show_in_temporal_schedule_list(dev_server):
    client = dev_server.client
    code, output = await _cli(client, "schedule", "generate-orders", "--cron", "0 0 * * *")
    assert code == 0, output
    assert output.startswith(f"schedule created: {GENERATOR_SCHEDULE_ID}: {GENERATOR_WORKFLOW_TYPE} on '0 0 * * *'")
    view = await describe_schedule(client)
    assert (view.cron, view.task_queue, view.maximum_attempts) == (["0 0 * * *"], "q1-generator", SCHEDULED_ATTEMPTS)
    assert view.next_runs and all((run.hour, run.minute) == (0, 0) for run in view.next_runs)

    code, output = await _cli(client, "schedule", "generate-orders", "--cron", "0 0 * * *")
    assert code == 0 and output.startswith("schedule unchanged:"), output
    code, output = await _cli(client, "schedule", "generate-orders", "--cron", "30 2 * * 1", "--pause", "--json")
    assert code == 0, output
    changes = json.loads(output)
    assert [change["action"] for change in changes] == ["updated", "paused"]
    assert changes[-1]["schedule"]["cron"] == ["30 2 * * 1"] and changes[-1]["schedule"]["paused"] is True
    code, output = await _cli(client, "schedule", "generate-orders", "--cron", "15 3 * * *")
    assert code == 0 and output.startswith("schedule updated:") and output.rstrip().endswith("paused"), output
    assert (await describe_schedule(client)).paused, "updating the cron keeps a paused schedule paused"

    listed = await _eventually(lambda: _contains(_temporal_schedule_list(client), GENERATOR_SCHEDULE_ID))
    assert listed, "the schedule shows in `temporal schedule list`"
    code, output = await _cli(client, "schedule", "list", "--json")
    assert code == 0, output
    (shown,) = [view for view in json.loads(output) if view["id"] == GENERATOR_SCHEDULE_ID]
    assert (shown["workflow_type"], shown["cron"], shown["paused"]) == (GENERATOR_WORKFLOW_TYPE, ["15 3 * * *"], True)

    code, output = await _cli(client, "schedule", "generate-orders", "--unpause")
    assert code == 0 and output.startswith("schedule unpaused:") and "next run" in output, output
    code, output = await _cli(client, "schedule", "generate-orders", "--pause", "--delete")
    assert code == 2 and "exclude each other" in output
    code, output = await _cli(client, "schedule", "generate-orders", "--delete")
    assert code == 0 and output.startswith("schedule deleted:"), output
    with pytest.raises(ScheduleNotFound):
        await describe_schedule(client)
    code, output = await _cli(client, "schedule", "generate-orders", "--pause")
    assert code == 1 and f"schedule {GENERATOR_SCHEDULE_ID!r} does not exist" in output
    gone = await _eventually(lambda: _lacks(_temporal_schedule_list(client), GENERATOR_SCHEDULE_ID))
    assert gone


async def _contains(listing, text: str) -> bool:
    return text in await listing


async def _lacks(listing, text: str) -> bool:
    return text not in await listing


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_autoschedule_at_worker_start_and_a_scheduled_run(dev_server, database_url):
    client = dev_server.client
    settings = Settings(ENROLLMENTS_AUTOSCHEDULE_CRON=" 0 0 * * * ", ENROLLMENTS_TASK_QUEUE="q2")
    assert Settings(ENROLLMENTS_AUTOSCHEDULE_CRON="  ").autoschedule_cron is None
    assert await apply_autoschedule(client, Settings()) is None
    first = await apply_autoschedule(client, settings)
    again = await apply_autoschedule(client, settings)
    assert first is not None and again is not None
    assert (first.action, again.action) == ("created", "unchanged")
    assert first.schedule.cron == ["0 0 * * *"] and first.schedule.maximum_attempts == 5

    # A row without a workflow (e.g. migrated): the scheduled run starts its workflow.
    await add_product(database_url, "daily", ProductPlan(billing_interval=BillingInterval.DAYS))
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    await Store.over(session_factory(engine)).enrollments.create(
        "migrated",
        EnrollmentTerms(user_id="u", product_id="daily"),
        anchor=now - timedelta(hours=1),
        adapter_key=LicensedAdapter.key,
        now=now,
        status=EnrollmentStatus.ACTIVE,
    )
    await engine.dispose()
    resources = build_worker(
        client, database_url=database_url, task_queue="q2", director=director_from_names(["licensed"])
    )
    try:
        async with resources.running():
            handle = client.get_schedule_handle(GENERATOR_SCHEDULE_ID)
            await handle.trigger()

            async def started() -> str | None:
                actions = (await handle.describe()).info.recent_actions
                executions = [action.action for action in actions]
                ids = [e.workflow_id for e in executions if isinstance(e, ScheduleActionExecutionStartWorkflow)]
                return ids[-1] if ids else None

            workflow_id = await _eventually(started)
            assert workflow_id and workflow_id.startswith(GENERATOR_SCHEDULE_ID)
            run = client.get_workflow_handle(workflow_id)
            assert await run.result() == {"success": True}
            description = await run.describe()
            assert description.workflow_type == GENERATOR_WORKFLOW_TYPE
            enrollment = client.get_workflow_handle(workflow_id_for("migrated"))
            view = await enrollment.query(MessageName.STATE_QUERY)
            assert view["status"] == "ACTIVE" and len(view["periods"]) == 1
            await enrollment.terminate(reason="test done")
    finally:
        await resources.close()
        await client.get_schedule_handle(GENERATOR_SCHEDULE_ID).delete()
