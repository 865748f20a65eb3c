"""Operators' own Temporal tools on the real dev server: Terminate, Reset, ``enrollments doctor``, SIGTERM.

Whatever an operator does in Temporal, the database ends up telling the truth: a termination is recorded and
never reversed, a reset workflow and its database agree again by the next period or command (without
duplicate log rows), and a worker obeys SIGTERM within its shutdown timeout whatever its activities do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingWorkflowTaskState, ResetReapplyType
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest, ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from typer.testing import CliRunner

from activities.checkup import Checkup, Problem, describe_workflow
from activities.persistence import create_engine, open_store
from activities.persistence.migrate import upgrade_async
from adapters.domain import BillingInterval, EnrollmentStatus, EnrollmentTerms, ProductPlan, ScheduledAction
from adapters.lifecycle import ENROLLMENT_WORKFLOW_TYPE, EnrollmentView, MessageName, workflow_id_for
from starter.cli import app
from starter.client import EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker
from workflows.enrollment_state import EnrollmentWorkflowInput

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAILY = ProductPlan(billing_interval=BillingInterval.DAYS)


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(0.1)


async def _stored(database_url: str, enrollment_id: str) -> Any:
    async with open_store(database_url) as store:
        return await store.enrollments.get(enrollment_id)


async def _reset_before_signal(
    client: Client, enrollment_id: str, signal_name: str, reapply: ResetReapplyType.ValueType
) -> None:
    """Reset the workflow to the last workflow task finished before its latest ``signal_name`` signal (in a run made by
    a reset, the first task's finish is the reset's own WORKFLOW_TASK_FAILED)."""
    handle = client.get_workflow_handle(workflow_id_for(enrollment_id))
    events = [event async for event in handle.fetch_history_events()]
    signalled = max(
        event.event_id
        for event in events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == signal_name
    )
    point = max(
        event.event_id
        for event in events
        if event.event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        and event.event_id < signalled
    )
    await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id_for(enrollment_id)),
            reason="test: an operator resets the enrollment",
            workflow_task_finish_event_id=point,
            request_id=uuid.uuid4().hex,
            reset_reapply_type=reapply,
        )
    )


@SQLITE_ONLY
async def test_resets_converge_with_the_database_without_duplicate_log_rows(dev_server_env, database_url):
    env = dev_server_env
    await add_product(database_url, "daily", DAILY)
    signal_only = ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL
    nothing = ResetReapplyType.RESET_REAPPLY_TYPE_NONE
    async with running_worker(env, database_url) as (client, _):

        async def paused(enrollment_id: str) -> None:
            handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
            await handle.signal(MessageName.PAUSE_SIGNAL, {"reason": "holiday"})
            await _until(lambda: _stored_is(database_url, enrollment_id, EnrollmentStatus.PAUSED), "pause stored")

        # Reset before a pause, signals reapplied: the pause is decided again and stored once.
        again = await client.create_enrollment(product_id="daily", user_id="u1")
        await paused(again)
        await _reset_before_signal(env.client, again, MessageName.PAUSE_SIGNAL, signal_only)
        await _until(lambda: _view_is(client, again, EnrollmentStatus.PAUSED), "the reset run paused again")
        stored = await _stored(database_url, again)
        assert [entry.info for entry in stored.log][1:] == ["paused: holiday"]
        # Reset to before its registration: the new run is rebuilt from the database, and agrees with it.
        await _reset_before_signal(env.client, again, MessageName.PAUSE_SIGNAL, nothing)
        await _until(lambda: _view_is(client, again, EnrollmentStatus.PAUSED), "the rebuilt run is paused")
        assert len((await _stored(database_url, again)).log) == 2

        # Reset before a pause, nothing reapplied: the workflow decided ACTIVE, the database follows at once. (A
        # task between registration and the pause to reset to: a reset to the first task would register again
        # and find the enrollment PAUSED in the database, as above.)
        undone = await client.create_enrollment(product_id="daily", user_id="u2")
        await env.client.get_workflow_handle(workflow_id_for(undone)).signal(MessageName.CATCH_UP_SIGNAL)
        await _until(lambda: _task_completed_after_signal(env.client, undone), "the catch_up task completed")
        await paused(undone)
        await _reset_before_signal(env.client, undone, MessageName.PAUSE_SIGNAL, nothing)
        await _until(lambda: _stored_is(database_url, undone, EnrollmentStatus.ACTIVE), "the database follows")
        assert await _view_is(client, undone, EnrollmentStatus.ACTIVE)
        stored = await _stored(database_url, undone)
        assert [entry.info for entry in stored.log][1:] == [
            "paused: holiday",
            "reconciled with its workflow (the database said PAUSED (manual))",
        ]

        # A reset past a termination: TERMINATED is final, the workflow takes it over and closes.
        ended = await client.create_enrollment(product_id="daily", user_id="u3")
        handle = env.client.get_workflow_handle(workflow_id_for(ended))
        await handle.signal(MessageName.TERMINATE_SIGNAL, {"immediately": True})
        await _until(lambda: _stored_is(database_url, ended, EnrollmentStatus.TERMINATED), "termination stored")
        await handle.result()
        await _reset_before_signal(env.client, ended, MessageName.TERMINATE_SIGNAL, nothing)
        final = await env.client.get_workflow_handle(workflow_id_for(ended), result_type=EnrollmentView).result()
        assert final.status is EnrollmentStatus.TERMINATED
        assert (await _stored(database_url, ended)).status is EnrollmentStatus.TERMINATED


async def _task_completed_after_signal(client: Client, enrollment_id: str) -> bool:
    events = [
        event async for event in client.get_workflow_handle(workflow_id_for(enrollment_id)).fetch_history_events()
    ]
    signalled = [
        event.event_id for event in events if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    return bool(signalled) and any(
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and event.event_id > signalled[-1]
        for event in events
    )


async def _stored_is(database_url: str, enrollment_id: str, wanted: EnrollmentStatus) -> bool:
    stored = await _stored(database_url, enrollment_id)
    return stored is not None and stored.status is wanted


async def _view_is(client: EnrollmentsClient, enrollment_id: str, wanted: EnrollmentStatus) -> bool:
    try:
        return (await client.get_enrollment(enrollment_id)).status is wanted
    except Exception:
        return False


@SQLITE_ONLY
async def test_doctor_finds_what_temporal_operators_did_and_repairs_it(dev_server_env, database_url):
    env = dev_server_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        await client.create_enrollment(product_id="daily", user_id="u1")
        killed = await client.create_enrollment(product_id="daily", user_id="u2")
        drifted = await client.create_enrollment(product_id="daily", user_id="u3")
        await env.client.get_workflow_handle(workflow_id_for(killed)).terminate(reason="support: refund given")
        view = await client.get_enrollment(drifted)
        async with open_store(database_url) as store:  # a database that lost track of its scheduled action
            ghost = ScheduledAction(kind="terminate", at=view.periods[-1].end, reason="never asked for")
            await store.enrollments.set_scheduled(drifted, ghost)
        address = env.client.service_client.config.target_host
        options = ["--address", address, "--database-url", database_url]
        runner = CliRunner()
        environment = {"ENROLLMENTS_TASK_QUEUE": client.task_queue}

        async def doctor(*flags: str) -> tuple[int, dict[str, Any]]:
            # In a thread: the command runs its own event loop, this one serves the worker.
            result = await asyncio.to_thread(
                runner.invoke, app, [*options, "doctor", "--json", *flags], env=environment
            )
            assert result.stdout, result.stderr
            return result.exit_code, json.loads(result.stdout)

        code, found = await doctor()
        assert code == 1 and found["checked"] == 3 and found["healthy"] is False
        problems = {(finding["enrollment_id"], finding["problem"]) for finding in found["findings"]}
        assert problems == {(killed, "EnrollmentClosedInTemporal"), (drifted, "EnrollmentDisagrees")}
        assert (await _stored(database_url, killed)).status is EnrollmentStatus.ACTIVE, "a check repairs nothing"
        code, repaired = await doctor("--repair")
        assert code == 0 and all(finding["repaired"] for finding in repaired["findings"])
        stored = await _stored(database_url, killed)
        assert stored.status is EnrollmentStatus.TERMINATED
        assert stored.log[-1].info == "terminated in Temporal (Terminate: support: refund given)"
        assert (await _stored(database_url, drifted)).scheduled is None
        code, after = await doctor()
        assert code == 0 and after == {"checked": 2, "findings": [], "healthy": True}


async def _first_task_started(client: Client, enrollment_id: str) -> None:
    """Wait (at most 60 s: a busy machine starts a worker process slowly) until a worker runs the workflow's first
    task, whose registration (a local activity) then runs on that worker."""
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id_for(enrollment_id))
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = await client.workflow_service.describe_workflow_execution(request)
        if described.pending_workflow_task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no worker started the first task of {enrollment_id!r} within 60 s")


async def test_the_checkup_compares_latest_periods_and_accepts_a_completed_termination(dev_server_env, database_url):
    env = dev_server_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        behind = await client.create_enrollment(product_id="daily", user_id="u1")
        ended = await client.create_enrollment(product_id="daily", user_id="u2")
        await client.terminate(ended, immediately=True)

        async def completed() -> bool:
            return (await describe_workflow(env.client, ended)).status is WorkflowExecutionStatus.COMPLETED

        await _until(completed, "the terminated enrollment's workflow completes")
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:  # a database that lost the period its workflow has
                await connection.execute(text("DELETE FROM enrollment_periods WHERE enrollment_id = :e"), {"e": behind})
        finally:
            await engine.dispose()
        async with open_store(database_url) as store:
            checkup = Checkup(env.client, store, client.task_queue)
            findings = {}
            for enrollment_id in (behind, ended):
                enrollment = await store.enrollments.get(enrollment_id)
                assert enrollment is not None
                findings[enrollment_id] = await checkup.examine(enrollment, repair=False, query=True)
    assert [finding.problem for finding in findings[behind]] == [Problem.DISAGREES]
    assert "latest period is " in findings[behind][0].message and "the database's none" in findings[behind][0].message
    assert findings[ended] == [], "TERMINATED in the database, completed in Temporal: they agree"


async def test_a_worker_obeys_sigterm_whatever_its_activities_do(dev_server_env, tmp_path: Path) -> None:
    env = dev_server_env
    database = tmp_path / "stuck.db"
    url = f"sqlite+aiosqlite:///{database}"
    await upgrade_async(url)
    await add_product(url, "daily", DAILY)
    queue = f"stuck-{uuid.uuid4().hex[:8]}"
    worker_env = {
        **os.environ,
        "DATABASE_URL": url,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "ENROLLMENTS_TASK_QUEUE": queue,
        "ENROLLMENTS_SHUTDOWN_SECONDS": "2",
        "ENROLLMENTS_LOG_FORMAT": "text",
    }
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # every write of the worker now waits in SQLite for 30 s
    worker = subprocess.Popen(  # noqa: ASYNC220 - a real process, stopped below
        [sys.executable, "-m", "starter", "worker"], env=worker_env, stderr=subprocess.PIPE, text=True
    )
    # Started without waiting for it: the registration activity runs on the worker, inside SQLite, blocked.
    terms = EnrollmentTerms(product_id="daily", user_id="u")
    await env.client.start_workflow(
        ENROLLMENT_WORKFLOW_TYPE,
        EnrollmentWorkflowInput(enrollment_id="stuck", terms=terms),
        id=workflow_id_for("stuck"),
        task_queue=queue,
    )
    try:
        await _first_task_started(env.client, "stuck")  # the worker is up (its handlers too) and holds the activity
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 30)
        took = time.monotonic() - sent
    finally:
        lock.rollback()
        lock.close()
        if worker.poll() is None:
            worker.kill()
    assert took < 2 + 5 + 3, f"stopped after {took:.1f} s"
    assert worker.returncode == 1
    assert "the worker did not stop within 2 s; exiting anyway" in (worker.stderr.read() if worker.stderr else "")
