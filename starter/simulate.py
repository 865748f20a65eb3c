"""``enrollments simulate``: a test clock that runs the real enrollment workflow through a scripted scenario.

The scenario (JSON, see :class:`Scenario`) names a product with its plan, the enrollment's terms (``start``
is the schedule anchor, default the simulation's start; ``id`` is optional), the time to stop (``until``)
and events: ``pause``, ``resume``, ``terminate``, ``order_status``, ``usage`` and ``access_check``.
:func:`run_scenario` starts the time-skipping test server (at the real current time), a worker with the
real activities on a fresh task queue and a throwaway migrated SQLite file (or the given database, migrated
to head, which keeps the rows). It creates the product and the enrollment, moves the server's clock from
event to event, applies each one through :class:`starter.client.EnrollmentsClient`, moves on to ``until``
and returns :class:`SimulationResult`: the enrollment (the workflow's ``state`` query), its orders (the
repository, in creation order), the access checks, the log, the rejected commands and the recorded usage.
Datetimes print in UTC with a ``Z`` suffix.

Rules:

- Every time must be timezone-aware and lie in the future of the real clock (the server cannot go back);
  ``until`` must be less than 10 years ahead (the server times workflows out then). Events after
  ``until`` are an error. Events are applied in ``at`` order, a stable sort (ties keep file order); errors
  name an event by its index in the file.
- Before an event at ``T`` is applied, and before the result is read at ``until``, the workflow has done
  everything due by ``T``: a period starting at ``T`` exists, a pause or termination scheduled for ``T``
  has happened.
- Commands take effect on the server's clock when they arrive, which runs in real time between jumps:
  ``T`` plus the milliseconds the call takes. The log shows the exact moment; a resume that starts a new
  schedule anchors it there. Access checks ask about ``T`` exactly.
- A command the enrollment refuses (e.g. resuming a terminated enrollment) is not a scenario error: it is
  listed under ``rejected`` and the simulation goes on.
- ``order`` of an ``order_status`` event is ``"latest"`` or the 0-based index of the orders in creation
  order, resolved when the event is applied (no such order is a scenario error).
- ``usage`` events are recorded like a metering source records them (``record_metered_usage``: the
  idempotency ``key`` defaults to ``simulate-event-<index>``) and listed under ``usage``; the metered
  adapter bills them in arrears. Usage the engine refuses (late, for an already-billed period) is listed
  under ``rejected``; the same key with other units is a scenario error.

Invalid scenarios raise :class:`ScenarioError` with one line naming the problem (``events[2].at: ...``);
:func:`main_simulate` prints it as ``error: ...`` and returns 2 without printing JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
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

from activities.persistence import (
    EnrollmentRepository,
    UsageConflict,
    UsageRefused,
    create_engine,
    session_factory,
    upgrade_async,
)
from activities.persistence.models import KEY_LENGTH
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector, NoAdapterForPlanError
from adapters.domain import (
    MAX_QUANTITY,
    Configuration,
    ConfigurationEntry,
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderStatus,
    PauseReason,
    Product,
    ProductPlan,
    TimezoneName,
    UtcDatetime,
    isoformat_utc,
)
from adapters.lifecycle import EnrollmentView, PauseRequest, ResumeRequest, TerminateRequest, workflow_id_for
from starter.client import EnrollmentClientError, EnrollmentCommandRejected, EnrollmentsClient
from starter.settings import Settings
from starter.temporal_binaries import register_search_attributes, test_server_path
from starter.worker import build_worker

SETTLE_TIMEOUT_SECONDS = 60.0
"""Real time the workflow may take to finish what is due at an event's time before the simulation gives up."""

TEST_SERVER_WORKFLOW_TIMEOUT = timedelta(days=3650)
"""The time-skipping server's default execution timeout: it ends every enrollment workflow 10 years after it
started (a real server has none), so a simulation cannot go further."""

_POLL_SECONDS = 0.005

# --- the scenario ---------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """An invalid scenario; the one-line message names the field or event and the problem."""


class SimulationError(RuntimeError):
    """The simulation itself failed (the workflow failed or did not settle): a bug, not a bad scenario."""


def _scenario_error(message: str) -> PydanticCustomError:
    # The message already carries its path; "{message}" keeps braces in it (plan JSON) literal.
    return PydanticCustomError("scenario", "{message}", {"message": message})


class _ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioProduct(_ScenarioModel):
    """The plan product the enrollment is for (created, or replaced, in the database)."""

    id: str = Field(min_length=1, max_length=128)
    plan: ProductPlan
    title: str | None = Field(default=None, max_length=256)

    def to_product(self) -> Product:
        return Product(id=self.id, plan=self.plan, title=self.title)


class ScenarioEnrollment(_ScenarioModel):
    """The enrollment's terms; ``start`` is the schedule anchor (default: the simulation's start time)."""

    id: str | None = Field(default=None, min_length=1, max_length=128, description="default: a random id")
    user_id: str = Field(min_length=1, max_length=128)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    configuration: Configuration = Field(default_factory=list)
    timezone: TimezoneName = "UTC"
    start: UtcDatetime | None = None


class _Event(_ScenarioModel):
    at: UtcDatetime


class PauseEvent(_Event, PauseRequest):
    type: Literal["pause"]


class ResumeEvent(_Event, ResumeRequest):
    type: Literal["resume"]


class TerminateEvent(_Event, TerminateRequest):
    """The command's own fields and rules (``at_period_end`` and ``immediately`` exclude each other)."""

    type: Literal["terminate"]


def _order_reference(value: object) -> Literal["latest"] | int:
    if value == "latest":
        return "latest"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f'must be "latest" or a 0-based order index, got {value!r}')


OrderReference = Annotated[Literal["latest"] | int, PlainValidator(_order_reference)]


class OrderStatusEvent(_Event):
    type: Literal["order_status"]
    order: OrderReference = "latest"
    status: OrderStatus


class UsageEvent(_Event):
    type: Literal["usage"]
    units: StrictInt = Field(ge=0)
    key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class AccessCheckEvent(_Event):
    type: Literal["access_check"]


ScenarioEvent = Annotated[
    PauseEvent | ResumeEvent | TerminateEvent | OrderStatusEvent | UsageEvent | AccessCheckEvent,
    Field(discriminator="type"),
]
EVENT_TYPES = ("pause", "resume", "terminate", "order_status", "usage", "access_check")


class Scenario(_ScenarioModel):
    """A scripted scenario: product, enrollment, events (applied in ``at`` order) and the end time."""

    adapters: list[str] | None = Field(
        default=None, description="built-in adapter names in registration order; default ENROLLMENT_ADAPTERS"
    )
    product: ScenarioProduct
    enrollment: ScenarioEnrollment
    until: UtcDatetime
    events: list[ScenarioEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _times_in_order(self) -> Self:
        start = self.enrollment.start
        if start is not None and self.until <= start:
            raise _scenario_error(
                f"until: {isoformat_utc(self.until)} must be after enrollment.start {isoformat_utc(start)}"
            )
        for index, event in enumerate(self.events):
            if event.at > self.until:
                raise _scenario_error(
                    f"events[{index}].at: {isoformat_utc(event.at)} is after until {isoformat_utc(self.until)}"
                )
        for index, name in enumerate(self.adapters or []):
            try:
                director_from_names([name])
            except ValueError as error:
                raise _scenario_error(f"adapters[{index}]: {error}") from None
        return self

    def ordered_events(self) -> list[tuple[int, ScenarioEvent]]:
        """The events with their index in the file, by ``at`` (stable: ties keep file order)."""
        return sorted(enumerate(self.events), key=lambda item: item[1].at)

    def director(self) -> EnrollmentDirector:
        """The director of the named adapters (default: settings); raises :class:`ScenarioError` when none
        of them is activated for the plan."""
        names = self.adapters if self.adapters is not None else Settings().adapter_names
        try:
            director = director_from_names(names)
        except ValueError as error:
            raise ScenarioError(f"adapters: {error}") from None
        try:
            director.resolve(self.product.plan)
        except NoAdapterForPlanError as error:
            raise ScenarioError(f"product.plan: {error}") from None
        return director

    def check_future(self, now: datetime) -> None:
        """Raise :class:`ScenarioError` naming the first time that is not after ``now`` (the simulation's
        start), or an ``until`` beyond what the test server lets a workflow run."""
        times: list[tuple[str, datetime | None]] = [("enrollment.start", self.enrollment.start)]
        times += [(f"events[{index}].at", event.at) for index, event in enumerate(self.events)]
        times.append(("until", self.until))
        for path, value in times:
            if value is not None and value <= now:
                raise ScenarioError(
                    f"{path}: {isoformat_utc(value)} is not in the future of the simulation clock "
                    f"({isoformat_utc(now)}); the time-skipping server starts at the real current time and only "
                    "moves forward"
                )
        latest = now + TEST_SERVER_WORKFLOW_TIMEOUT - timedelta(days=1)
        if self.until > latest:
            raise ScenarioError(
                f"until: {isoformat_utc(self.until)} is too far ahead; the time-skipping server times a workflow "
                f"out {TEST_SERVER_WORKFLOW_TIMEOUT.days} days after it starts, so until must be before "
                f"{isoformat_utc(latest)}"
            )


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for position, item in enumerate(loc):
        if isinstance(item, int):
            text += f"[{item}]"
        elif position == 2 and loc[0] == "events" and item in EVENT_TYPES:
            continue  # the discriminated union's tag, not a field
        else:
            text += f".{item}" if text else item
    return text


def _describe_error(error: ErrorDetails) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "scenario":
        return error["msg"]
    path = _path(loc) or "scenario"
    context = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        tag = value.get("type") if isinstance(value, dict) else context.get("tag")
        return f"{path}.type: unknown event type {tag!r}; expected one of {', '.join(EVENT_TYPES)}"
    if kind == "union_tag_not_found":
        return f"{path}.type: is required (one of {', '.join(EVENT_TYPES)})"
    if kind == "missing":
        return f"{path}: is required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind == "timezone_aware":
        return f"{path}: must include a UTC offset (e.g. 2031-01-31T00:00:00Z), got {value!r}"
    if kind == "value_error" and "error" in context:
        return f"{path}: {context['error']}"
    message = error["msg"]
    if kind.startswith(("datetime", "date")):
        message += f", got {value!r}"
    return f"{path}: {message}"


def parse_scenario(data: Any) -> Scenario:
    """Validate a decoded scenario; raises :class:`ScenarioError` naming every problem on one line."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        message = "; ".join(_describe_error(detail) for detail in error.errors())
        raise ScenarioError(" ".join(message.split())) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises :class:`ScenarioError` (unreadable, not JSON, invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            f"{path}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    return parse_scenario(data)


# --- the result -----------------------------------------------------------------------------------

UtcText = Annotated[datetime, PlainSerializer(isoformat_utc, return_type=str)]
"""A datetime printed as ``2031-01-31T00:00:00Z``."""


class SimulatedPeriod(BaseModel):
    start: UtcText
    end: UtcText
    is_trial: bool
    order_id: str | None
    order_status: OrderStatus | None


class SimulatedEnrollment(BaseModel):
    id: str
    number: str | None
    status: EnrollmentStatus
    pause_reason: PauseReason | None
    expires: UtcText | None
    anchor: UtcText
    timezone: str
    adapter_key: str | None
    periods: list[SimulatedPeriod]


class SimulatedPosition(BaseModel):
    product_id: str
    original_product_id: str
    quantity: int
    configuration: list[ConfigurationEntry]


class SimulatedOrder(BaseModel):
    id: str
    number: str
    period_start: UtcText | None
    period_end: UtcText | None
    status: OrderStatus
    positions: list[SimulatedPosition]


class SimulatedAccessCheck(BaseModel):
    at: UtcText
    valid: bool


class SimulatedLogEntry(BaseModel):
    at: UtcText
    status: EnrollmentStatus
    info: str


class SimulatedRejection(BaseModel):
    at: UtcText
    type: str
    error: str


class SimulatedUsage(BaseModel):
    at: UtcText
    units: int
    key: str
    recorded: bool = Field(description="False when the key was already recorded with these units")


class SimulationResult(BaseModel):
    """What ``enrollments simulate`` prints: the enrollment at ``until`` and what happened on the way."""

    enrollment: SimulatedEnrollment
    orders: list[SimulatedOrder]
    access_checks: list[SimulatedAccessCheck]
    log: list[SimulatedLogEntry]
    rejected: list[SimulatedRejection]
    usage: list[SimulatedUsage]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


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
        repository: EnrollmentRepository,
    ) -> None:
        self.scenario = scenario
        self.env = env
        self.client = client
        self.repository = repository
        self.enrollment_id = scenario.enrollment.id or uuid.uuid4().hex
        self.handle: WorkflowHandle[Any, Any] = env.client.get_workflow_handle(workflow_id_for(self.enrollment_id))
        self.access_checks: list[SimulatedAccessCheck] = []
        self.rejected: list[SimulatedRejection] = []
        self.usage: list[SimulatedUsage] = []

    async def run(self) -> SimulationResult:
        terms = self.scenario.enrollment
        try:
            await self.client.create_enrollment(
                product_id=self.scenario.product.id,
                user_id=terms.user_id,
                quantity=terms.quantity,
                configuration=[entry.model_dump() for entry in terms.configuration],
                timezone=terms.timezone,
                start=terms.start or await self.env.get_current_time(),
                enrollment_id=self.enrollment_id,
            )
        except EnrollmentCommandRejected as error:
            raise ScenarioError(f"enrollment: {error}") from None
        for index, event in self.scenario.ordered_events():
            await self._advance_to(event.at)
            await self._apply(index, event)
        await self._advance_to(self.scenario.until)
        view = await self.client.get_enrollment(self.enrollment_id)
        # Periods, orders and log from the database: the workflow carries recent history only.
        stored = await self.repository.get_enrollment(self.enrollment_id)
        assert stored is not None, "a registered enrollment is in the database"
        orders = await self.repository.list_orders(self.enrollment_id)
        return self._result(view, stored, orders)

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

    async def _apply(self, index: int, event: ScenarioEvent) -> None:
        enrollment_id = self.enrollment_id
        if isinstance(event, PauseEvent):
            await self._command(
                event, self.client.pause(enrollment_id, reason=event.reason, at_period_end=event.at_period_end)
            )
        elif isinstance(event, ResumeEvent):
            await self._command(event, self.client.resume(enrollment_id, reason=event.reason))
        elif isinstance(event, TerminateEvent):
            await self._command(
                event,
                self.client.terminate(
                    enrollment_id, reason=event.reason, at_period_end=event.at_period_end, immediately=event.immediately
                ),
            )
        elif isinstance(event, OrderStatusEvent):
            order_id = await self._order_id(index, event)
            await self._command(
                event, self.client.order_status_changed(order_id, event.status, enrollment_id=enrollment_id)
            )
        elif isinstance(event, UsageEvent):
            await self._record_usage(index, event)
        else:
            valid = await self.client.is_valid_for_activation(enrollment_id, at=event.at)
            self.access_checks.append(SimulatedAccessCheck(at=event.at, valid=valid))

    async def _command(self, event: ScenarioEvent, call: Awaitable[EnrollmentView]) -> None:
        try:
            await call
        except EnrollmentCommandRejected as error:
            self.rejected.append(SimulatedRejection(at=event.at, type=event.type, error=str(error)))

    async def _order_id(self, index: int, event: OrderStatusEvent) -> str:
        orders = await self.repository.list_orders(self.enrollment_id)
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
            recorded = await self.repository.record_metered_usage(
                self.enrollment_id, event.units, key, event.at, now=event.at
            )
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
        repository = EnrollmentRepository(session_factory(engine))
        await repository.upsert_product(scenario.product.to_product(), now=await env.get_current_time())

        task_queue = f"simulate-{uuid.uuid4().hex[:12]}"
        resources = build_worker(env.client, database_url=database_url, task_queue=task_queue, director=director)
        stack.push_async_callback(resources.close)
        client = EnrollmentsClient(env.client, task_queue=task_queue, database_url=database_url)
        stack.push_async_callback(client.close)
        await stack.enter_async_context(resources.worker)
        simulation = _Simulation(scenario, env, client, repository)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m starter.simulate --scenario FILE.json [--database-url URL]``."""
    parser = argparse.ArgumentParser(
        prog="python -m starter.simulate",
        description="Run a scripted enrollment scenario on the time-skipping test server.",
    )
    parser.add_argument("--scenario", required=True, help="scenario JSON file")
    parser.add_argument("--database-url", default=None, help="database to use instead of a temporary SQLite file")
    arguments = parser.parse_args(argv)
    return main_simulate(arguments.scenario, arguments.database_url)


if __name__ == "__main__":
    raise SystemExit(main())
