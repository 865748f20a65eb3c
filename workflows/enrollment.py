"""EnrollmentWorkflow: one long-lived workflow per enrollment.

It registers the enrollment, then loops: apply queued commands, reach the boundaries that are due (start,
scheduled pause/termination, next period, overdue deadline) through activities, publish search
attributes and details, and sleep until the next boundary or message. Handlers only validate and queue;
the loop applies every command in arrival order, so signals and updates take the same path. State lives
in one pydantic model that continue-as-new carries over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from adapters.director import UnknownAdapterError, adapter_for_key
    from adapters.domain import EnrollmentStatus
    from adapters.lifecycle import (
        ATTENTION,
        ActivateCommand,
        CatchUpCommand,
        ChangeCommand,
        Command,
        EnrollmentView,
        ErrorType,
        MessageName,
        OrderStatusCommand,
        PauseCommand,
        PaymentCommand,
        QueuedCommand,
        RegisterRequest,
        RegisterResult,
        ResumeCommand,
        TerminateCommand,
    )
    from adapters.text import escape_markdown, printable
    from workflows import activity_calls
    from workflows.details import render_details
    from workflows.enrollment_machine import CommandRefused, EnrollmentMachine
    from workflows.enrollment_state import EnrollmentWorkflowInput, EnrollmentWorkflowState, carried_over
    from workflows.messages import MalformedMessage, command_signal, command_update, decode_command
    from workflows.search_attributes import (
        ENROLLMENT_HEALTH,
        ENROLLMENT_NEXT_PERIOD_AT,
        ENROLLMENT_PRODUCT_ID,
        ENROLLMENT_STATUS,
        ENROLLMENT_USER_ID,
    )


REFUSED_REGISTRATION_COMPLETES = "refused-registration-completes"
REGISTRATION_LOCAL = "registration-local"


@workflow.defn(name="EnrollmentWorkflow")
class EnrollmentWorkflow:
    """A customer subscription: periods, orders, pause/resume/terminate and access checks."""

    @workflow.init
    def __init__(self, input: EnrollmentWorkflowInput) -> None:
        self.input = input
        self.state = input.state.model_copy(deep=True) if input.state else EnrollmentWorkflowState()
        # Set once the first pass of the loop has reached its boundaries (registration answers then).
        self._settled = input.state is not None
        self.machine = EnrollmentMachine(self.state)

    # --- run --------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: EnrollmentWorkflowInput) -> EnrollmentView | None:
        if self.state.enrollment is None and not await self._register():
            return None  # refused: the caller of the registration update got the reason
        try:
            await self._live()
        except asyncio.CancelledError:
            # Temporal's Cancel (Web UI, CLI): an immediate termination with the canceller's reason.
            await self._terminate_on_cancel()
            raise
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self.state.commands))
        return self._view()

    async def _live(self) -> None:
        """The loop: apply commands, reach boundaries, publish, sleep; until TERMINATED with nothing left."""
        while True:
            await self.machine.apply_commands()
            await self.machine.reach_boundaries(workflow.now())
            self._settled = True
            # Callers of updates see the enrollment after the loop has reacted to their command.
            for command in self.machine.applied:
                self.machine.finish(command, None, None)
            self.machine.applied.clear()
            if self.state.commands:
                continue
            enrollment = self.machine.enrollment
            self._publish()
            if (
                enrollment.status is EnrollmentStatus.TERMINATED
                and self.state.scheduled is None
                and self.state.billing_due is None  # a period billed in arrears is billed after the end
            ):
                return
            if self._should_continue_as_new():
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self.state.commands))
                if not self.state.commands:
                    self.state.periods_this_run = 0
                    # A run from before the attribute was a choice (None) makes it now: off, like new ones.
                    carried = {
                        "state": carried_over(self.state),
                        "next_period_attribute": bool(self.input.next_period_attribute),
                    }
                    workflow.continue_as_new(self.input.model_copy(update=carried))
                continue
            await self._sleep_until_next_boundary()

    async def _register(self) -> bool:
        """Register the enrollment (or find it: a workflow rebuilt from the database); False when refused."""
        now = workflow.now()
        request = RegisterRequest(
            enrollment_id=self.input.enrollment_id,
            terms=self.input.terms,
            anchor=self.input.start or now,
            now=now,
            backdate=self.input.backdate,
        )
        try:
            result = await activity_calls.register(request, local=workflow.patched(REGISTRATION_LOCAL))
        except ActivityError as error:  # how workers refused before refusals were results
            cause = error.cause
            message = str(cause) if isinstance(cause, ApplicationError) else str(error)
            result = RegisterResult(
                refused=message, refused_type=cause.type if isinstance(cause, ApplicationError) else None
            )
        if result.enrollment is None or result.adapter_key is None:
            return await self._refused(result.refused or "the enrollment could not be registered", result.refused_type)
        enrollment = result.enrollment
        self.state.enrollment = enrollment.model_copy(update={"adapter_key": result.adapter_key})
        self.state.scheduled = enrollment.scheduled
        self.state.dunning = result.dunning
        # Rebuilt from the database: older orders are there, not in this state.
        self.state.history_trimmed = bool(enrollment.periods)
        self.state.needs_advance = True
        return True

    async def _refused(self, message: str, error_type: str | None) -> bool:
        """Answer every waiting caller with the refusal, then close: completed, not failed (it is an answer)."""
        self.state.failure, self.state.failure_type = message, error_type
        for command in self.state.commands:
            self.machine.finish(command, f"enrollment could not be registered: {message}", error_type)
        self.state.commands.clear()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if workflow.patched(REFUSED_REGISTRATION_COMPLETES):
            workflow.set_current_details(f"**Refused:** {escape_markdown(message)}")
            return False
        raise ApplicationError(message, type=error_type, non_retryable=True)

    async def _terminate_on_cancel(self) -> None:
        enrollment = self.state.enrollment
        if enrollment is None or enrollment.status is EnrollmentStatus.TERMINATED:
            return
        reason = printable(workflow.cancellation_reason() or "no reason given")
        command = TerminateCommand(reason=f"cancelled in Temporal: {reason}"[:500], immediately=True)
        with contextlib.suppress(CommandRefused):  # the database had it TERMINATED already
            await self.machine.terminate(command, workflow.now())
            await self.machine.reach_boundaries(workflow.now())
        self._publish()

    # --- sleeping, publishing, continue-as-new ----------------------------------------------------

    async def _sleep_until_next_boundary(self) -> None:
        wake_up = self.machine.next_wake_up()
        timeout = None if wake_up is None else max(wake_up - workflow.now(), timedelta(0))
        if timeout is not None and timeout <= timedelta(0):
            return
        summary = f"until {wake_up.isoformat()}" if wake_up else "until a message arrives"
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: bool(self.state.commands), timeout=timeout, timeout_summary=summary)

    def _should_continue_as_new(self) -> bool:
        return (
            self.state.periods_this_run >= self.input.periods_per_run or workflow.info().is_continue_as_new_suggested()
        )

    def _publish(self) -> None:
        """Keep the operators' view current: search attributes (only what changed) and details."""
        enrollment = self.machine.enrollment
        current = workflow.info().typed_search_attributes
        next_period = self.machine.next_period_boundary()
        updates: list[SearchAttributeUpdate[str] | SearchAttributeUpdate[datetime]] = []
        for key, value in (
            (ENROLLMENT_STATUS, str(enrollment.status)),
            (ENROLLMENT_PRODUCT_ID, enrollment.product_id),
            (ENROLLMENT_USER_ID, enrollment.user_id),
        ):
            if current.get(key) != value:
                updates.append(key.value_set(value))
        # Set only while the enrollment needs attention: filter with EnrollmentHealth = "ATTENTION".
        health = ATTENTION if self.state.attention is not None else None
        if current.get(ENROLLMENT_HEALTH) != health:
            updates.append(
                ENROLLMENT_HEALTH.value_set(health) if health is not None else ENROLLMENT_HEALTH.value_unset()
            )
        # Opt-in: an upsert each period is a billable Temporal action (docs/scaling.md); unset when off. Runs
        # started before the choice existed (None) keep it current, as they did.
        if self.input.next_period_attribute is False:
            next_period = None
        if current.get(ENROLLMENT_NEXT_PERIOD_AT) != next_period:
            updates.append(
                ENROLLMENT_NEXT_PERIOD_AT.value_set(next_period)
                if next_period is not None
                else ENROLLMENT_NEXT_PERIOD_AT.value_unset()
            )
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(render_details(self._view()))

    # --- queries, signals, updates ----------------------------------------------------------------

    def _view(self) -> EnrollmentView:
        if self.state.enrollment is None:
            raise ApplicationError(
                self.state.failure or "the enrollment is not registered yet",
                type=self.state.failure_type or ErrorType.ENROLLMENT_NOT_FOUND,
            )
        return EnrollmentView(
            **{
                **self.state.enrollment.model_dump(),
                "scheduled": self.state.scheduled,
                "next_wake_up": self.machine.next_wake_up(),
            },
            history_trimmed=self.state.history_trimmed,
            orders=self.state.orders,
            attention=self.state.attention,
            dunning=self.state.dunning,
        )

    @workflow.query(
        name=MessageName.STATE_QUERY, description="The full enrollment: status, periods, orders, log, next wake-up."
    )
    def query_state(self) -> EnrollmentView:
        return self._view()

    @workflow.query(
        name=MessageName.ACCESS_QUERY,
        description="Whether the subscription grants access at `at` (default: workflow time): the adapter's check.",
    )
    def is_valid_for_activation(self, at: datetime | None = None) -> bool:
        enrollment = self.state.enrollment
        if enrollment is None or enrollment.adapter_key is None:
            return False
        moment = at or workflow.now()
        if moment.tzinfo is None:
            raise ValueError("is_valid_for_activation: `at` must be timezone-aware")
        try:
            adapter = adapter_for_key(enrollment.adapter_key)
        except UnknownAdapterError:
            return False
        return adapter.is_valid_for_activation(enrollment, moment)

    def _queue(self, body: Command, *, from_update: bool) -> QueuedCommand:
        now = workflow.now()
        # A command may name the instant it takes effect (a change): a moment already past, never the future.
        effective = getattr(body, "at", None)
        at = effective if effective is not None and effective <= now else now
        command = QueuedCommand(id=str(workflow.uuid4()), at=at, body=body, from_update=from_update)
        self.state.commands.append(command)
        return command

    def receive_signal(self, message: str, model: type[Command], payloads: Sequence[Any]) -> None:
        """A command signal: queued when it decodes, else dropped with a warning naming the message."""
        try:
            body = decode_command(message, model, payloads)
        except MalformedMessage as malformed:
            workflow.logger.warning("dropped signal %s", malformed)
            return
        self._queue(body, from_update=False)

    def validate_update(self, message: str, model: type[Command], payloads: Sequence[Any]) -> None:
        """A command update's validator: a malformed message or an invalid transition is rejected."""
        if self.state.failure is not None:
            raise ApplicationError(self.state.failure, type=self.state.failure_type)
        body = self._decode_update(message, model, payloads)
        if self.state.enrollment is None:
            return  # registration still running: the loop decides once it has the enrollment
        problem = self.machine.rejection(body, workflow.now())
        if problem is not None:
            raise ApplicationError(problem, type=ErrorType.INVALID_TRANSITION, non_retryable=True)

    async def run_update(self, message: str, model: type[Command], payloads: Sequence[Any]) -> EnrollmentView:
        """A command update: queued for the loop; returns the enrollment once the loop has applied it."""
        command = self._queue(self._decode_update(message, model, payloads), from_update=True)
        await workflow.wait_condition(lambda: command.id in self.state.outcomes)
        outcome = self.state.outcomes.pop(command.id)
        if outcome.error is not None:
            raise ApplicationError(outcome.error, type=outcome.error_type, non_retryable=True)
        return self._view()

    @staticmethod
    def _decode_update(message: str, model: type[Command], payloads: Sequence[Any]) -> Command:
        try:
            return decode_command(message, model, payloads)
        except MalformedMessage as malformed:
            raise ApplicationError(str(malformed), type=ErrorType.INVALID_INPUT, non_retryable=True) from None

    pause_signal = command_signal(PauseCommand)
    resume_signal = command_signal(ResumeCommand)
    terminate_signal = command_signal(TerminateCommand)
    order_status_signal = command_signal(OrderStatusCommand)
    catch_up_signal = command_signal(CatchUpCommand)
    payment_signal = command_signal(PaymentCommand)
    pause_update = command_update(PauseCommand)
    resume_update = command_update(ResumeCommand)
    terminate_update = command_update(TerminateCommand)
    order_status_update = command_update(OrderStatusCommand)
    activate_update = command_update(ActivateCommand)
    payment_update = command_update(PaymentCommand)
    change_signal = command_signal(ChangeCommand)
    change_update = command_update(ChangeCommand)

    @workflow.update(
        name=MessageName.REGISTRATION_UPDATE, description="Wait until the enrollment is registered; returns it."
    )
    async def registration_update(self, *payloads: Any) -> EnrollmentView:
        await workflow.wait_condition(lambda: self._settled or self.state.failure is not None)
        return self._view()
