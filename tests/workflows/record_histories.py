"""Record the histories ``tests/workflows/test_replay.py`` replays: ``python -m tests.workflows.record_histories``.

Re-record only on purpose: a committed history is the contract that running workflows keep replaying.
A workflow change that breaks replay of these needs ``workflow.patched`` (see docs/changing-workflows.md),
not new recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.persistence.migrate import upgrade_async
from adapters.director import EnrollmentDirector
from adapters.domain import BillingInterval, OrderStatus, Price, Product, ProductPlan, ProductType
from adapters.dunning_policy import DunningPolicy
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import generator_task_queue, workflow_id_for
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from starter.devtools.binaries import register_search_attributes, test_server_path
from tests.support.overdue_adapter import OverdueAfterOneDayAdapter
from tests.support.temporal_env import add_product, running_worker
from workflows.order_generator import GenerateEnrollmentOrders, GenerateOrdersInput

HISTORIES = Path(__file__).parent / "histories"

Scenario = Callable[[WorkflowEnvironment, EnrollmentsClient], Awaitable[str]]
"""Runs on a worker with the test server; returns the id of the workflow whose runs are recorded."""


async def monthly_with_continue_as_new(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    enrollment_id = await client.create_enrollment(product_id="monthly-trial", user_id="u", timezone="Europe/Zurich")
    await env.sleep(timedelta(days=400))
    return workflow_id_for(enrollment_id)


async def pause_resume_terminate(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    enrollment_id = await client.create_enrollment(product_id="monthly", user_id="u")
    await env.sleep(timedelta(days=3))
    await client.pause(enrollment_id, reason="holiday")
    await env.sleep(timedelta(days=40))
    await client.resume(enrollment_id)
    await client.pause(enrollment_id, at_period_end=True)
    await client.resume(enrollment_id)
    view = await client.get_enrollment(enrollment_id)
    await client.order_status_changed(view.orders[-1].id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)
    await client.terminate(enrollment_id, at_period_end=True)
    await env.sleep(timedelta(days=35))
    return workflow_id_for(enrollment_id)


async def signals_and_rejections(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    enrollment_id = await client.create_enrollment(product_id="daily", user_id="u")
    handle = client.client.get_workflow_handle(workflow_id_for(enrollment_id))
    await handle.signal("resume_enrollment", {})  # invalid while ACTIVE: dropped with a warning
    await handle.signal("pause_enrollment", {"reason": "signal", "at_period_end": False})
    with contextlib.suppress(EnrollmentCommandRejected):
        await client.pause(enrollment_id)  # rejected: already paused
    await env.sleep(timedelta(days=2))
    await handle.signal("resume_enrollment", {})
    await handle.signal("catch_up")
    await env.sleep(timedelta(days=2))
    await client.terminate(enrollment_id, immediately=True)
    return workflow_id_for(enrollment_id)


async def overdue_and_payment(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    enrollment_id = await client.create_enrollment(product_id="weekly", user_id="u")
    await env.sleep(timedelta(days=9))
    view = await client.get_enrollment(enrollment_id)
    await client.order_status_changed(view.orders[-1].id, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)
    await env.sleep(timedelta(days=3))
    return workflow_id_for(enrollment_id)


async def dunning_and_payments(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    enrollment_id = await client.create_enrollment(product_id="weekly-dunned", user_id="u")
    await env.sleep(timedelta(days=1, hours=12))  # reminded
    order = (await client.get_enrollment(enrollment_id)).orders[-1]
    await client.report_payment(order.id, failed="soft", code="insufficient_funds")
    await client.report_payment(order.id, received=1000)
    await env.sleep(timedelta(days=2))  # retried, paused
    await client.report_payment(order.id, received=2000)  # paid: ACTIVE again
    await env.sleep(timedelta(days=4))  # the next order is due and reminded
    order = (await client.get_enrollment(enrollment_id)).orders[-1]
    await client.report_payment(order.id, failed="hard")  # its retry is skipped
    await env.sleep(timedelta(days=30))  # paused, then terminated: unpaid
    return workflow_id_for(enrollment_id)


async def scheduled_start(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    start = await env.get_current_time() + timedelta(days=5)
    enrollment_id = await client.create_enrollment(product_id="monthly", user_id="u", start=start)
    await env.sleep(timedelta(days=40))
    return workflow_id_for(enrollment_id)


async def registration_failure(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    with contextlib.suppress(EnrollmentCommandRejected):
        await client.create_enrollment(product_id="no-such-product", user_id="u", enrollment_id="failed")
    return workflow_id_for("failed")


async def registration_local(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    """Registration and the first period as local activities of the first workflow task, then three periods."""
    enrollment_id = await client.create_enrollment(product_id="daily", user_id="u", enrollment_id="local")
    await env.sleep(timedelta(days=3, hours=1))
    return workflow_id_for(enrollment_id)


async def registration_local_refused(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    """Refused by the local registration (a client without a database to check first): the workflow completes."""
    blind = EnrollmentsClient(client.client, task_queue=client.task_queue)
    with contextlib.suppress(EnrollmentCommandRejected):
        await blind.create_enrollment(product_id="no-such-product", user_id="u", enrollment_id="refused-locally")
    return workflow_id_for("refused-locally")


async def daily_with_trimmed_history(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    """Runs that carry recent history only, and a status change for an order older than that."""
    enrollment_id = await client.create_enrollment(product_id="daily", user_id="u")
    await env.sleep(timedelta(days=40, hours=1))
    oldest = (await client.store().billing.list_orders(enrollment_id))[0]
    await client.order_status_changed(oldest.id, OrderStatus.FULFILLED, enrollment_id=enrollment_id)
    with contextlib.suppress(EnrollmentCommandRejected):  # checked by the activity: FULFILLED is final
        await client.order_status_changed(oldest.id, OrderStatus.REJECTED, enrollment_id=enrollment_id)
    await env.sleep(timedelta(days=2))
    return workflow_id_for(enrollment_id)


async def order_generator_with_a_failure(env: WorkflowEnvironment, client: EnrollmentsClient) -> str:
    """GenerateEnrollmentOrders over three enrollments, one page per run, one of them unprocessable."""
    for user in ("a", "b", "c"):
        await client.create_enrollment(product_id="daily" if user != "b" else "weekly", user_id=user)
    now = await env.get_current_time()  # the product of "b" is no plan any more: reported, the rest goes on
    await client.store().products.upsert(Product(id="weekly", type=ProductType.SIMPLE_PRODUCT), now=now)
    await env.sleep(timedelta(days=1, hours=1))
    workflow_id = "generate-enrollment-orders-recorded"
    await client.client.execute_workflow(
        GenerateEnrollmentOrders.run,
        GenerateOrdersInput(page_size=2, pages_per_run=1),
        id=workflow_id,
        task_queue=generator_task_queue(client.task_queue),
    )
    return workflow_id


SCENARIOS: dict[str, Scenario] = {
    "monthly_with_continue_as_new": monthly_with_continue_as_new,
    "pause_resume_terminate": pause_resume_terminate,
    "signals_and_rejections": signals_and_rejections,
    "overdue_and_payment": overdue_and_payment,
    "scheduled_start": scheduled_start,
    "registration_failure": registration_failure,
    "daily_with_trimmed_history": daily_with_trimmed_history,
    "order_generator_with_a_failure": order_generator_with_a_failure,
    "dunning_and_payments": dunning_and_payments,
    "registration_local": registration_local,
    "registration_local_refused": registration_local_refused,
}


async def _runs(client: Client, name: str, workflow_id: str) -> dict[str, str]:
    """Every run of the workflow (following continue-as-new) as ``{file name: history JSON}``."""
    first = await client.get_workflow_handle(workflow_id).fetch_history()
    run_id: str | None = first.events[0].workflow_execution_started_event_attributes.first_execution_run_id
    runs = {}
    index = 0
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs[f"{name}.run{index}.json"] = json.dumps(json.loads(history.to_json()), indent=1) + "\n"
        last = history.events[-1]
        has_next = last.HasField("workflow_execution_continued_as_new_event_attributes")
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id if has_next else None
        index += 1
    return runs


async def record(names: list[str] | None = None) -> dict[str, str]:
    """Run every scenario (or those ``names``) on a fresh time-skipping server; returns ``{file name: JSON}``."""
    recorded: dict[str, str] = {}
    for name, scenario in SCENARIOS.items():
        if names and name not in names:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            database_url = f"sqlite+aiosqlite:///{scratch}/record.db"
            await upgrade_async(database_url)
            await add_product(database_url, "monthly", ProductPlan(billing_interval=BillingInterval.MONTHS))
            await add_product(
                database_url,
                "monthly-trial",
                ProductPlan(
                    billing_interval=BillingInterval.MONTHS,
                    trial_interval=BillingInterval.DAYS,
                    trial_interval_count=14,
                ),
            )
            await add_product(database_url, "daily", ProductPlan(billing_interval=BillingInterval.DAYS))
            await add_product(database_url, "weekly", ProductPlan(billing_interval=BillingInterval.WEEKS))
            dunning = DunningPolicy.model_validate(
                {
                    "steps": [
                        {"after": "P1D", "action": "remind"},
                        {"after": "P2D", "action": "retry_payment"},
                        {"after": "P3D", "action": "pause"},
                        {"after": "P20D", "action": "terminate"},
                    ]
                }
            )
            priced = [Price(currency="CHF", amount=3000)]
            weekly_dunned = ProductPlan(billing_interval=BillingInterval.WEEKS, prices=priced, dunning=dunning)
            await add_product(database_url, "weekly-dunned", weekly_dunned)
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
            )
            try:
                await register_search_attributes(env.client, "default")
                director = EnrollmentDirector([OverdueAfterOneDayAdapter, LicensedAdapter])
                async with running_worker(env, database_url, director=director) as (client, _):
                    recorded |= await _runs(env.client, name, await scenario(env, client))
            finally:
                await env.shutdown()
    return recorded


if __name__ == "__main__":
    # python -m tests.workflows.record_histories [DIRECTORY [SCENARIO ...]]: a new scenario alone, say.
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HISTORIES
    target.mkdir(parents=True, exist_ok=True)
    for file_name, text in asyncio.run(record(sys.argv[2:])).items():
        (target / file_name).write_text(text)
        print(target / file_name)
