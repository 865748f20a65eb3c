"""An open enrollment's workflow, examined against the store: running, healthy, agreeing, or what is wrong.

Used by the order generator's pass (every page of ACTIVE and PAUSED enrollments) and by ``enrollments
doctor``. What it finds, and what it does about it:

- **closed by an operator in Temporal** (Terminate, or Cancel before the workflow could answer it): the
  store records TERMINATED with the operator's reason, once; the enrollment is never restarted;
- **no workflow, or a failed / timed-out one**: rebuilt from the store (signal-with-start ``catch_up``);
  the new run starts from the stored enrollment, its scheduled action and its orders;
- **completed while the store has it open**: the store is behind its workflow; repaired by recording the
  workflow's final status;
- **wedged**: its workflow tasks keep failing (a bug, a poison message an older worker took) — reported;
- **needs attention**: the workflow says it cannot make progress (``EnrollmentHealth``) — reported after a
  ``catch_up`` asked it to try again;
- **disagrees**: the workflow's status, latest period or scheduled action differs from the store's — reported;
  repaired by a ``catch_up`` (the next period brings the store in line) and by storing the workflow's scheduled
  action.

A TERMINATED enrollment (only the fault suite passes them) is expected to have a completed workflow, whose
final view must agree with the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.persistence import Store
from adapters.domain import DomainModel, Enrollment, EnrollmentStatus, EnrollmentTerms, StatusChange, describe_status
from adapters.lifecycle import (
    ENROLLMENT_WORKFLOW_TYPE,
    HEALTH_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    EnrollmentView,
    MessageName,
    workflow_id_for,
)
from adapters.text import printable

FAILING_TASK_ATTEMPTS = 3
"""A workflow task on its third attempt (two failed in a row) means the workflow is wedged, not unlucky."""

_CLOSED_BY_OPERATOR = {
    WorkflowExecutionStatus.TERMINATED: "Terminate",
    WorkflowExecutionStatus.CANCELED: "Cancel",
}
_REBUILT = (WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TIMED_OUT)


class Problem(StrEnum):
    """What can be wrong with an open enrollment's workflow (the names the generator reports)."""

    CLOSED_IN_TEMPORAL = "EnrollmentClosedInTemporal"
    MISSING = "EnrollmentWorkflowMissing"
    COMPLETED = "EnrollmentCompletedEarly"
    WEDGED = "EnrollmentWedged"
    ATTENTION = "EnrollmentNeedsAttention"
    DISAGREES = "EnrollmentDisagrees"
    UNREACHABLE = "EnrollmentUnreachable"


class Finding(DomainModel):
    """One thing wrong with one enrollment, and what was done about it."""

    enrollment_id: str
    problem: Problem
    message: str
    repaired: str | None = None


@dataclass(frozen=True)
class WorkflowState:
    """An enrollment's latest workflow run as Temporal describes it (None status: there is none)."""

    status: WorkflowExecutionStatus | None
    run_id: str = ""
    close_time: datetime | None = None
    task_attempt: int = 0
    health: str | None = None
    status_attribute: str | None = None


def _keyword(payload: Payload | None) -> str | None:
    """A keyword search attribute's value (decoded by hand: an unset datetime attribute beside it does not decode)."""
    if payload is None or not payload.data:
        return None
    value = json.loads(payload.data)
    value = value[0] if isinstance(value, list) and value else value
    return value if isinstance(value, str) else None


async def describe_workflow(client: Client, enrollment_id: str) -> WorkflowState:
    """The latest run of the enrollment's workflow (the raw call: no decoding of unset attributes needed)."""
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id_for(enrollment_id))
    )
    try:
        response = await client.workflow_service.describe_workflow_execution(request, retry=True)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return WorkflowState(status=None)
        raise
    info = response.workflow_execution_info
    attributes = info.search_attributes.indexed_fields
    return WorkflowState(
        status=WorkflowExecutionStatus(info.status),
        run_id=info.execution.run_id,
        close_time=info.close_time.ToDatetime(tzinfo=UTC) if info.HasField("close_time") else None,
        task_attempt=response.pending_workflow_task.attempt if response.HasField("pending_workflow_task") else 0,
        health=_keyword(attributes.get(HEALTH_ATTRIBUTE)),
        status_attribute=_keyword(attributes.get(STATUS_ATTRIBUTE)),
    )


def workflow_input(enrollment: Enrollment, *, next_period_attribute: bool = False) -> dict[str, Any]:
    """The input of ``EnrollmentWorkflow`` that rebuilds ``enrollment``'s workflow from the store.

    Built by its field names (activities do not import workflow code); a test checks that it validates as
    ``EnrollmentWorkflowInput``.
    """
    terms = EnrollmentTerms.model_validate(enrollment.model_dump(include=set(EnrollmentTerms.model_fields)))
    return {
        "enrollment_id": enrollment.id,
        "terms": terms,
        "start": enrollment.anchor,
        "next_period_attribute": next_period_attribute,
    }


def label(enrollment: Enrollment) -> str:
    """``enrollment E-7KQ2M9XA (id)``: how messages name an enrollment."""
    return f"enrollment {enrollment.number} ({enrollment.id})" if enrollment.number else f"enrollment {enrollment.id}"


@dataclass(frozen=True)
class Checkup:
    """Examines (and repairs) enrollments' workflows on one Temporal namespace against one store."""

    client: Client
    store: Store
    task_queue: str
    next_period_attribute: bool = False
    """Whether workflows it rebuilds keep EnrollmentNextPeriodAt current (``ENROLLMENTS_NEXT_PERIOD_ATTRIBUTE``)."""

    async def examine(self, enrollment: Enrollment, *, repair: bool, query: bool) -> list[Finding]:
        """What is wrong with ``enrollment``'s workflow; with ``repair``, what can be is repaired.

        A running workflow is asked for its state when its status attribute differs from the store's, or
        always with ``query`` (the doctor: it compares the scheduled action too).
        """
        state = await describe_workflow(self.client, enrollment.id)
        if state.status in _CLOSED_BY_OPERATOR:
            return [await self._closed_by_operator(enrollment, state, repair=repair)]
        if state.status is None or state.status in _REBUILT:
            what = "has no workflow" if state.status is None else f"'s workflow {state.status.name}"
            finding = Finding(
                enrollment_id=enrollment.id, problem=Problem.MISSING, message=f"{label(enrollment)}{what}"
            )
            if repair:
                await self.rebuild(enrollment)
                finding.repaired = "its workflow was started again from the database"
            return [finding]
        if state.status is WorkflowExecutionStatus.COMPLETED:
            if enrollment.status is EnrollmentStatus.TERMINATED:  # as it should: compare its final view
                final = await self._result(enrollment.id, state.run_id)
                return [] if final is None else await self._disagreements(enrollment, final, repair=False)
            return [await self._completed(enrollment, state, repair=repair)]
        findings: list[Finding] = []
        if state.task_attempt >= FAILING_TASK_ATTEMPTS:
            message = (
                f"{label(enrollment)}: its workflow tasks keep failing (attempt {state.task_attempt}); see the "
                "worker log, fix the cause, then reset the workflow (docs/operators.md)"
            )
            return [Finding(enrollment_id=enrollment.id, problem=Problem.WEDGED, message=message)]
        if repair:
            await self.catch_up(enrollment.id)
        if state.health is not None:
            view = await self._view(enrollment.id)
            why = view.attention if view is not None and view.attention else "see its details"
            findings.append(
                Finding(
                    enrollment_id=enrollment.id,
                    problem=Problem.ATTENTION,
                    message=f"{label(enrollment)} needs attention: {why}",
                    repaired="asked to try again (catch_up)" if repair else None,
                )
            )
        if query or state.status_attribute != enrollment.status.value:
            view = await self._view(enrollment.id)
            if view is not None:
                findings += await self._disagreements(enrollment, view, repair=repair)
        return findings

    async def catch_up(self, enrollment_id: str) -> None:
        await self.client.get_workflow_handle(workflow_id_for(enrollment_id)).signal(MessageName.CATCH_UP_SIGNAL)

    async def rebuild(self, enrollment: Enrollment) -> None:
        """Start the enrollment's workflow from the store and wait until it has registered."""
        handle = await self.client.start_workflow(
            ENROLLMENT_WORKFLOW_TYPE,
            workflow_input(enrollment, next_period_attribute=self.next_period_attribute),
            id=workflow_id_for(enrollment.id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=MessageName.CATCH_UP_SIGNAL,
            static_summary=f"{enrollment.number or enrollment.id} · {enrollment.product_id} · {enrollment.user_id}",
        )
        try:
            await handle.execute_update(MessageName.REGISTRATION_UPDATE)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
            raise RebuildFailed(f"{label(enrollment)}: its workflow could not start: {message}") from None

    async def _view(self, enrollment_id: str) -> EnrollmentView | None:
        handle = self.client.get_workflow_handle(workflow_id_for(enrollment_id))
        try:
            view: EnrollmentView = await handle.query(MessageName.STATE_QUERY, result_type=EnrollmentView)
        except RPCError:
            return None
        return view

    async def _closed_by_operator(self, enrollment: Enrollment, state: WorkflowState, *, repair: bool) -> Finding:
        """Record the termination an operator made in Temporal (once: keyed by the closed run)."""
        how = _CLOSED_BY_OPERATOR[state.status] if state.status is not None else "?"
        finding = Finding(
            enrollment_id=enrollment.id,
            problem=Problem.CLOSED_IN_TEMPORAL,
            message=f"{label(enrollment)}: its workflow was closed in Temporal ({how})",
        )
        if not repair:
            return finding
        reason = await self._close_reason(enrollment.id, state.run_id)
        at = state.close_time or datetime.now(UTC)
        change = StatusChange(
            status=EnrollmentStatus.TERMINATED,
            event_key=f"temporal-{how.lower()}:{state.run_id}",
            at=at,
            expires=at,
            info=f"terminated in Temporal ({how}{f': {reason}' if reason else ''})",
        )

        async def terminate() -> None:
            await self.store.enrollments.change_status(enrollment.id, change)
            await self.store.enrollments.set_scheduled(enrollment.id, None)

        await self.store.transactions.unit(terminate)  # the termination and its cleared schedule, or neither
        finding.repaired = "recorded TERMINATED (an operator's decision is never reversed)"
        return finding

    async def _close_reason(self, enrollment_id: str, run_id: str) -> str:
        handle = self.client.get_workflow_handle(workflow_id_for(enrollment_id), run_id=run_id)
        async for event in handle.fetch_history_events(event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT):
            if event.HasField("workflow_execution_terminated_event_attributes"):
                return printable(event.workflow_execution_terminated_event_attributes.reason)[:200]
            if event.HasField("workflow_execution_canceled_event_attributes"):
                return "cancelled"
        return ""

    async def _completed(self, enrollment: Enrollment, state: WorkflowState, *, repair: bool) -> Finding:
        finding = Finding(
            enrollment_id=enrollment.id,
            problem=Problem.COMPLETED,
            message=f"{label(enrollment)} is {enrollment.status} in the database but its workflow has completed",
        )
        if not repair:
            return finding
        final = await self._result(enrollment.id, state.run_id)
        if final is not None and final.status is EnrollmentStatus.TERMINATED:
            at = final.expires or state.close_time or datetime.now(UTC)
            change = StatusChange(
                status=EnrollmentStatus.TERMINATED,
                event_key=f"workflow-completed:{state.run_id}",
                at=at,
                expires=final.expires or at,
                info="terminated (recorded from its completed workflow)",
            )
            await self.store.enrollments.change_status(enrollment.id, change)
            finding.repaired = "recorded TERMINATED from its workflow's result"
        else:
            await self.rebuild(enrollment)
            finding.repaired = "its workflow was started again from the database"
        return finding

    async def _result(self, enrollment_id: str, run_id: str) -> EnrollmentView | None:
        """The final view a completed run returned."""
        handle = self.client.get_workflow_handle(
            workflow_id_for(enrollment_id), run_id=run_id, result_type=EnrollmentView
        )
        final: EnrollmentView | None = await handle.result()
        return final

    async def _disagreements(self, enrollment: Enrollment, view: EnrollmentView, *, repair: bool) -> list[Finding]:
        stored = await self.store.enrollments.get(enrollment.id) or enrollment  # fresh: the signal may have moved it
        findings = []
        ours, theirs = (
            describe_status(view.status, view.pause_reason),
            describe_status(stored.status, stored.pause_reason),
        )
        if ours != theirs:
            findings.append(
                Finding(
                    enrollment_id=enrollment.id,
                    problem=Problem.DISAGREES,
                    message=f"{label(enrollment)}: its workflow says {ours}, the database {theirs}",
                    repaired="its next period stores the workflow's status (catch_up sent)" if repair else None,
                )
            )
        if _window(view) != _window(stored):
            findings.append(
                Finding(
                    enrollment_id=enrollment.id,
                    problem=Problem.DISAGREES,
                    message=(
                        f"{label(enrollment)}: its workflow's latest period is {_latest(view)}, "
                        f"the database's {_latest(stored)}"
                    ),
                    repaired="asked to catch up (catch_up sent)" if repair else None,
                )
            )
        if view.scheduled != stored.scheduled:
            finding = Finding(
                enrollment_id=enrollment.id,
                problem=Problem.DISAGREES,
                message=(
                    f"{label(enrollment)}: its workflow has scheduled {_scheduled(view)}, "
                    f"the database {_scheduled(stored)}"
                ),
            )
            if repair:
                await self.store.enrollments.set_scheduled(enrollment.id, view.scheduled)
                finding.repaired = "stored the workflow's scheduled action"
            findings.append(finding)
        return findings


def _window(enrollment: Enrollment) -> tuple[datetime, datetime] | None:
    latest = enrollment.latest_period
    return None if latest is None else (latest.start, latest.end)


def _latest(enrollment: Enrollment) -> str:
    window = _window(enrollment)
    return "none" if window is None else f"{window[0].isoformat()}–{window[1].isoformat()}"


def _scheduled(enrollment: Enrollment) -> str:
    scheduled = enrollment.scheduled
    return "nothing" if scheduled is None else f"a {scheduled.kind} at {scheduled.at.isoformat()}"


class RebuildFailed(RuntimeError):
    """An enrollment's workflow could not be started from the store (the message names it and why)."""
