"""The Temporal Schedule that runs the order generator (``GenerateEnrollmentOrders``) on a cron.

One schedule, id ``generate-enrollment-orders``: ``ensure_generator_schedule`` creates it or updates its
cron (idempotent; a paused schedule stays paused), ``pause``/``unpause``/``delete`` act on it, and
``list_schedules`` lists every schedule of the namespace. Each scheduled run starts the workflow on the
enrollments task queue with a retry policy of at most 5 attempts (a run that fails, e.g. because the
database is unreachable, is retried; a run that completes with ``success: false`` reported its failures
and is not). Overlapping runs are skipped: a run still going when the next one is due finishes first.
Setting ``ENROLLMENTS_AUTOSCHEDULE_CRON`` makes every worker apply the same at start.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

from pydantic import Field
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy
from temporalio.service import RPCError, RPCStatusCode

from adapters.domain import DomainModel, UtcDatetime, isoformat_utc
from adapters.lifecycle import GENERATOR_WORKFLOW_TYPE, generator_task_queue
from starter.connection.settings import Settings

_logger = logging.getLogger(__name__)

GENERATOR_SCHEDULE_ID = "generate-enrollment-orders"
DEFAULT_CRON = "0 0 * * *"
CRON_MEMO = "cron"
SCHEDULED_ATTEMPTS = 5
SCHEDULED_RETRY = RetryPolicy(
    initial_interval=timedelta(minutes=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=15),
    maximum_attempts=SCHEDULED_ATTEMPTS,
)
"""Scheduled runs retry up to 5 times (the reference worker's ``retries: 5``)."""


class ScheduleNotFound(LookupError):
    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} does not exist")
        self.schedule_id = schedule_id


class ScheduleView(DomainModel):
    """A schedule as the CLI shows it."""

    id: str
    workflow_type: str | None = None
    cron: list[str] = Field(default_factory=list)
    paused: bool = False
    note: str | None = None
    next_runs: list[UtcDatetime] = Field(default_factory=list)
    task_queue: str | None = None
    maximum_attempts: int | None = None


class ScheduleChange(DomainModel):
    schedule: ScheduleView
    action: Literal["created", "updated", "unchanged", "paused", "unpaused", "deleted"]


def generator_schedule(cron: str, task_queue: str, *, paused: bool = False, note: str | None = None) -> Schedule:
    """The generator's schedule: ``cron`` (UTC), starting ``GenerateEnrollmentOrders`` on ``task_queue``."""
    if not cron.strip():
        raise ValueError("cron: must not be empty (e.g. '0 0 * * *' for daily at midnight UTC)")
    return Schedule(
        action=ScheduleActionStartWorkflow(
            GENERATOR_WORKFLOW_TYPE,
            id=GENERATOR_SCHEDULE_ID,
            task_queue=task_queue,
            retry_policy=SCHEDULED_RETRY,
            # The server turns cron expressions into calendars and does not return them: keep the text too.
            memo={CRON_MEMO: cron.strip()},
            static_summary="Scheduled order generation: catch up every ACTIVE and PAUSED enrollment",
        ),
        spec=ScheduleSpec(cron_expressions=[cron.strip()]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=paused, note=note),
    )


def _cron(client: Client, start: ScheduleActionStartWorkflow | None) -> list[str]:
    payload = (start.memo or {}).get(CRON_MEMO) if start is not None else None
    if payload is None:
        return []
    if isinstance(payload, Payload):
        return [str(client.data_converter.payload_converter.from_payload(payload, str))]
    return [str(payload)]


def _view(client: Client, schedule_id: str, description: ScheduleDescription) -> ScheduleView:
    schedule = description.schedule
    action = schedule.action
    start = action if isinstance(action, ScheduleActionStartWorkflow) else None
    return ScheduleView(
        id=schedule_id,
        workflow_type=start.workflow if start else None,
        cron=list(schedule.spec.cron_expressions) or _cron(client, start),
        paused=schedule.state.paused,
        note=schedule.state.note or None,
        next_runs=list(description.info.next_action_times[:3]),
        task_queue=start.task_queue if start else None,
        maximum_attempts=start.retry_policy.maximum_attempts if start and start.retry_policy else None,
    )


async def describe_schedule(client: Client, schedule_id: str = GENERATOR_SCHEDULE_ID) -> ScheduleView:
    try:
        return _view(client, schedule_id, await client.get_schedule_handle(schedule_id).describe())
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise ScheduleNotFound(schedule_id) from None
        raise


async def ensure_generator_schedule(client: Client, *, cron: str, task_queue: str) -> ScheduleChange:
    """Create the generator's schedule, or update its cron and action; a paused schedule stays paused."""
    wanted = generator_schedule(cron, task_queue)
    try:
        await client.create_schedule(GENERATOR_SCHEDULE_ID, wanted)
        return ScheduleChange(schedule=await describe_schedule(client), action="created")
    except ScheduleAlreadyRunningError:
        pass
    current = await describe_schedule(client)
    if (
        current.cron == list(wanted.spec.cron_expressions)
        and current.task_queue == task_queue
        and (current.maximum_attempts == SCHEDULED_ATTEMPTS and current.workflow_type == GENERATOR_WORKFLOW_TYPE)
    ):
        return ScheduleChange(schedule=current, action="unchanged")

    def keep_state(update: ScheduleUpdateInput) -> ScheduleUpdate:
        state = update.description.schedule.state
        return ScheduleUpdate(schedule=generator_schedule(cron, task_queue, paused=state.paused, note=state.note))

    await client.get_schedule_handle(GENERATOR_SCHEDULE_ID).update(keep_state)
    return ScheduleChange(schedule=await describe_schedule(client), action="updated")


async def pause_generator_schedule(client: Client, note: str = "paused from the enrollments CLI") -> ScheduleChange:
    await describe_schedule(client)  # a clear error when it does not exist
    await client.get_schedule_handle(GENERATOR_SCHEDULE_ID).pause(note=note)
    return ScheduleChange(schedule=await describe_schedule(client), action="paused")


async def unpause_generator_schedule(client: Client, note: str = "unpaused from the enrollments CLI") -> ScheduleChange:
    await describe_schedule(client)
    await client.get_schedule_handle(GENERATOR_SCHEDULE_ID).unpause(note=note)
    return ScheduleChange(schedule=await describe_schedule(client), action="unpaused")


async def delete_generator_schedule(client: Client) -> ScheduleChange:
    current = await describe_schedule(client)
    await client.get_schedule_handle(GENERATOR_SCHEDULE_ID).delete()
    return ScheduleChange(schedule=current, action="deleted")


async def list_schedules(client: Client) -> list[ScheduleView]:
    """Every schedule of the namespace, by id, described in full (there are few).

    The list is eventually consistent: a schedule created a moment ago may show a little later.
    """
    views: list[ScheduleView] = []
    async for entry in await client.list_schedules():
        try:
            views.append(await describe_schedule(client, entry.id))
        except ScheduleNotFound:
            continue  # deleted since it was listed
    return sorted(views, key=lambda view: view.id)


async def apply_autoschedule(client: Client, settings: Settings) -> ScheduleChange | None:
    """``ENROLLMENTS_AUTOSCHEDULE_CRON`` at worker start: create or update the generator's schedule."""
    if settings.autoschedule_cron is None:
        return None
    queue = generator_task_queue(settings.task_queue)
    change = await ensure_generator_schedule(client, cron=settings.autoschedule_cron, task_queue=queue)
    _logger.info(
        "order generator schedule %r %s: cron %r, %s",
        GENERATOR_SCHEDULE_ID,
        change.action,
        settings.autoschedule_cron,
        next_run_text(change.schedule),
    )
    return change


def next_run_text(view: ScheduleView) -> str:
    """``next run 2031-01-01T00:00:00Z`` or ``paused`` (for one-line output)."""
    if view.paused:
        return "paused"
    if not view.next_runs:
        return "no next run"
    return f"next run {isoformat_utc(view.next_runs[0])}"
