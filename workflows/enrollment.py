"""EnrollmentWorkflow: one long-lived workflow per enrollment.

It registers the enrollment, then loops: apply queued commands, reach the boundaries that are due (start,
scheduled pause/termination, next period, overdue deadline) through activities, publish search
attributes and details, and sleep until the next boundary or message. Handlers only validate and queue;
the loop applies every command in arrival order, so signals and updates take the same path. State lives
in one pydantic model that continue-as-new carries over.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from adapters.director import UnknownAdapterError, adapter_for_key
    from adapters.domain import (
        Enrollment,
        EnrollmentLogEntry,
        EnrollmentStatus,
        Order,
        PauseReason,
        Period,
    )
    from adapters.lifecycle import (
        ActivateCommand,
        ActivateRequest,
        ActivityName,
        AdvanceRequest,
        AdvanceResult,
        CatchUpCommand,
        CommandBody,
        EnrollmentView,
        ErrorType,
        MessageName,
        OrderStatusChange,
        OrderStatusCommand,
        OrderStatusRequest,
        PauseCommand,
        PauseRequest,
        QueuedCommand,
        RegisterRequest,
        RegisterResult,
        ResumeCommand,
        ResumeRequest,
        ScheduledAction,
        StatusChangeRequest,
        TerminateCommand,
        TerminateRequest,
    )
    from workflows.details import render_details
    from workflows.enrollment_state import (
        CommandOutcome,
        EnrollmentWorkflowInput,
        EnrollmentWorkflowState,
        carried_over,
    )
    from workflows.search_attributes import (
        ENROLLMENT_NEXT_PERIOD_AT,
        ENROLLMENT_PRODUCT_ID,
        ENROLLMENT_STATUS,
        ENROLLMENT_USER_ID,
    )
    from workflows.transitions import rejection

ACTIVITY_TIMEOUT = timedelta(seconds=60)
BOUNDARIES_BEFORE_COMMANDS = "boundaries-before-commands"
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)


REFUSED_ORDER_CHANGES = (ErrorType.ORDER_NOT_FOUND, ErrorType.INVALID_TRANSITION)


class CommandRefused(Exception):
    """A command found inapplicable while it was applied; an update that sent it fails with this."""

    def __init__(self, message: str, error_type: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


@workflow.defn(name="EnrollmentWorkflow")
class EnrollmentWorkflow:
    """A customer subscription: periods, orders, pause/resume/terminate and access checks."""

    @workflow.init
    def __init__(self, input: EnrollmentWorkflowInput) -> None:
        self.input = input
        self.state = input.state.model_copy(deep=True) if input.state else EnrollmentWorkflowState()
        # Set once the first pass of the loop has reached its boundaries (registration answers then).
        self._settled = input.state is not None
        self._applied: list[QueuedCommand] = []

    # --- run --------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: EnrollmentWorkflowInput) -> EnrollmentView:
        if self.state.enrollment is None:
            await self._register()
        while True:
            await self._apply_commands()
            await self._reach_boundaries(workflow.now())
            self._settled = True
            # Callers of updates see the enrollment after the loop has reacted to their command.
            for command in self._applied:
                self._finish(command, None, None)
            self._applied.clear()
            if self.state.commands:
                continue
            enrollment = self._enrollment
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
            result = await workflow.execute_activity(
                ActivityName.REGISTER,
                request,
                result_type=RegisterResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"register enrollment {self.input.enrollment_id}",
            )
        except ActivityError as error:
            cause = error.cause
            message = str(cause) if isinstance(cause, ApplicationError) else str(error)
            error_type = cause.type if isinstance(cause, ApplicationError) else None
            self.state.failure, self.state.failure_type = message, error_type
            for command in self.state.commands:
                self._finish(command, f"enrollment could not be registered: {message}", error_type)
            self.state.commands.clear()
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise ApplicationError(message, type=error_type, non_retryable=True) from None
        self.state.enrollment = result.enrollment.model_copy(update={"adapter_key": result.adapter_key})
        self.state.needs_advance = True

    # --- boundaries -------------------------------------------------------------------------------

    async def _reach_boundaries(self, now: datetime) -> None:
        """Everything due by ``now``: the start, a scheduled pause/termination, periods, deadlines."""
        enrollment = self._enrollment
        if enrollment.status is EnrollmentStatus.INITIAL and now >= enrollment.anchor:
            await self._change_status(EnrollmentStatus.ACTIVE, at=enrollment.anchor, info="started")
            self.state.needs_advance = True
        scheduled = self.state.scheduled
        if scheduled is not None and now >= scheduled.at:
            self.state.scheduled = None
            await self._apply_scheduled(scheduled)
        if self._advance_due(now):
            await self._advance(now)

    async def _apply_scheduled(self, scheduled: ScheduledAction) -> None:
        reason = f": {scheduled.reason}" if scheduled.reason else ""
        if scheduled.kind == "pause":
            await self._change_status(
                EnrollmentStatus.PAUSED,
                at=scheduled.at,
                info=f"paused at period end{reason}",
                reason=PauseReason.MANUAL,
            )
        else:
            await self._change_status(
                EnrollmentStatus.TERMINATED,
                at=scheduled.at,
                info=f"terminated at period end{reason}",
                expires=scheduled.at,
            )

    def _creates_periods(self) -> bool:
        enrollment = self._enrollment
        return enrollment.status is EnrollmentStatus.ACTIVE or (
            enrollment.status is EnrollmentStatus.PAUSED and enrollment.pause_reason is PauseReason.OVERDUE
        )

    def _advance_due(self, now: datetime) -> bool:
        billing_due = self.state.billing_due
        if self._enrollment.status is EnrollmentStatus.TERMINATED:
            return billing_due is not None and billing_due <= now
        if self._enrollment.status is EnrollmentStatus.INITIAL:
            return False
        if self.state.needs_advance:
            return True
        boundaries = (self._next_period_boundary(), self.state.deadline, billing_due)
        due = [moment for moment in boundaries if moment is not None]
        return any(moment <= now for moment in due)

    def _next_period_boundary(self) -> datetime | None:
        return self.state.next_period_start if self._creates_periods() else None

    async def _advance(self, now: datetime) -> None:
        enrollment = self._enrollment
        latest = enrollment.latest_period
        # A local activity: the per-period hot path costs one marker event instead of six task events.
        result = await workflow.execute_local_activity(
            ActivityName.ADVANCE,
            AdvanceRequest(
                enrollment_id=enrollment.id,
                now=now,
                create_periods=self._creates_periods(),
                known_through=latest.start if latest else None,
                open_since=next(
                    (period.start for period in enrollment.periods if period.order_id is None and not period.billed_at),
                    None,
                ),
            ),
            result_type=AdvanceResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"advance to {now.isoformat()}",
        )
        self._merge([*result.periods, *result.billed], result.orders)
        self.state.periods_this_run += len(result.periods)
        self.state.next_period_start = result.next_period_start
        self.state.deadline = result.deadline
        self.state.billing_due = result.billing_due
        # A catch-up that hit its per-call limit leaves periods due: go again without sleeping.
        self.state.needs_advance = bool(
            self._creates_periods() and result.next_period_start is not None and result.next_period_start <= now
        )
        status, reason = self._enrollment.status, self._enrollment.pause_reason
        if status is EnrollmentStatus.ACTIVE and result.overdue:
            await self._change_status(
                EnrollmentStatus.PAUSED, at=now, info="payment overdue", reason=PauseReason.OVERDUE
            )
        elif status is EnrollmentStatus.PAUSED and reason is PauseReason.OVERDUE and not result.overdue:
            await self._change_status(EnrollmentStatus.ACTIVE, at=now, info="payment received")
            self.state.needs_advance = True

    def _merge(self, periods: list[Period], orders: list[Order]) -> None:
        enrollment = self._enrollment
        # A known period comes back when it was billed in arrears: take the new version (order, billed_at).
        returned = {period.start: period for period in periods}
        merged = [returned.pop(period.start, period) for period in enrollment.periods]
        enrollment.periods = sorted([*merged, *returned.values()], key=lambda period: period.start)
        known_orders = {order.id for order in self.state.orders}
        self.state.orders.extend(order for order in orders if order.id not in known_orders)

    # --- commands ---------------------------------------------------------------------------------

    async def _apply_commands(self) -> None:
        while self.state.commands:
            command = self.state.commands.pop(0)
            # Boundaries that passed before the command arrived come first (a pause 1 ms after a period
            # boundary still gets that period), also when a late workflow task sees both at once.
            if workflow.patched(BOUNDARIES_BEFORE_COMMANDS):
                await self._reach_boundaries(command.at)
            problem = self._rejection(command.body, command.at)
            refusal = None if problem is None else CommandRefused(problem, ErrorType.INVALID_TRANSITION)
            if refusal is None:
                try:
                    await self._apply(command.body, command.at)
                except CommandRefused as refused:
                    refusal = refused
            if refusal is not None:
                if not command.from_update:
                    workflow.logger.warning("ignored %s: %s", command.body.kind, refusal.message)
                self._finish(command, refusal.message, refusal.error_type)
                continue
            self._applied.append(command)

    def _rejection(self, body: CommandBody, at: datetime) -> str | None:
        state = self.state
        return rejection(
            state.enrollment, state.scheduled, state.orders, body, at, all_orders_known=not state.history_trimmed
        )

    def _finish(self, command: QueuedCommand, error: str | None, error_type: str | None) -> None:
        if command.from_update:
            self.state.outcomes[command.id] = CommandOutcome(error=error, error_type=error_type)

    async def _apply(self, body: CommandBody, at: datetime) -> None:
        if isinstance(body, PauseCommand):
            await self._pause(body, at)
        elif isinstance(body, ResumeCommand):
            await self._resume(body, at)
        elif isinstance(body, TerminateCommand):
            await self._terminate(body, at)
        elif isinstance(body, OrderStatusCommand):
            await self._order_status(body, at)
        elif isinstance(body, CatchUpCommand):
            self.state.needs_advance = self._enrollment.status is not EnrollmentStatus.TERMINATED
        elif isinstance(body, ActivateCommand):
            await self._activate(body, at)

    async def _activate(self, body: ActivateCommand, at: datetime) -> None:
        """Start an INITIAL enrollment now: ACTIVE, anchored at ``at``, its first period created at once."""
        info = f"activated: {body.reason}" if body.reason else "activated"
        await self._change_status(EnrollmentStatus.ACTIVE, at=at, info=info, anchor=at)
        self.state.needs_advance = True

    def _current_period_end(self, at: datetime) -> datetime | None:
        latest = self._enrollment.latest_period
        return latest.end if latest is not None and latest.end > at else None

    async def _pause(self, body: PauseCommand, at: datetime) -> None:
        period_end = self._current_period_end(at)
        if body.at_period_end and period_end is not None and self._enrollment.status is EnrollmentStatus.ACTIVE:
            self.state.scheduled = ScheduledAction(kind="pause", at=period_end, reason=body.reason)
            return
        self.state.scheduled = None
        info = f"paused: {body.reason}" if body.reason else "paused"
        await self._change_status(EnrollmentStatus.PAUSED, at=at, info=info, reason=PauseReason.MANUAL)

    async def _resume(self, body: ResumeCommand, at: datetime) -> None:
        reason = f": {body.reason}" if body.reason else ""
        if self.state.scheduled is not None:
            withdrawn, self.state.scheduled = self.state.scheduled, None
            if self._enrollment.status is EnrollmentStatus.ACTIVE:
                workflow.logger.info("withdrew the %s scheduled for %s", withdrawn.kind, withdrawn.at.isoformat())
                return
        # The running period continues; once it has ended, the resume time anchors a new schedule.
        anchor = None if self._current_period_end(at) is not None else at
        await self._change_status(EnrollmentStatus.ACTIVE, at=at, info=f"resumed{reason}", anchor=anchor)
        self.state.needs_advance = True

    async def _terminate(self, body: TerminateCommand, at: datetime) -> None:
        period_end = self._current_period_end(at)
        status = self._enrollment.status
        if body.at_period_end and period_end is not None and status is EnrollmentStatus.ACTIVE:
            self.state.scheduled = ScheduledAction(kind="terminate", at=period_end, reason=body.reason)
            return
        self.state.scheduled = None
        # Access runs to the end of what was paid, unless asked otherwise or already suspended.
        keeps_access = not body.immediately and status is EnrollmentStatus.ACTIVE and period_end is not None
        expires = period_end if keeps_access and period_end is not None else at
        info = f"terminated: {body.reason}" if body.reason else "terminated"
        await self._change_status(EnrollmentStatus.TERMINATED, at=at, info=info, expires=expires)

    async def _order_status(self, body: OrderStatusCommand, at: datetime) -> None:
        enrollment = self._enrollment
        try:
            updated = await workflow.execute_activity(
                ActivityName.APPLY_ORDER_STATUS,
                OrderStatusRequest(enrollment_id=enrollment.id, order_id=body.order_id, status=body.status, now=at),
                result_type=Order,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"order {body.order_id} → {body.status}",
            )
        except ActivityError as error:
            # Only for an order older than what this run carries: the activity checked it in the database.
            cause = error.cause
            if not isinstance(cause, ApplicationError) or cause.type not in REFUSED_ORDER_CHANGES:
                raise
            raise CommandRefused(cause.message, cause.type) from None
        self.state.orders = [updated if order.id == updated.id else order for order in self.state.orders]
        for period in enrollment.periods:
            if period.order_id == updated.id:
                period.order_status = updated.status
        if enrollment.status is EnrollmentStatus.PAUSED and enrollment.pause_reason is PauseReason.OVERDUE:
            self.state.needs_advance = True  # the adapter decides whether payment lifts the overdue pause

    async def _change_status(
        self,
        status: EnrollmentStatus,
        *,
        at: datetime,
        info: str,
        reason: PauseReason | None = None,
        expires: datetime | None = None,
        anchor: datetime | None = None,
    ) -> None:
        enrollment = self._enrollment
        await workflow.execute_activity(
            ActivityName.CHANGE_STATUS,
            StatusChangeRequest(
                enrollment_id=enrollment.id,
                status=status,
                event_key=str(workflow.uuid4()),
                at=at,
                info=info,
                pause_reason=reason,
                expires=expires,
                anchor=anchor,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"{status}: {info}",
        )
        enrollment.status = status
        enrollment.pause_reason = reason if status is EnrollmentStatus.PAUSED else None
        if expires is not None:
            enrollment.expires = expires
        if anchor is not None:
            enrollment.anchor = anchor
        enrollment.log.append(EnrollmentLogEntry(at=at, status=status, info=info))

    # --- sleeping, publishing, continue-as-new ----------------------------------------------------

    def _next_wake_up(self) -> datetime | None:
        enrollment = self._enrollment
        moments: list[datetime] = []
        if enrollment.status is EnrollmentStatus.INITIAL:
            moments.append(enrollment.anchor)
        if self.state.scheduled is not None:
            moments.append(self.state.scheduled.at)
        if enrollment.status is not EnrollmentStatus.TERMINATED:
            moments.extend(moment for moment in (self._next_period_boundary(), self.state.deadline) if moment)
        if self.state.billing_due is not None:
            moments.append(self.state.billing_due)
        return min(moments) if moments else None

    async def _sleep_until_next_boundary(self) -> None:
        wake_up = self._next_wake_up()
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
        enrollment = self._enrollment
        current = workflow.info().typed_search_attributes
        next_period = self._next_period_boundary()
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

    @property
    def _enrollment(self) -> Enrollment:
        if self.state.enrollment is None:
            raise ApplicationError("the enrollment is not registered yet", type=ErrorType.ENROLLMENT_NOT_FOUND)
        return self.state.enrollment

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
            next_wake_up=self._next_wake_up(),
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

    def _queue(self, body: CommandBody, *, from_update: bool) -> QueuedCommand:
        command = QueuedCommand(id=str(workflow.uuid4()), at=workflow.now(), body=body, from_update=from_update)
        self.state.commands.append(command)
        return command

    def _validate(self, body: CommandBody) -> None:
        if self.state.failure is not None:
            raise ApplicationError(self.state.failure, type=self.state.failure_type)
        if self.state.enrollment is None:
            return  # registration still running: the loop decides once it has the enrollment
        problem = self._rejection(body, workflow.now())
        if problem is not None:
            raise ApplicationError(problem, type=ErrorType.INVALID_TRANSITION, non_retryable=True)

    async def _run_update(self, body: CommandBody) -> EnrollmentView:
        command = self._queue(body, from_update=True)
        await workflow.wait_condition(lambda: command.id in self.state.outcomes)
        outcome = self.state.outcomes.pop(command.id)
        if outcome.error is not None:
            raise ApplicationError(outcome.error, type=outcome.error_type, non_retryable=True)
        return self._view()

    @workflow.signal(name=MessageName.PAUSE_SIGNAL, description="Pause now, or at the end of the current period.")
    def pause_signal(self, request: PauseRequest) -> None:
        self._queue(PauseCommand(**request.model_dump()), from_update=False)

    @workflow.signal(
        name=MessageName.RESUME_SIGNAL,
        description="Resume a manual pause, or withdraw a pause/termination at period end.",
    )
    def resume_signal(self, request: ResumeRequest) -> None:
        self._queue(ResumeCommand(**request.model_dump()), from_update=False)

    @workflow.signal(
        name=MessageName.TERMINATE_SIGNAL,
        description="End the subscription: access until the paid period ends, `immediately`, or `at_period_end`.",
    )
    def terminate_signal(self, request: TerminateRequest) -> None:
        self._queue(TerminateCommand(**request.model_dump()), from_update=False)

    @workflow.signal(name=MessageName.ORDER_STATUS_SIGNAL, description="An order of this enrollment changed status.")
    def order_status_signal(self, change: OrderStatusChange) -> None:
        self._queue(OrderStatusCommand(**change.model_dump()), from_update=False)

    @workflow.signal(
        name=MessageName.CATCH_UP_SIGNAL, description="Re-check due periods and deadlines now (order generator)."
    )
    def catch_up_signal(self) -> None:
        self._queue(CatchUpCommand(), from_update=False)

    @workflow.update(
        name=MessageName.PAUSE_UPDATE, description="Pause and wait for the result; invalid transitions are rejected."
    )
    async def pause_update(self, request: PauseRequest) -> EnrollmentView:
        return await self._run_update(PauseCommand(**request.model_dump()))

    @pause_update.validator
    def _validate_pause(self, request: PauseRequest) -> None:
        self._validate(PauseCommand(**request.model_dump()))

    @workflow.update(
        name=MessageName.RESUME_UPDATE, description="Resume and wait for the result; invalid transitions are rejected."
    )
    async def resume_update(self, request: ResumeRequest) -> EnrollmentView:
        return await self._run_update(ResumeCommand(**request.model_dump()))

    @resume_update.validator
    def _validate_resume(self, request: ResumeRequest) -> None:
        self._validate(ResumeCommand(**request.model_dump()))

    @workflow.update(
        name=MessageName.TERMINATE_UPDATE,
        description="Terminate and wait for the result; invalid transitions are rejected.",
    )
    async def terminate_update(self, request: TerminateRequest) -> EnrollmentView:
        return await self._run_update(TerminateCommand(**request.model_dump()))

    @terminate_update.validator
    def _validate_terminate(self, request: TerminateRequest) -> None:
        self._validate(TerminateCommand(**request.model_dump()))

    @workflow.update(name=MessageName.ORDER_STATUS_UPDATE, description="Apply an order status change and wait for it.")
    async def order_status_update(self, change: OrderStatusChange) -> EnrollmentView:
        return await self._run_update(OrderStatusCommand(**change.model_dump()))

    @order_status_update.validator
    def _validate_order_status(self, change: OrderStatusChange) -> None:
        self._validate(OrderStatusCommand(**change.model_dump()))

    @workflow.update(
        name=MessageName.ACTIVATE_UPDATE,
        description="Start an INITIAL (scheduled) enrollment now; refused once it has started or terminated.",
    )
    async def activate_update(self, request: ActivateRequest) -> EnrollmentView:
        return await self._run_update(ActivateCommand(**request.model_dump()))

    @activate_update.validator
    def _validate_activate(self, request: ActivateRequest) -> None:
        self._validate(ActivateCommand(**request.model_dump()))

    @workflow.update(
        name=MessageName.REGISTRATION_UPDATE, description="Wait until the enrollment is registered; returns it."
    )
    async def registration_update(self) -> EnrollmentView:
        await workflow.wait_condition(lambda: self._settled or self.state.failure is not None)
        return self._view()
