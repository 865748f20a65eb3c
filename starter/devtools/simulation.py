"""``enrollments simulate``: a test clock that runs the real enrollment workflow through a scripted scenario.

:func:`run_scenario` starts the time-skipping test server (at the real current time), a worker with the
real activities on a fresh task queue and a throwaway migrated SQLite file (or the given database, migrated
to head, which keeps the rows). It creates the product and the enrollment of a scenario
(:mod:`starter.devtools.scenario`), moves the server's clock from event to event, applies each one through
:class:`starter.client.EnrollmentsClient`, moves on to ``until`` and returns :class:`SimulationResult`:
the enrollment (the workflow's ``state`` query), its orders (the store, in creation order), the access
checks, the log, the rejected commands and the recorded usage. Datetimes print in UTC with a ``Z`` suffix.

Rules:

- Every time must be timezone-aware and lie in the future of the real clock (the server cannot go back);
  ``until`` must be less than 10 years ahead (the server times workflows out then). Events after
  ``until`` are an error. Events are applied in ``at`` order, a stable sort (ties keep file order); errors
  name an event by its index in the file.
- Before an event at ``T`` is applied, and before the result is read at ``until``, the workflow has done
  everything due by ``T``: a period starting at ``T`` exists, a pause or termination scheduled for ``T``
  has happened.
- Commands take effect at exactly their event's time (they name it: ``at``), though they reach the server
  a few milliseconds later: a resume that starts a new schedule anchors it at ``T``, a termination expires
  at ``T``. Access checks ask about ``T`` exactly. A ``change`` with ``"dry_run": true`` lists its preview
  at ``T`` under ``previews`` and changes nothing; orders carry their lines, amounts and totals.
- A command the enrollment refuses (e.g. resuming a terminated enrollment) is not a scenario error: it is
  listed under ``rejected`` and the simulation goes on.
- ``order`` of an ``order_status`` event is ``"latest"`` or the 0-based index of the orders in creation
  order, resolved when the event is applied (no such order is a scenario error); so is the ``order`` of a
  ``payment`` (``amount`` in minor units) or ``payment_failed`` (``decline`` soft or hard) event. A payment the
  enrollment refuses (above the open balance, an order already paid) is listed under ``rejected``.
- ``events`` lists the enrollment's events (as services receive them) in order.
- ``usage`` events are recorded like a metering source records them (the usage store: the idempotency
  ``key`` defaults to ``simulate-event-<index>``) and listed under ``usage``; the metered adapter bills
  them in arrears. Usage the engine refuses (late, for an already-billed period) is listed under
  ``rejected``; the same key with other units is a scenario error.

:func:`main_simulate` prints a :class:`~starter.devtools.scenario.ScenarioError` as ``error: ...`` and
returns 2 without printing JSON.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest, DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.persistence import Store, UsageConflict, UsageRefused, create_engine, session_factory
from activities.persistence.events import MAX_PAGE
from activities.persistence.migrate import upgrade_async
from adapters.domain import (
    Enrollment,
    Order,
    isoformat_utc,
)
from adapters.lifecycle import ChangeCommand, EnrollmentView, OrderStatusCommand, PaymentCommand, workflow_id_for
from starter.client import EnrollmentClientError, EnrollmentCommandRejected, EnrollmentsClient
from starter.devtools.binaries import register_search_attributes, test_server_path
from starter.devtools.scenario import (
    AccessCheckEvent,
    ChangeEvent,
    CommandEvent,
    OrderStatusEvent,
    PaymentEvent,
    PaymentFailedEvent,
    Scenario,
    ScenarioError,
    UsageEvent,
    load_scenario,
)
from starter.devtools.simulation_result import (
    SimulatedAccessCheck,
    SimulatedEnrollment,
    SimulatedEvent,
    SimulatedLogEntry,
    SimulatedOrder,
    SimulatedPeriod,
    SimulatedPreview,
    SimulatedRejection,
    SimulatedUsage,
    SimulationResult,
)
from starter.runtime.worker import build_worker

OrderEvent = OrderStatusEvent | PaymentEvent | PaymentFailedEvent
SETTLE_TIMEOUT_SECONDS = 60.0
"""Real time the workflow may take to finish what is due at an event's time before the simulation gives up."""

_POLL_SECONDS = 0.005


class SimulationError(RuntimeError):
    """The simulation itself failed (the workflow failed or did not settle): a bug, not a bad scenario."""


# --- running it -----------------------------------------------------------------------------------


@functools.cache
def _quiet_runtime() -> Runtime:
    """A Temporal runtime without Core console logs: they would go to stdout, into the JSON document.

    (Forwarding them to Python logging instead crashes the interpreter at exit now and then.)
    """
    return Runtime(telemetry=TelemetryConfig(logging=None))


_WORKFLOW_TASK_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


def _work_in_flight(events: Sequence[HistoryEvent]) -> bool:
    """Whether the history has a workflow task or an activity that was scheduled and has not finished."""
    workflow_task_open = False
    activities: set[int] = set()
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            workflow_task_open = True
        elif kind in _WORKFLOW_TASK_CLOSED:
            workflow_task_open = False
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.add(event.event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            activities.discard(event.activity_task_completed_event_attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            activities.discard(event.activity_task_failed_event_attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            activities.discard(event.activity_task_timed_out_event_attributes.scheduled_event_id)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            activities.discard(event.activity_task_canceled_event_attributes.scheduled_event_id)
    return workflow_task_open or bool(activities)


class _Simulation:
    """One scenario on a running environment, worker and database."""

    def __init__(
        self,
        scenario: Scenario,
        env: WorkflowEnvironment,
        client: EnrollmentsClient,
        store: Store,
    ) -> None:
        self.scenario = scenario
        self.env = env
        self.client = client
        self.store = store
        self.enrollment_id = scenario.enrollment.id or uuid.uuid4().hex
        self.handle: WorkflowHandle[Any, Any] = env.client.get_workflow_handle(workflow_id_for(self.enrollment_id))
        self.access_checks: list[SimulatedAccessCheck] = []
        self.rejected: list[SimulatedRejection] = []
        self.usage: list[SimulatedUsage] = []
        self.previews: list[SimulatedPreview] = []
        self._handlers: dict[str, Callable[[int, Any], Awaitable[None]]] = {
            "pause": self._send,
            "resume": self._send,
            "terminate": self._send,
            "change": self._change,
            "order_status": self._order_status,
            "payment_failed": self._payment,
            "payment": self._payment,
            "usage": self._record_usage,
            "access_check": self._access_check,
        }

    async def run(self) -> SimulationResult:
        enrollment = self.scenario.enrollment
        try:
            await self.client.create_enrollment(
                enrollment.terms(self.scenario.product.id),
                start=enrollment.start or await self.env.get_current_time(),
                enrollment_id=self.enrollment_id,
            )
        except EnrollmentCommandRejected as error:
            raise ScenarioError(f"enrollment: {error}") from None
        for index, event in self.scenario.ordered_events():
            await self._advance_to(event.at)
            await self._handlers[event.type](index, event)
        await self._advance_to(self.scenario.until)
        view = await self.client.get_enrollment(self.enrollment_id)
        # Periods, orders and log from the database: the workflow carries recent history only.
        stored = await self.store.enrollments.get(self.enrollment_id)
        assert stored is not None, "a registered enrollment is in the database"
        orders = await self.store.billing.list_orders(self.enrollment_id)
        page = await self.store.events.page(enrollment_id=self.enrollment_id, limit=MAX_PAGE)
        events = [SimulatedEvent.model_validate(event.model_dump()) for event in page.events]
        return self._result(view, stored, orders).model_copy(update={"events": events})

    async def terminate_workflow(self) -> None:
        """Stop the workflow if it still runs, so no timer of it fires in an environment that outlives us."""
        try:
            status = (await self._describe()).workflow_execution_info.status
            if status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
                await self.handle.terminate(reason="simulation finished")
        except RPCError:
            pass  # never started (invalid enrollment) or already gone

    # Time

    async def _advance_to(self, at: datetime) -> None:
        remaining = at - await self.env.get_current_time()
        if remaining > timedelta(0):
            await self.env.sleep(remaining)
        await self._settle(at)

    async def _settle(self, at: datetime) -> None:
        """Wait until the workflow has done everything due by the server's clock: nothing in flight, no
        boundary at or before now left to reach."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while not await self._settled():
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"the enrollment workflow did not settle at {isoformat_utc(at)} within "
                    f"{SETTLE_TIMEOUT_SECONDS:.0f} s{await self._pending_activity_failure()}"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def _describe(self) -> DescribeWorkflowExecutionResponse:
        # The raw call: ``WorkflowHandle.describe()`` fails to decode a datetime search attribute that the
        # workflow unset (``EnrollmentNextPeriodAt`` of a paused enrollment) on the time-skipping server.
        request = DescribeWorkflowExecutionRequest(
            namespace=self.env.client.namespace, execution=WorkflowExecution(workflow_id=self.handle.id)
        )
        return await self.env.client.workflow_service.describe_workflow_execution(request)

    async def _settled(self) -> bool:
        before = await self._describe()
        run_id = before.workflow_execution_info.execution.run_id
        if before.workflow_execution_info.status != WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING:
            await self._raise_if_failed(run_id)
            return True
        run = self.env.client.get_workflow_handle(self.handle.id, run_id=run_id)
        events = [event async for event in run.fetch_history_events()]
        if _work_in_flight(events):
            return False
        view = await self.client.get_enrollment(self.enrollment_id)
        after = (await self._describe()).workflow_execution_info
        if after.execution.run_id != run_id or after.history_length != len(events):
            return False  # something happened while we looked: the view may be stale
        now = await self.env.get_current_time()
        return view.next_wake_up is None or view.next_wake_up > now

    async def _raise_if_failed(self, run_id: str) -> None:
        run = self.env.client.get_workflow_handle(self.handle.id, run_id=run_id)
        async for event in run.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
                failure = event.workflow_execution_failed_event_attributes.failure
                raise SimulationError(f"the enrollment workflow failed: {failure.message}")
            if event.event_type in (
                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
                EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            ):
                raise SimulationError(
                    f"the enrollment workflow ended unexpectedly ({EventType.Name(event.event_type)})"
                )

    async def _pending_activity_failure(self) -> str:
        for pending in (await self._describe()).pending_activities:
            if pending.HasField("last_failure"):
                return f" (activity {pending.activity_type.name} keeps failing: {pending.last_failure.message})"
        return ""

    # Events

    async def _send(self, index: int, event: CommandEvent) -> None:
        await self._command(event, self.client.send(self.enrollment_id, event.command()))

    async def _change(self, index: int, event: ChangeEvent) -> None:
        if not event.dry_run:
            await self._send(index, event)
            return
        command = event.command()
        assert isinstance(command, ChangeCommand)
        fields = command.model_dump(include={"product_id", "quantity", "terms", "when", "proration", "at"})
        try:
            outcome = await self.client.preview_change(self.enrollment_id, **fields)
        except EnrollmentCommandRejected as error:
            self.rejected.append(SimulatedRejection(at=event.at, type=event.type, error=str(error)))
            return
        self.previews.append(SimulatedPreview(at=event.at, outcome=outcome))

    async def _order_status(self, index: int, event: OrderStatusEvent) -> None:
        command = OrderStatusCommand(order_id=await self._order_id(index, event), status=event.status)
        await self._command(event, self.client.send(self.enrollment_id, command))

    async def _payment(self, index: int, event: PaymentEvent | PaymentFailedEvent) -> None:
        order_id = await self._order_id(index, event)
        if isinstance(event, PaymentEvent):
            command = PaymentCommand(at=event.at, order_id=order_id, received=event.amount)
        else:
            command = PaymentCommand(at=event.at, order_id=order_id, failed=event.decline, code=event.code)
        await self._command(event, self.client.send(self.enrollment_id, command))

    async def _access_check(self, index: int, event: AccessCheckEvent) -> None:
        valid = await self.client.is_valid_for_activation(self.enrollment_id, at=event.at)
        self.access_checks.append(SimulatedAccessCheck(at=event.at, valid=valid))

    async def _command(self, event: CommandEvent | OrderEvent, call: Awaitable[EnrollmentView]) -> None:
        try:
            await call
        except EnrollmentCommandRejected as error:
            self.rejected.append(SimulatedRejection(at=event.at, type=event.type, error=str(error)))

    async def _order_id(self, index: int, event: OrderEvent) -> str:
        orders = await self.store.billing.list_orders(self.enrollment_id)
        at = isoformat_utc(event.at)
        if not orders:
            raise ScenarioError(f"events[{index}].order: the enrollment has no orders at {at}")
        if event.order == "latest":
            return orders[-1].id
        if event.order >= len(orders):
            raise ScenarioError(
                f"events[{index}].order: index {event.order} is out of range; the enrollment has "
                f"{len(orders)} order(s) at {at} (indexes 0 to {len(orders) - 1})"
            )
        return orders[event.order].id

    async def _record_usage(self, index: int, event: UsageEvent) -> None:
        key = event.key or f"simulate-event-{index}"
        try:
            recorded = await self.store.usage.record(self.enrollment_id, event.units, key, event.at, now=event.at)
        except UsageConflict as error:
            raise ScenarioError(f"events[{index}].key: {error}") from None
        except UsageRefused as error:
            self.rejected.append(SimulatedRejection(at=event.at, type=event.type, error=str(error)))
            return
        self.usage.append(SimulatedUsage(at=event.at, units=event.units, key=key, recorded=recorded))

    def _result(self, view: EnrollmentView, stored: Enrollment, orders: list[Order]) -> SimulationResult:
        return SimulationResult(
            enrollment=SimulatedEnrollment(
                id=view.id,
                number=view.number,
                status=view.status,
                pause_reason=view.pause_reason,
                expires=view.expires,
                anchor=view.anchor,
                timezone=view.timezone,
                adapter_key=view.adapter_key,
                periods=[SimulatedPeriod.model_validate(period.model_dump()) for period in stored.periods],
            ),
            orders=[
                SimulatedOrder.model_validate(order.model_dump(include=set(SimulatedOrder.model_fields)))
                for order in orders
            ],
            access_checks=self.access_checks,
            log=[SimulatedLogEntry.model_validate(entry.model_dump()) for entry in stored.log],
            rejected=self.rejected,
            usage=self.usage,
            previews=self.previews,
        )


async def _start_environment() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter, runtime=_quiet_runtime()
    )
    try:
        await register_search_attributes(env.client, "default")
    except BaseException:
        await env.shutdown()
        raise
    return env


async def run_scenario(
    scenario: Scenario, *, database_url: str | None = None, env: WorkflowEnvironment | None = None
) -> SimulationResult:
    """Run ``scenario`` on the time-skipping test server and return what happened.

    Without ``database_url`` a temporary SQLite file is used and deleted afterwards; a given database is
    migrated to head and keeps the rows (the scenario's product is created or replaced). ``env`` is an
    already running time-skipping environment to use instead of a fresh one (its clock must be before every
    scenario time; the enrollment's workflow is terminated at the end). Raises :class:`ScenarioError` for
    an invalid scenario and :class:`SimulationError` when the workflow fails.
    """
    director = scenario.director()
    scenario.check_future(await env.get_current_time() if env is not None else datetime.now(UTC))
    async with AsyncExitStack() as stack:
        if env is None:
            env = await _start_environment()
            stack.push_async_callback(env.shutdown)
            scenario.check_future(await env.get_current_time())
        if database_url is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="enrollments-simulate-"))
            database_url = f"sqlite+aiosqlite:///{Path(directory) / 'simulate.db'}"
        try:
            await upgrade_async(database_url)
        except ValueError as error:  # an unsupported or in-memory URL
            raise ScenarioError(f"database_url: {error}") from None
        engine = create_engine(database_url)
        stack.push_async_callback(engine.dispose)
        store = Store.over(session_factory(engine))
        for product in (scenario.product, *scenario.products):
            await store.products.upsert(product.to_product(), now=await env.get_current_time())

        task_queue = f"simulate-{uuid.uuid4().hex[:12]}"
        resources = build_worker(env.client, database_url=database_url, task_queue=task_queue, director=director)
        stack.push_async_callback(resources.close)
        client = EnrollmentsClient(env.client, task_queue=task_queue, database_url=database_url)
        stack.push_async_callback(client.close)
        await stack.enter_async_context(resources.worker)
        simulation = _Simulation(scenario, env, client, store)
        stack.push_async_callback(simulation.terminate_workflow)
        return await simulation.run()
    raise AssertionError("unreachable")  # pragma: no cover - mypy cannot see that the stack re-raises or returns


def main_simulate(path: str, database_url: str | None) -> int:
    """Run the scenario file at ``path`` and print the result as JSON; returns the exit code.

    0: done. 2: invalid scenario (one ``error: ...`` line on stderr, nothing on stdout). 1: the simulation
    could not run (test server, database, workflow failure).
    """
    try:
        scenario = load_scenario(path)
        try:
            result = asyncio.run(run_scenario(scenario, database_url=database_url))
        finally:
            # Free the Temporal client and worker now: collected during interpreter shutdown, their native
            # threads can abort the process (temporalio/sdk-python#300).
            gc.collect()
    except ScenarioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (SimulationError, EnrollmentClientError, RPCError, SQLAlchemyError, OSError) as error:
        print(f"error: the simulation failed: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(result.to_json())
    return 0
