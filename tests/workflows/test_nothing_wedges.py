"""Nothing wedges an enrollment: poison messages, impossible values, operators' Temporal actions.

Every probe runs on the live workflow (time-skipping server, real activities, SQLite) and ends with the
enrollment still working — it gets its next period — or cleanly refused, and the database telling the truth.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from sqlalchemy import text
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from activities.checkup import describe_workflow
from activities.persistence import create_engine, open_store
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from adapters.domain import (
    MAX_UNITS,
    BillingInterval,
    EnrollmentStatus,
    EnrollmentTerms,
    OrderConfiguration,
    OrderStatus,
    PeriodWindow,
    ProductPlan,
    UsageCalculationType,
)
from adapters.licensed import LicensedAdapter
from adapters.lifecycle import ErrorType, MessageName, generator_task_queue, workflow_id_for
from adapters.rules import MAX_BACKDATED_PERIODS
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker
from workflows.enrollment import EnrollmentWorkflow
from workflows.enrollment_state import EnrollmentWorkflowInput
from workflows.order_generator import GenerateEnrollmentOrders, GenerateOrdersInput

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAILY = ProductPlan(billing_interval=BillingInterval.DAYS)
MINUTELY = ProductPlan(billing_interval=BillingInterval.MINUTES)
METERED_DAILY = ProductPlan(billing_interval=BillingInterval.DAYS, usage_calculation_type=UsageCalculationType.METERED)


def _raw(data: bytes, encoding: bytes = b"json/plain") -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


@SQLITE_ONLY
async def test_poison_messages_are_dropped_or_rejected_and_the_enrollment_goes_on(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="daily", user_id="u")
        handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
        # Signals: two inputs, a binary payload, an unknown encoding, null, a list, a wrong shape.
        await handle.signal(MessageName.PAUSE_SIGNAL, args=[{"reason": "a"}, {"reason": "b"}])
        await handle.signal(MessageName.RESUME_SIGNAL, _raw(b"{}", b"binary/plain"))
        await handle.signal(MessageName.PAUSE_SIGNAL, _raw(b"{}", b"binary/no-such-encoding"))
        await handle.signal(MessageName.TERMINATE_SIGNAL, _raw(b"null"))
        await handle.signal(MessageName.TERMINATE_SIGNAL, _raw(b"[1, 2]"))
        await handle.signal(MessageName.ORDER_STATUS_SIGNAL, {"order_id": "\x1b[31m", "status": "PAID"})
        await handle.signal(MessageName.CATCH_UP_SIGNAL, args=[1, 2, 3])
        # Updates: rejected with the message named, nothing written.
        for args, problem in (
            ([{"reason": "a"}, {"reason": "b"}], "pause: takes one argument (a JSON object), got 2"),
            ([_raw(b"{}", b"binary/plain")], "pause: expects a JSON object, got binary data"),
            ([_raw(b'"text"')], "pause: expects a JSON object, got a JSON str"),
            ([{"reason": "line one\nline two"}], "pause: reason: must be one line of text"),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(MessageName.PAUSE_UPDATE, args=args)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == ErrorType.INVALID_INPUT
            assert cause.message.startswith(problem), cause.message
        # A wrong number of arguments to the registration update is ignored, not a task failure.
        await handle.execute_update(MessageName.REGISTRATION_UPDATE, args=[{"unexpected": True}])

        await env.sleep(timedelta(days=1, minutes=1))
        view = await client.get_enrollment(enrollment_id)
        assert view.status is EnrollmentStatus.ACTIVE and len(view.periods) == 2, "it got its next period"
        assert (await client.terminate(enrollment_id, immediately=True)).status is EnrollmentStatus.TERMINATED


@SQLITE_ONLY
async def test_impossible_starts_are_refused_and_backdating_is_asked_for_and_bounded(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        now = await env.get_current_time()
        probes = [
            (datetime(1, 1, 1, tzinfo=UTC), "America/New_York", False, "outside the supported calendar"),
            (now + timedelta(days=3_654 + 365 * 30), "UTC", False, "years ahead; check the year"),
            (now - timedelta(days=2, hours=1), "UTC", False, "2 periods in the past"),
            (now - timedelta(days=MAX_BACKDATED_PERIODS + 1), "UTC", True, f"at most {MAX_BACKDATED_PERIODS} periods"),
        ]
        for start, zone, backdate, problem in probes:
            enrollment_id = f"start-{uuid.uuid4().hex[:8]}"
            with pytest.raises(EnrollmentCommandRejected, match=problem) as refused:
                await client.create_enrollment(
                    product_id="daily", user_id="u", start=start, timezone=zone, backdate=backdate,
                    enrollment_id=enrollment_id,
                )  # fmt: skip
            assert refused.value.error_type == ErrorType.INVALID_START
            async with open_store(database_url) as store:
                assert not await store.enrollments.exists(enrollment_id), "nothing written"
            assert (await describe_workflow(env.client, enrollment_id)).status is None, "no workflow started"
        # Without a database to check first, the registration refuses: the workflow closes, it does not fail.
        blind = EnrollmentsClient(env.client, task_queue=client.task_queue)
        with pytest.raises(EnrollmentCommandRejected, match="2 periods in the past") as refused:
            await blind.create_enrollment(
                product_id="daily", user_id="u", start=now - timedelta(days=2, hours=1), enrollment_id="blind"
            )
        assert refused.value.error_type == ErrorType.INVALID_START
        assert (await describe_workflow(env.client, "blind")).status is WorkflowExecutionStatus.COMPLETED
        backdated = await client.create_enrollment(
            product_id="daily", user_id="u", start=now - timedelta(days=2, hours=1), backdate=True
        )
        view = await client.get_enrollment(backdated)
        assert len(view.periods) == 3 and len(view.orders) == 3


@SQLITE_ONLY
async def test_a_period_that_cannot_be_made_needs_attention_and_obeys_commands(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="daily", user_id="u")
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:  # another tool breaks the plan
                await connection.execute(text('UPDATE products SET plan = \'{"billing_interval": "FORTNIGHTS"}\''))
            await env.sleep(timedelta(days=1, minutes=1))
            view = await client.get_enrollment(enrollment_id)
            assert view.attention is not None and "invalid plan" in view.attention, view.attention
            assert len(view.periods) == 1
            described = await describe_workflow(env.client, enrollment_id)
            assert described.status is WorkflowExecutionStatus.RUNNING and described.health == "ATTENTION"
            paused = await client.pause(enrollment_id, reason="while the plan is fixed")
            assert paused.status is EnrollmentStatus.PAUSED
            async with engine.begin() as connection:  # fixed
                await connection.execute(text('UPDATE products SET plan = \'{"billing_interval": "DAYS"}\''))
        finally:
            await engine.dispose()
        resumed = await client.resume(enrollment_id)
        assert resumed.attention is None and len(resumed.periods) == 2
        assert (await describe_workflow(env.client, enrollment_id)).health is None


@SQLITE_ONLY
async def test_a_month_of_api_calls_is_billed_and_a_64_bit_period_cannot_overflow(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "meter", METERED_DAILY)
    async with running_worker(env, database_url, director=director_from_names(["metered"])) as (client, _):
        busy = await client.create_enrollment(product_id="meter", user_id="busy")
        full = await client.create_enrollment(product_id="meter", user_id="full")
        now = await env.get_current_time()
        assert await client.record_usage(busy, 1_000_001, "calls", at=now)
        assert await client.record_usage(full, MAX_UNITS, "all", at=now)
        with pytest.raises(ValueError, match=r"would bring the usage of its billing window to 9223372036854775808"):
            await client.record_usage(full, 1, "one-more", at=now)
        await env.sleep(timedelta(days=1, minutes=1))
        for enrollment_id, units in ((busy, 1_000_001), (full, MAX_UNITS)):
            view = await client.get_enrollment(enrollment_id)
            assert view.attention is None and [order.positions[0].quantity for order in view.orders] == [units]


@SQLITE_ONLY
async def test_cancel_in_temporal_terminates_now_with_the_reason(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "daily", DAILY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = await client.create_enrollment(product_id="daily", user_id="u")
        handle = env.client.get_workflow_handle(workflow_id_for(enrollment_id))
        await handle.cancel(reason="customer left")
        with pytest.raises(Exception):  # noqa: B017 - the run ends CANCELED
            await handle.result()
        assert (await describe_workflow(env.client, enrollment_id)).status is WorkflowExecutionStatus.CANCELED
        async with open_store(database_url) as store:
            stored = await store.enrollments.get(enrollment_id)
        assert stored is not None and stored.status is EnrollmentStatus.TERMINATED
        assert stored.log[-1].info == "terminated: cancelled in Temporal: customer left"
        assert stored.expires is not None and stored.expires <= await env.get_current_time()


@SQLITE_ONLY
async def test_updates_follow_the_workflow_across_continue_as_new(time_skipping_env, database_url):
    env = time_skipping_env
    await add_product(database_url, "minutely", MINUTELY)
    async with running_worker(env, database_url) as (client, _):
        enrollment_id = uuid.uuid4().hex
        # A run per period: the workflow continues as new every minute while the updates arrive.
        handle = await env.client.start_workflow(
            EnrollmentWorkflow.run,
            EnrollmentWorkflowInput(
                enrollment_id=enrollment_id,
                terms=EnrollmentTerms(product_id="minutely", user_id="u"),
                periods_per_run=1,
            ),
            id=workflow_id_for(enrollment_id),
            task_queue=client.task_queue,
        )
        await handle.execute_update(MessageName.REGISTRATION_UPDATE)
        # From the database: the update can reach the first task as it continues as new (then retried, that task
        # finds the enrollment registered, and its state holds the periods only).
        async with open_store(database_url) as store:
            registered = await store.enrollments.get(enrollment_id)
        assert registered is not None and registered.periods[0].order_id is not None
        first_order = registered.periods[0].order_id
        first_run = (await describe_workflow(env.client, enrollment_id)).run_id

        async def confirm(index: int) -> None:
            await asyncio.sleep(index * 0.02)
            await client.order_status_changed(first_order, OrderStatus.CONFIRMED, enrollment_id=enrollment_id)

        results = await asyncio.gather(
            env.sleep(timedelta(minutes=20)), *(confirm(index) for index in range(40)), return_exceptions=True
        )
        assert [result for result in results if isinstance(result, BaseException)] == []
        assert (await describe_workflow(env.client, enrollment_id)).run_id != first_run, "it continued as new"
        async with open_store(database_url) as store:
            stored = await store.enrollments.get(enrollment_id)
        assert stored is not None and len(stored.periods) >= 20 and stored.status is EnrollmentStatus.ACTIVE


class RefusesRenewalsAdapter(LicensedAdapter):
    """Test adapter (WEEKS plans): the billing system it stands for refuses every order after the first."""

    key: ClassVar[str] = "tests.enrollments.refuses-renewals"

    @classmethod
    def is_activated_for(cls, plan: ProductPlan) -> bool:
        return plan.billing_interval is BillingInterval.WEEKS

    async def configuration_for_order(self, period: PeriodWindow) -> OrderConfiguration | None:
        if self.context.enrollment.periods:
            raise ValueError("the billing system refuses this renewal")
        return await super().configuration_for_order(period)


@SQLITE_ONLY
async def test_the_generator_reports_what_needs_attention_and_never_resurrects_a_termination(
    time_skipping_env, database_url
):
    env = time_skipping_env
    await add_product(database_url, "weekly", ProductPlan(billing_interval=BillingInterval.WEEKS))
    await add_product(database_url, "daily", DAILY)
    director = EnrollmentDirector([RefusesRenewalsAdapter, *director_from_names(["licensed"]).adapters])
    async with running_worker(env, database_url, director=director) as (client, _):
        stuck = await client.create_enrollment(product_id="weekly", user_id="u1")
        closed = await client.create_enrollment(product_id="daily", user_id="u2")
        healthy = await client.create_enrollment(product_id="daily", user_id="u3")
        await env.client.get_workflow_handle(workflow_id_for(closed)).terminate(reason="support: refund given")
        await env.sleep(timedelta(days=7, hours=1))
        assert "refuses this renewal" in ((await client.get_enrollment(stuck)).attention or "")

        result = await env.client.execute_workflow(
            GenerateEnrollmentOrders.run,
            GenerateOrdersInput(),
            id=f"generate-{uuid.uuid4().hex[:8]}",
            task_queue=generator_task_queue(client.task_queue),
        )
        assert not result.success and result.error is not None, "never success over a stuck enrollment"
        (entry,) = result.error.logs
        assert entry.name == "EnrollmentNeedsAttention" and stuck in entry.message
        async with open_store(database_url) as store:
            recorded = await store.enrollments.get(closed)
        assert recorded is not None and recorded.status is EnrollmentStatus.TERMINATED
        assert recorded.log[-1].info == "terminated in Temporal (Terminate: support: refund given)"
        described = await describe_workflow(env.client, closed)
        assert described.status is WorkflowExecutionStatus.TERMINATED, "the operator's decision stands"
        assert len((await client.get_enrollment(healthy)).periods) >= 8, "the healthy one renews as before"
