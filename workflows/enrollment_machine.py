"""The enrollment's state machine: boundaries reached and commands applied, on the workflow's one state model.

:class:`EnrollmentMachine` holds no state of its own beyond the update outcomes of one workflow task: it
reads and changes :class:`~workflows.enrollment_state.EnrollmentWorkflowState` and stores every change
through the activities. The workflow (:mod:`workflows.enrollment`) owns the Temporal surface around it:
the loop, messages, queries, continue-as-new and what operators see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from adapters.domain import (
        Enrollment,
        EnrollmentLogEntry,
        EnrollmentStatus,
        Order,
        OrderStatus,
        PauseReason,
        Period,
        ScheduledAction,
        StatusChange,
    )
    from adapters.dunning import ends_dunning, holds_pause, next_step_at
    from adapters.lifecycle import (
        ActivateCommand,
        AdvanceRequest,
        CatchUpCommand,
        ChangeCommand,
        Command,
        ErrorType,
        OrderStatusCommand,
        OrderStatusRequest,
        PauseCommand,
        QueuedCommand,
        ResumeCommand,
        ScheduledActionRequest,
        StatusChangeRequest,
        TerminateCommand,
    )
    from adapters.rules import (
        FirstPayment,
        creates_periods,
        first_payment,
        next_wake_up,
        order_voided_by_termination,
    )
    from workflows import activity_calls, dunning
    from workflows.change_steps import apply_change, apply_pending
    from workflows.enrollment_state import CommandOutcome, EnrollmentWorkflowState
    from workflows.transitions import rejection

BOUNDARIES_BEFORE_COMMANDS = "boundaries-before-commands"
SCHEDULED_ACTIONS_STORED = "scheduled-actions-stored"
WAKE_UP_STORED = "wake-up-stored"
TERMINATION_VOIDS_ORDER = "termination-voids-unpaid-order"
REFUSED_ORDER_CHANGES = (ErrorType.ORDER_NOT_FOUND, ErrorType.INVALID_TRANSITION)


def final_failure(error: ActivityError | ApplicationError) -> ApplicationError | None:
    """The non-retryable failure an activity ended with (a local activity raises it bare), else None."""
    cause = error.cause if isinstance(error, ActivityError) else error
    return cause if isinstance(cause, ApplicationError) and cause.non_retryable else None


class CommandRefused(Exception):
    """A command found inapplicable while it was applied; an update that sent it fails with this."""

    def __init__(self, message: str, error_type: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


class EnrollmentMachine:
    """Reaches boundaries and applies commands on ``state``; every change is stored before it is applied."""

    def __init__(self, state: EnrollmentWorkflowState) -> None:
        self.state = state
        self.applied: list[QueuedCommand] = []
        self._appliers: dict[str, Callable[[Any, datetime], Awaitable[None]]] = {
            "pause": self._pause,
            "resume": self._resume,
            "terminate": self.terminate,
            "order_status": self._order_status,
            "catch_up": self._catch_up,
            "activate": self._activate,
            "payment": lambda body, at: dunning.apply_payment(self, body, at),
            "change": self._change,
        }

    @property
    def enrollment(self) -> Enrollment:
        if self.state.enrollment is None:
            raise ApplicationError("the enrollment is not registered yet", type=ErrorType.ENROLLMENT_NOT_FOUND)
        return self.state.enrollment

    # --- boundaries -------------------------------------------------------------------------------

    async def reach_boundaries(self, now: datetime, *, before_command: bool = False) -> None:
        """Everything due by ``now``: the start, a scheduled pause/termination, periods, deadlines.

        A boundary that can never be reached (an error retrying cannot fix) puts the enrollment in need of
        attention instead of failing the workflow: it keeps answering queries and obeying commands, and tries
        again when asked to catch up (order generator, ``catch_up``) or when a command moves it.
        """
        try:
            await self._reach_boundaries(now, before_command=before_command)
        except (ActivityError, ApplicationError) as error:
            cause = final_failure(error)
            if cause is None:
                raise
            self._needs_attention(cause.message, cause.type)

    def _needs_attention(self, message: str, error_type: str | None) -> None:
        if self.state.attention != message:
            workflow.logger.error("enrollment needs attention: %s", message)
        self.state.attention, self.state.attention_type = message, error_type
        self.state.needs_advance = False

    async def _reach_boundaries(self, now: datetime, *, before_command: bool) -> None:
        enrollment = self.enrollment
        if enrollment.status is EnrollmentStatus.INITIAL and now >= enrollment.anchor:
            if enrollment.activate_on_payment:
                await self._await_first_payment(now, reconcile=not before_command)
            else:
                started = StatusChange(
                    status=EnrollmentStatus.ACTIVE, event_key=self._key(), at=enrollment.anchor, info="started"
                )
                await self._change_status(started)
                self.state.needs_advance = True
        scheduled = self.state.scheduled
        if scheduled is not None and now >= scheduled.at:
            await self._schedule(None)
            await self._apply_scheduled(scheduled)
            self._store_wake_up()
        if not before_command and self.enrollment.status is not EnrollmentStatus.TERMINATED:
            await dunning.run_due_steps(self, now)
        pending = self.enrollment.pending_change
        if pending is not None and now >= pending.at:
            await apply_pending(self, pending)
        if self._advance_due(now):
            await self._advance(now, reconcile=not before_command)

    async def _await_first_payment(self, now: datetime, *, reconcile: bool) -> None:
        """Make the first period and its order, then start once it is paid, or end when it cannot be."""
        standing = first_payment(self.enrollment, now)
        if standing is FirstPayment.MAKE_PERIOD:
            await self._advance(now, reconcile=reconcile, first_period_only=True)
            standing = first_payment(self.enrollment, now)
        if standing is FirstPayment.PAID:
            change = StatusChange(
                status=EnrollmentStatus.ACTIVE, event_key=self._key(), at=now, info="started: its first order is paid"
            )
            await self._change_status(change)
            self.state.needs_advance = True
        elif standing is FirstPayment.REJECTED:
            await self.terminate(TerminateCommand(reason="its first order was rejected", immediately=True), now)
        elif standing is FirstPayment.EXPIRED:
            first = self.enrollment.periods[0]
            reason = "its first order was not paid by the end of its first period"
            await self.terminate(TerminateCommand(reason=reason, immediately=True), first.end)
            if first.order_id is not None:  # its period is over, so the termination did not reject it
                await self._reject_unpaid(first.order_id, first.end)

    async def _apply_scheduled(self, scheduled: ScheduledAction) -> None:
        reason = f": {scheduled.reason}" if scheduled.reason else ""
        if scheduled.kind == "pause":
            change = StatusChange(
                status=EnrollmentStatus.PAUSED,
                event_key=self._key(),
                at=scheduled.at,
                info=f"paused at period end{reason}",
                pause_reason=PauseReason.MANUAL,
            )
        else:
            change = StatusChange(
                status=EnrollmentStatus.TERMINATED,
                event_key=self._key(),
                at=scheduled.at,
                info=f"terminated at period end{reason}",
                expires=scheduled.at,
            )
        await self._change_status(change)

    def creates_periods(self) -> bool:
        return creates_periods(self.enrollment.status, self.enrollment.pause_reason)

    def _advance_due(self, now: datetime) -> bool:
        billing_due = self.state.billing_due
        if self.enrollment.status is EnrollmentStatus.TERMINATED:
            return self.state.needs_advance or (billing_due is not None and billing_due <= now)
        if self.enrollment.status is EnrollmentStatus.INITIAL:
            return False
        if self.state.needs_advance:
            return True
        if self.state.attention is not None:
            return False  # tried again only when asked (needs_advance)
        boundaries = (self.next_period_boundary(), self.state.deadline, billing_due)
        due = [moment for moment in boundaries if moment is not None]
        return any(moment <= now for moment in due)

    def next_period_boundary(self) -> datetime | None:
        return self.state.next_period_start if self.creates_periods() else None

    async def _advance(self, now: datetime, *, reconcile: bool, first_period_only: bool = False) -> None:
        enrollment = self.enrollment
        latest = enrollment.latest_period
        result = await activity_calls.advance(
            AdvanceRequest(
                enrollment_id=enrollment.id,
                now=now,
                create_periods=self.creates_periods() or first_period_only,
                first_period_only=first_period_only,
                known_through=latest.start if latest else None,
                open_since=next(
                    (period.start for period in enrollment.periods if period.order_id is None and not period.billed_at),
                    None,
                ),
                status=enrollment.status,
                pause_reason=enrollment.pause_reason,
                reconcile=reconcile,
                dunning_at=next_step_at(self.state.dunning),
            )
        )
        if result.terminated is not None:
            self._take_over_termination(result.terminated, "the database has it TERMINATED")
            return
        self.state.attention = self.state.attention_type = None
        self.merge([*result.periods, *result.billed], result.orders)
        if result.periods or result.billed:
            self.enrollment.updated = now  # as stored: the billing transaction stamps the row with ``now``
        self.state.periods_this_run += len(result.periods)
        self.state.next_period_start = result.next_period_start
        self.state.deadline = result.deadline
        self.state.billing_due = result.billing_due
        if result.dunning is not None:
            self.state.dunning = result.dunning
        # A catch-up that hit its per-call limit leaves periods due: go again without sleeping.
        self.state.needs_advance = bool(
            self.creates_periods() and result.next_period_start is not None and result.next_period_start <= now
        )
        status, reason = self.enrollment.status, self.enrollment.pause_reason
        # Overdue: the adapter says so, or an order's dunning paused the enrollment and is not through.
        overdue = result.overdue or holds_pause(self.state.dunning)
        if status is EnrollmentStatus.ACTIVE and overdue:
            await self._change_status(
                StatusChange(
                    status=EnrollmentStatus.PAUSED,
                    event_key=self._key(),
                    at=now,
                    info="payment overdue",
                    pause_reason=PauseReason.OVERDUE,
                )
            )
        elif status is EnrollmentStatus.PAUSED and reason is PauseReason.OVERDUE and not overdue:
            await self._change_status(
                StatusChange(status=EnrollmentStatus.ACTIVE, event_key=self._key(), at=now, info="payment received")
            )
            self.state.needs_advance = True

    def merge(self, periods: list[Period], orders: list[Order]) -> None:
        """Take ``periods`` (a known start: its new version) and the orders not known yet."""
        enrollment = self.enrollment
        # A known period comes back when it was billed in arrears: take the new version (order, billed_at).
        returned = {period.start: period for period in periods}
        merged = [returned.pop(period.start, period) for period in enrollment.periods]
        enrollment.periods = sorted([*merged, *returned.values()], key=lambda period: period.start)
        known_orders = {order.id for order in self.state.orders}
        self.state.orders.extend(order for order in orders if order.id not in known_orders)

    def next_wake_up(self) -> datetime | None:
        state = self.state
        return next_wake_up(
            self.enrollment,
            state.scheduled,
            next_period_start=state.next_period_start,
            deadline=state.deadline,
            billing_due=state.billing_due,
            needs_attention=state.attention is not None,
            dunning_at=next_step_at(state.dunning),
        )

    def _store_wake_up(self) -> None:
        """Advance after a change of status or schedule: the advance stores the new next wake-up."""
        if workflow.patched(WAKE_UP_STORED):
            self.state.needs_advance = True

    # --- commands ---------------------------------------------------------------------------------

    async def apply_commands(self) -> None:
        """Apply the queued commands in arrival order; refused ones get their outcome at once."""
        while self.state.commands:
            command = self.state.commands.pop(0)
            # Boundaries that passed before the command arrived come first (a pause 1 ms after a period
            # boundary still gets that period), also when a late workflow task sees both at once.
            if workflow.patched(BOUNDARIES_BEFORE_COMMANDS):
                await self.reach_boundaries(command.at, before_command=True)
            problem = self.rejection(command.body, command.at)
            refusal = None if problem is None else CommandRefused(problem, ErrorType.INVALID_TRANSITION)
            if refusal is None:
                try:
                    await self._appliers[command.body.kind](command.body, command.at)
                except CommandRefused as refused:
                    refusal = refused
                except (ActivityError, ApplicationError) as error:
                    cause = final_failure(error)
                    if cause is None:
                        raise
                    refusal = CommandRefused(cause.message, cause.type)
            if refusal is not None:
                if not command.from_update:
                    workflow.logger.warning("ignored %s: %s", command.body.kind, refusal.message)
                self.finish(command, refusal.message, refusal.error_type)
                continue
            self.applied.append(command)

    def rejection(self, body: Command, at: datetime) -> str | None:
        state = self.state
        return rejection(
            state.enrollment,
            state.scheduled,
            state.orders,
            body,
            at,
            all_orders_known=not state.history_trimmed,
            dunning=state.dunning,
        )

    def finish(self, command: QueuedCommand, error: str | None, error_type: str | None) -> None:
        """Record an update's outcome (None error: applied); its handler is waiting for it."""
        if command.from_update:
            self.state.outcomes[command.id] = CommandOutcome(error=error, error_type=error_type)

    async def _change(self, body: ChangeCommand, at: datetime) -> None:
        await apply_change(self, body, at)

    async def _catch_up(self, body: CatchUpCommand, at: datetime) -> None:
        self.state.needs_advance = self.enrollment.status is not EnrollmentStatus.TERMINATED

    async def _activate(self, body: ActivateCommand, at: datetime) -> None:
        """Start an INITIAL enrollment now: ACTIVE, anchored at ``at``, its first period created at once.

        One waiting for its first payment has its first period already: it keeps it (and its anchor), and
        its order stays due.
        """
        info = f"activated: {body.reason}" if body.reason else "activated"
        anchor = None if self.enrollment.periods else at
        await self._change_status(
            StatusChange(status=EnrollmentStatus.ACTIVE, event_key=self._key(), at=at, info=info, anchor=anchor)
        )
        self.state.needs_advance = True

    def _current_period_end(self, at: datetime) -> datetime | None:
        latest = self.enrollment.latest_period
        return latest.end if latest is not None and latest.end > at else None

    async def _pause(self, body: PauseCommand, at: datetime) -> None:
        period_end = self._current_period_end(at)
        self._store_wake_up()
        if body.at_period_end and period_end is not None and self.enrollment.status is EnrollmentStatus.ACTIVE:
            await self._schedule(ScheduledAction(kind="pause", at=period_end, reason=body.reason))
            return
        await self._schedule(None)
        info = f"paused: {body.reason}" if body.reason else "paused"
        await self._change_status(
            StatusChange(
                status=EnrollmentStatus.PAUSED, event_key=self._key(), at=at, info=info, pause_reason=PauseReason.MANUAL
            )
        )

    async def _resume(self, body: ResumeCommand, at: datetime) -> None:
        reason = f": {body.reason}" if body.reason else ""
        withdrawn = self.state.scheduled
        if withdrawn is not None:
            await self._schedule(None)
            self._store_wake_up()
            if self.enrollment.status is EnrollmentStatus.ACTIVE:
                workflow.logger.info("withdrew the %s scheduled for %s", withdrawn.kind, withdrawn.at.isoformat())
                return
        # The running period continues; once it has ended, the resume time anchors a new schedule.
        anchor = None if self._current_period_end(at) is not None else at
        await self._change_status(
            StatusChange(
                status=EnrollmentStatus.ACTIVE, event_key=self._key(), at=at, info=f"resumed{reason}", anchor=anchor
            )
        )
        self.state.needs_advance = True

    async def terminate(self, body: TerminateCommand, at: datetime) -> None:
        """Terminate now (or schedule it at period end): access to the paid period's end unless ``immediately``."""
        period_end = self._current_period_end(at)
        status = self.enrollment.status
        self._store_wake_up()
        if body.at_period_end and period_end is not None and status is EnrollmentStatus.ACTIVE:
            await self._schedule(ScheduledAction(kind="terminate", at=period_end, reason=body.reason))
            return
        await self._schedule(None)
        # Access runs to the end of what was paid, unless asked otherwise or already suspended.
        keeps_access = not body.immediately and status is EnrollmentStatus.ACTIVE and period_end is not None
        expires = period_end if keeps_access and period_end is not None else at
        info = f"terminated: {body.reason}" if body.reason else "terminated"
        await self._change_status(
            StatusChange(status=EnrollmentStatus.TERMINATED, event_key=self._key(), at=at, info=info, expires=expires)
        )
        voided = order_voided_by_termination(self.enrollment, self.state.orders, at)
        if voided is not None and workflow.patched(TERMINATION_VOIDS_ORDER):
            await self._reject_unpaid(voided.id, at)

    async def _reject_unpaid(self, order_id: str, at: datetime) -> None:
        """Reject an order that will not be paid for; one paid meanwhile (the database knew first) stays paid."""
        try:
            await self._order_status(OrderStatusCommand(order_id=order_id, status=OrderStatus.REJECTED), at)
        except CommandRefused as refused:
            workflow.logger.warning("kept order %s: %s", order_id, refused.message)

    async def _order_status(self, body: OrderStatusCommand, at: datetime) -> None:
        enrollment = self.enrollment
        try:
            updated = await activity_calls.apply_order_status(
                OrderStatusRequest(enrollment_id=enrollment.id, order_id=body.order_id, status=body.status, now=at)
            )
        except ActivityError as error:
            # Only for an order older than what this run carries: the store checked it in the database.
            cause = error.cause
            if not isinstance(cause, ApplicationError) or cause.type not in REFUSED_ORDER_CHANGES:
                raise
            raise CommandRefused(cause.message, cause.type) from None
        self.order_changed(updated)

    def order_changed(self, updated: Order) -> None:
        """Take an order's stored change over: its status on its period, and its dunning ended once paid or
        rejected; an overdue pause is then decided again (by the advance, with the adapter)."""
        enrollment = self.enrollment
        self.state.orders = [updated if order.id == updated.id else order for order in self.state.orders]
        for period in enrollment.periods:
            if period.order_id == updated.id:
                period.order_status = updated.status
        if ends_dunning(updated.status):
            dunning.forget(self, updated.id)
        if enrollment.status is EnrollmentStatus.PAUSED and enrollment.pause_reason is PauseReason.OVERDUE:
            self.state.needs_advance = True  # the adapter decides whether payment lifts the overdue pause

    def _take_over_termination(self, expires: datetime, why: str) -> None:
        """The store says TERMINATED, which is final: so does the workflow from now on (nothing is stored)."""
        enrollment = self.enrollment
        workflow.logger.warning("enrollment is TERMINATED in the database; taking it over: %s", why)
        enrollment.status, enrollment.pause_reason, enrollment.expires = EnrollmentStatus.TERMINATED, None, expires
        enrollment.updated = workflow.now()
        enrollment.log.append(
            EnrollmentLogEntry(at=workflow.now(), status=EnrollmentStatus.TERMINATED, info=f"terminated: {why}")
        )
        self.state.scheduled = None
        self.state.needs_advance = False

    async def _schedule(self, scheduled: ScheduledAction | None) -> None:
        """Set (or clear) the pause or termination at period end, and store it, so a rebuilt workflow keeps it."""
        if scheduled == self.state.scheduled:
            return
        self.state.scheduled = scheduled
        if workflow.patched(SCHEDULED_ACTIONS_STORED):
            request = ScheduledActionRequest(enrollment_id=self.enrollment.id, scheduled=scheduled)
            await activity_calls.store_scheduled_action(request)

    @staticmethod
    def _key() -> str:
        """A new event key: what makes storing a status change idempotent."""
        return str(workflow.uuid4())

    async def _change_status(self, change: StatusChange) -> None:
        """Store ``change`` (its log entry included), then apply it to the workflow's own state."""
        enrollment = self.enrollment
        await activity_calls.store_status_change(
            StatusChangeRequest(enrollment_id=enrollment.id, **change.model_dump())
        )
        for name, value in change.changed_fields().items():
            setattr(enrollment, name, value)
        enrollment.updated = change.at
        enrollment.log.append(EnrollmentLogEntry(at=change.at, status=change.status, info=change.info))
        if change.status is EnrollmentStatus.TERMINATED:
            self.state.dunning = []  # the store ended every schedule with the termination
