"""GenerateEnrollmentOrders on the time-skipping server with the real worker, activities and databases.

It starts enrollment workflows that never ran (rows that exist only in the database) and catches them up,
records the termination of a workflow an operator terminated in Temporal instead of restarting it, reports
per-enrollment failures in exactly the reference's shape,
continues as new carrying its cursor and errors, and never makes a second order for a period, even when
runs overlap.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from typer.testing import CliRunner

from activities.checkup import describe_workflow
from activities.checkup import workflow_input as enrollment_workflow_input
from activities.persistence import Store, create_engine, session_factory
from adapters.domain import (
    BillingInterval,
    EnrollmentStatus,
    EnrollmentTerms,
    Product,
    ProductPlan,
    ProductType,
)
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import GeneratorLogEntry, generator_task_queue, workflow_id_for
from starter.cli import app
from tests.support.temporal_env import add_product, running_worker
from workflows.enrollment_state import EnrollmentWorkflowInput
from workflows.order_generator import (
    ERROR_MESSAGE,
    ERROR_NAME,
    GenerateEnrollmentOrders,
    GenerateOrdersInput,
    GenerateOrdersResult,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAILY = ProductPlan(billing_interval=BillingInterval.DAYS)


def test_result_serializes_to_exactly_the_reference_shapes() -> None:
    success = GenerateOrdersResult.from_logs([])
    assert success.model_dump_json() == '{"success":true}'
    converter = pydantic_data_converter.payload_converter
    assert json.loads(converter.to_payloads([success])[0].data) == {"success": True}
    failure = GenerateOrdersResult.from_logs([GeneratorLogEntry(name="ProductNotFound", message="gone")])
    expected = {
        "success": False,
        "error": {
            "name": "SOME_ENROLLMENTS_COULD_NOT_PROCESS",
            "message": "Some errors have been reported during order generation",
            "logs": [{"name": "ProductNotFound", "message": "gone"}],
        },
    }
    assert json.loads(converter.to_payloads([failure])[0].data) == expected
    assert json.loads(failure.model_dump_json()) == expected
    assert GenerateOrdersResult.model_validate(expected) == failure


def test_the_generator_workflow_module_imports_no_io_code() -> None:
    probe = (
        "import sys, workflows.order_generator;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'asyncpg', 'aiosqlite', 'activities', "
        "'starter'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


async def test_workflow_input_for_a_stored_enrollment_is_the_enrollment_workflows_input(store) -> None:
    now = datetime.now(UTC)
    await store.products.upsert(Product(id="p", plan=DAILY), now=now)
    terms = EnrollmentTerms(user_id="u", product_id="p", timezone="Europe/Zurich", meta={"k": 1})
    stored = await store.enrollments.create("e1", terms, anchor=now, adapter_key=LicensedAdapter.key, now=now)
    validated = EnrollmentWorkflowInput.model_validate(enrollment_workflow_input(stored))
    expected = EnrollmentWorkflowInput(
        enrollment_id="e1", terms=terms, start=stored.anchor, next_period_attribute=False
    )
    assert validated == expected
    published = EnrollmentWorkflowInput.model_validate(enrollment_workflow_input(stored, next_period_attribute=True))
    assert published.next_period_attribute is True


async def _store_call(database_url: str, call: Any) -> Any:
    engine = create_engine(database_url)
    try:
        return await call(Store.over(session_factory(engine)))
    finally:
        await engine.dispose()


def _remove_product_behind_the_foreign_key(database_url: str, product_id: str) -> None:
    """Delete a product that enrollments still refer to, as a shop's catalogue sync gone wrong would."""
    path = make_url(database_url).database
    assert path
    with sqlite3.connect(path) as connection:  # foreign keys are off on a plain connection
        connection.execute("DELETE FROM products WHERE id = ?", (product_id,))


async def _due_pass(env: Any, client: Any) -> GenerateOrdersResult:
    """One pass of the generator with its default input (due enrollments only), to its result."""
    result: GenerateOrdersResult = await env.client.execute_workflow(
        GenerateEnrollmentOrders.run,
        GenerateOrdersInput(),
        id=f"generate-{uuid.uuid4().hex[:8]}",
        task_queue=generator_task_queue(client.task_queue),
    )
    return result


async def _status(client: Client, enrollment_id: str) -> WorkflowExecutionStatus | None:
    return (await describe_workflow(client, enrollment_id)).status


async def _runs(client: Client, workflow_id: str, first_run_id: str) -> list[Any]:
    histories = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        continued = last.HasField("workflow_execution_continued_as_new_event_attributes")
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id if continued else None
    return histories


async def _orders_per_period(database_url: str, enrollment_ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per enrollment: (billable periods, orders, distinct order period starts)."""

    async def count(store: Store) -> dict[str, tuple[int, int, int]]:
        counts = {}
        for enrollment_id in enrollment_ids:
            enrollment = await store.enrollments.get(enrollment_id)
            assert enrollment is not None
            orders = await store.billing.list_orders(enrollment_id)
            billable = [period for period in enrollment.periods if not period.is_trial]
            assert all(period.order_id for period in billable)
            counts[enrollment_id] = (len(billable), len(orders), len({order.period_start for order in orders}))
        return counts

    result: dict[str, tuple[int, int, int]] = await _store_call(database_url, count)
    return result


@SQLITE_ONLY
async def test_generator_restarts_catches_up_reports_failures_and_continues_as_new(time_skipping_env, database_url):
    env = time_skipping_env
    for product_id in ("daily", "gone", "turns-simple"):
        await add_product(database_url, product_id, DAILY)
    async with running_worker(env, database_url) as (client, _):
        now = await env.get_current_time()
        running = [await client.create_enrollment(product_id="daily", user_id=f"u{i}") for i in range(3)]
        paused = await client.create_enrollment(product_id="daily", user_id="paused")
        await client.pause(paused)
        scheduled = await client.create_enrollment(product_id="daily", user_id="later", start=now + timedelta(days=30))
        ended = await client.create_enrollment(product_id="daily", user_id="ended")
        await client.terminate(ended, immediately=True)
        killed = await client.create_enrollment(product_id="daily", user_id="killed")
        await env.client.get_workflow_handle(workflow_id_for(killed)).terminate(reason="an operator's decision")
        await client.create_enrollment(product_id="gone", user_id="u", enrollment_id="e-gone")
        await client.create_enrollment(product_id="turns-simple", user_id="u", enrollment_id="e-simple")

        # A row that exists only in the database (e.g. migrated from another system), due since two days.
        async def migrate(store: Store) -> None:
            terms = EnrollmentTerms(user_id="migrated", product_id="daily")
            await store.enrollments.create(
                "migrated",
                terms,
                anchor=now - timedelta(days=2, hours=1),
                adapter_key=LicensedAdapter.key,
                now=now,
                status=EnrollmentStatus.ACTIVE,
            )

        await _store_call(database_url, migrate)
        _remove_product_behind_the_foreign_key(database_url, "gone")
        await _store_call(
            database_url,
            lambda store: store.products.upsert(Product(id="turns-simple", type=ProductType.SIMPLE_PRODUCT), now=now),
        )

        handle = await env.client.start_workflow(
            GenerateEnrollmentOrders.run,
            GenerateOrdersInput(page_size=2, pages_per_run=2, concurrency=2, every_open=True),
            id=f"generate-{uuid.uuid4().hex[:8]}",
            task_queue=generator_task_queue(client.task_queue),
        )
        result = await handle.result()

        reported = json.loads(result.model_dump_json())
        assert set(reported) == {"success", "error"} and reported["success"] is False
        assert set(reported["error"]) == {"name", "message", "logs"}
        assert (reported["error"]["name"], reported["error"]["message"]) == (ERROR_NAME, ERROR_MESSAGE)
        logs = reported["error"]["logs"]
        assert [set(entry) for entry in logs] == [{"name", "message"}] * 2
        assert [entry["name"] for entry in logs] == ["ProductNotFound", "NotAPlanProduct"]
        assert (
            logs[0]["message"].startswith("enrollment E-")
            and "(e-gone): product 'gone' does not exist" in (logs[0]["message"])
        )
        assert "(e-simple): product 'turns-simple' is a SIMPLE_PRODUCT" in logs[1]["message"]
        runs = await _runs(env.client, handle.id, handle.first_execution_run_id or handle.result_run_id or "")
        assert len(runs) == 3, "10 open enrollments in pages of 2, 2 pages per run: continued as new twice"
        completed = runs[-1].events[-1].workflow_execution_completed_event_attributes
        assert json.loads(completed.result.payloads[0].data) == result.model_dump(mode="json")

        # The migrated row got its workflow and caught up.
        migrated = await client.get_enrollment("migrated")
        assert migrated.status is EnrollmentStatus.ACTIVE and len(migrated.periods) == 3
        assert migrated.periods[-1].start <= await env.get_current_time() < migrated.periods[-1].end
        assert await _status(env.client, "migrated") is WorkflowExecutionStatus.RUNNING
        # The workflow an operator terminated in Temporal stays terminated; the database now says so too.
        assert await _status(env.client, killed) is WorkflowExecutionStatus.TERMINATED
        stored = await _store_call(database_url, lambda store: store.enrollments.get(killed))
        assert stored.status is EnrollmentStatus.TERMINATED and stored.expires is not None
        assert stored.log[-1].info == "terminated in Temporal (Terminate: an operator's decision)"
        # The scheduled (INITIAL) enrollment was checked and left as it is; the terminated one was not paged.
        assert (await client.get_enrollment(scheduled)).status is EnrollmentStatus.INITIAL
        assert await _status(env.client, ended) is WorkflowExecutionStatus.COMPLETED

        # Overlapping passes a day later while the enrollments advance on their own: one order per period.
        # Only the due ones are paged: the two whose product broke are late (their workflows cannot advance).
        await env.sleep(timedelta(days=1, minutes=1))
        billed = [*running, "migrated"]
        first, second = await asyncio.gather(
            *(
                env.client.execute_workflow(
                    GenerateEnrollmentOrders.run,
                    GenerateOrdersInput(page_size=3),
                    id=f"generate-{uuid.uuid4().hex[:8]}",
                    task_queue=generator_task_queue(client.task_queue),
                )
                for _ in range(2)
            )
        )
        assert first.error is not None and second.error is not None
        assert [entry.name for entry in first.error.logs] == [entry.name for entry in second.error.logs]
        counts = await _orders_per_period(database_url, billed)
        for enrollment_id, (periods, orders, distinct) in counts.items():
            assert periods == orders == distinct, (enrollment_id, counts)
        # As many periods as days have begun since each anchor (the server skips time while passes wait).
        elapsed = await env.get_current_time() - now
        assert counts["migrated"][0] == (elapsed + timedelta(days=2, hours=1)) // timedelta(days=1) + 1
        assert counts[running[0]][0] == elapsed // timedelta(days=1) + 1
        view = await client.get_enrollment(paused)
        assert view.status is EnrollmentStatus.PAUSED and len(view.periods) == 1, "a manual pause gets no period"


@SQLITE_ONLY
async def test_success_and_the_cli(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        ids = [await client.create_enrollment(product_id="daily", user_id=f"u{i}") for i in range(3)]
        address = env.client.service_client.config.target_host
        runner = CliRunner()
        args = ["--address", address, "--database-url", database_url, "generate-orders"]
        environment = {"ENROLLMENTS_TASK_QUEUE": client.task_queue}
        outcome = await asyncio.to_thread(runner.invoke, app, [*args, "--json"], env=environment)
        assert outcome.exit_code == 0, outcome.output
        assert outcome.stdout == '{"success":true}\n'
        outcome = await asyncio.to_thread(runner.invoke, app, args, env=environment)
        assert outcome.exit_code == 0 and "order generation succeeded" in outcome.stdout

        _remove_product_behind_the_foreign_key(database_url, "daily")
        outcome = await asyncio.to_thread(runner.invoke, app, [*args, "--json"], env=environment)
        assert outcome.stdout == '{"success":true}\n', "none is due yet: a pass does not look at them"
        args.append("--all")  # a full pass looks at every open enrollment
        outcome = await asyncio.to_thread(runner.invoke, app, [*args, "--json"], env=environment)
        assert outcome.exit_code == 1, outcome.output
        reported = json.loads(outcome.stdout)
        assert set(reported) == {"success", "error"} and reported["success"] is False
        assert reported["error"]["name"] == "SOME_ENROLLMENTS_COULD_NOT_PROCESS"
        assert [entry["name"] for entry in reported["error"]["logs"]] == ["ProductNotFound"] * 3
        assert {message["message"].split("(")[1].split(")")[0] for message in reported["error"]["logs"]} == set(ids)
        outcome = await asyncio.to_thread(runner.invoke, app, args, env=environment)
        assert outcome.exit_code == 1 and "3 problems reported" in outcome.stdout
        assert "ProductNotFound: enrollment E-" in outcome.stdout

        # Errors beyond max_logs are counted in one last entry, so the result stays bounded.
        bounded = await env.client.execute_workflow(
            GenerateEnrollmentOrders.run,
            GenerateOrdersInput(max_logs=2, page_size=1, every_open=True),
            id=f"generate-{uuid.uuid4().hex[:8]}",
            task_queue=generator_task_queue(client.task_queue),
        )
        assert bounded.error is not None
        assert [entry.name for entry in bounded.error.logs] == ["ProductNotFound", "ProductNotFound", "MoreErrors"]
        assert bounded.error.logs[-1].message.startswith("1 more enrollments could not be processed")


@SQLITE_ONLY
async def test_a_pass_touches_only_due_enrollments(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        now = await env.get_current_time()
        on_time = [await client.create_enrollment(product_id="daily", user_id=f"u{i}") for i in range(4)]

        async def history_lengths() -> dict[str, int]:
            lengths = {}
            for enrollment_id in on_time:
                handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
                lengths[enrollment_id] = len([event async for event in handle.fetch_history_events()])
            return lengths

        async def late(store: Store) -> None:  # known to the database only, its first period long due
            terms = EnrollmentTerms(user_id="late", product_id="daily")
            anchor = now - timedelta(hours=12)
            await store.enrollments.create("late", terms, anchor=anchor, adapter_key=LicensedAdapter.key, now=anchor)

        await _store_call(database_url, late)
        before = await history_lengths()
        # The pass itself has no timers: with time standing still no boundary can come due while it runs.
        with env.auto_time_skipping_disabled():
            result = await _due_pass(env, client)
            assert result.success
            assert await history_lengths() == before, "no signal, no workflow task for enrollments that are not due"
            assert await _status(env.client, "late") is WorkflowExecutionStatus.RUNNING, "the late one was started"
            assert len((await client.get_enrollment("late")).periods) == 1

        # Due within the pass's minute of slack: those are caught up too (their boundary is now).
        await env.sleep(timedelta(days=1) - timedelta(seconds=30))
        await _due_pass(env, client)
        after = await history_lengths()
        assert all(after[enrollment_id] > before[enrollment_id] for enrollment_id in on_time)


@SQLITE_ONLY
async def test_a_due_enrollment_is_signalled_and_only_a_late_or_closed_one_examined(
    time_skipping_env, database_url, monkeypatch
):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    described: list[str] = []

    async def counted_describe(client: Client, enrollment_id: str) -> Any:
        described.append(enrollment_id)
        return await describe_workflow(client, enrollment_id)

    monkeypatch.setattr("activities.checkup.describe_workflow", counted_describe)
    async with running_worker(env, database_url) as (client, _):
        due, late, closed = [await client.create_enrollment(product_id="daily", user_id=f"u{i}") for i in range(3)]
        await env.client.get_workflow_handle(workflow_id_for(closed)).terminate(reason="operator")
        with env.auto_time_skipping_disabled():
            now = await env.get_current_time()

            async def wake_ups(store: Store) -> None:
                # A minute ago: its workflow is acting right now. An hour ago: it has not acted, it is late.
                for enrollment_id, ago in ((due, 1), (late, 60), (closed, 1)):
                    await store.enrollments.set_next_wake_up(enrollment_id, now - timedelta(minutes=ago))

            await _store_call(database_url, wake_ups)

            async def signals(enrollment_id: str) -> int:
                handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
                events = [event async for event in handle.fetch_history_events()]
                return sum(event.HasField("workflow_execution_signaled_event_attributes") for event in events)

            before = {enrollment_id: await signals(enrollment_id) for enrollment_id in (due, late)}
            result = await _due_pass(env, client)
            assert result.success
            assert sorted(described) == sorted([late, closed]), "the due one got its signal and no describe"
            assert {enrollment_id: await signals(enrollment_id) for enrollment_id in (due, late)} == {
                due: before[due] + 1,
                late: before[late] + 1,
            }
            stored = await _store_call(database_url, lambda store: store.enrollments.get(closed))
            assert stored.status is EnrollmentStatus.TERMINATED, "the signal found no workflow: examined, recorded"
