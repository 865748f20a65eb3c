"""EnrollmentWorkflow: one long-lived workflow per enrollment.

It registers the enrollment, then loops: apply queued commands, reach the boundaries that are due (start,
scheduled pause/termination, next period, overdue deadline) through activities, publish search
attributes and details, and sleep until the next boundary or message. Handlers only validate and queue;
the loop applies every command in arrival order, so signals and updates take the same path. State lives
in one pydantic model that continue-as-new carries over.
"""

from __future__ import annotations

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
        ActivateCommand,
        CatchUpCommand,
        Command,
        EnrollmentView,
        ErrorType,
        MessageName,
        OrderStatusCommand,
        PauseCommand,
        QueuedCommand,
        RegisterRequest,
        ResumeCommand,
        TerminateCommand,
    )
    from workflows import activity_calls
    from workflows.details import render_details
    from workflows.enrollment_machine import EnrollmentMachine
    from workflows.enrollment_state import EnrollmentWorkflowInput, EnrollmentWorkflowState, carried_over
    from workflows.messages import MalformedMessage, command_signal, command_update, decode_command
    from workflows.search_attributes import (
        ENROLLMENT_NEXT_PERIOD_AT,
        ENROLLMENT_PRODUCT_ID,
        ENROLLMENT_STATUS,
        ENROLLMENT_USER_ID,
    )


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
    async def run(self, input: EnrollmentWorkflowInput) -> EnrollmentView:
        if self.state.enrollment is None:
            await self._register()
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
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self.state.commands))
                if not self.state.commands:
                    self.state.periods_this_run = 0
                    workflow.continue_as_new(self.input.model_copy(update={"state": carried_over(self.state)}))
                continue
            await self._sleep_until_next_boundary()
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self.state.commands))
        return self._view()

    async def _register(self) -> None:
        now = workflow.now()
        request = RegisterRequest(
            enrollment_id=self.input.enrollment_id,
            terms=self.input.terms,
            anchor=self.input.start or now,
            now=now,
        )
        try:
            result = await activity_calls.register(request)
        except ActivityError as error:
            cause = error.cause
            message = str(cause) if isinstance(cause, ApplicationError) else str(error)
            error_type = cause.type if isinstance(cause, ApplicationError) else None
            self.state.failure, self.state.failure_type = message, error_type
            for command in self.state.commands:
                self.machine.finish(command, f"enrollment could not be registered: {message}", error_type)
            self.state.commands.clear()
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise ApplicationError(message, type=error_type, non_retryable=True) from None
        self.state.enrollment = result.enrollment.model_copy(update={"adapter_key": result.adapter_key})
        self.state.needs_advance = True

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
            **self.state.enrollment.model_dump(),
            history_trimmed=self.state.history_trimmed,
            orders=self.state.orders,
            next_wake_up=self.machine.next_wake_up(),
            scheduled=self.state.scheduled,
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
        command = QueuedCommand(id=str(workflow.uuid4()), at=workflow.now(), body=body, from_update=from_update)
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
    pause_update = command_update(PauseCommand)
    resume_update = command_update(ResumeCommand)
    terminate_update = command_update(TerminateCommand)
    order_status_update = command_update(OrderStatusCommand)
    activate_update = command_update(ActivateCommand)

    @workflow.update(
        name=MessageName.REGISTRATION_UPDATE, description="Wait until the enrollment is registered; returns it."
    )
    async def registration_update(self, *payloads: Any) -> EnrollmentView:
        await workflow.wait_condition(lambda: self._settled or self.state.failure is not None)
        return self._view()
