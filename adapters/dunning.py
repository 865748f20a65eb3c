"""Dunning: each unpaid order's own recovery schedule, and the pure rules the workflow and the store share.

An order gets an :class:`OrderDunning` when it is made unpaid on a plan with a policy (or an adapter with a
default one): its steps with their times (due + offset), its open balance and whether its ``pause`` step holds
the enrollment PAUSED (overdue). Steps run in order at their times, or right after the previous one when their
time has passed; a hard decline skips the remaining ``retry_payment`` steps; a partial payment lowers the open
balance and skips nothing; paying the rest (or the order becoming CONFIRMED, FULFILLED or REJECTED) ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from adapters.domain import (
    DomainModel,
    Order,
    OrderStatus,
    PeriodWindow,
    ProductPlan,
    UsageCalculationType,
    UtcDatetime,
    isoformat_utc,
)
from adapters.dunning_policy import DunningAction, DunningPolicy


class Decline(StrEnum):
    """How a payment attempt failed: ``soft`` may succeed when retried, ``hard`` will not."""

    SOFT = "soft"
    HARD = "hard"


class StepStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"


class DunningStepState(DomainModel):
    """One step of an order's schedule: when it is due and whether it ran."""

    index: int = Field(ge=0, description="its position in the policy's steps, from 0")
    action: DunningAction
    at: UtcDatetime = Field(description="when it is due: the order's due time plus the step's offset")
    status: StepStatus = StepStatus.PENDING
    done_at: UtcDatetime | None = None


class OrderDunning(DomainModel):
    """An unpaid order's schedule, balance and hold on the enrollment."""

    order_id: str
    order_number: str
    due_at: UtcDatetime = Field(description="the period start (billed in advance) or the billing time (in arrears)")
    currency: str | None = None
    open_balance: int | None = Field(default=None, ge=0, description="minor units still to pay; None: no amount")
    steps: list[DunningStepState]
    paused: bool = Field(default=False, description="its pause step ran: it holds the enrollment PAUSED (overdue)")

    @property
    def next_step(self) -> DunningStepState | None:
        """The first step still to run (None: the schedule is through)."""
        return next((step for step in self.steps if step.status is StepStatus.PENDING), None)

    @property
    def steps_done(self) -> int:
        return sum(1 for step in self.steps if step.status is StepStatus.DONE)

    def with_step_done(self, index: int, at: datetime) -> OrderDunning:
        """This schedule with step ``index`` run at ``at`` (a pause step takes hold of the enrollment)."""
        steps = [
            step.model_copy(update={"status": StepStatus.DONE, "done_at": at}) if step.index == index else step
            for step in self.steps
        ]
        held = self.paused or self.steps[index].action is DunningAction.PAUSE
        return self.model_copy(update={"steps": steps, "paused": held})

    def after_hard_decline(self) -> OrderDunning:
        """This schedule without its remaining ``retry_payment`` steps (the others keep their times)."""
        steps = [
            step.model_copy(update={"status": StepStatus.SKIPPED})
            if step.status is StepStatus.PENDING and step.action is DunningAction.RETRY_PAYMENT
            else step
            for step in self.steps
        ]
        return self.model_copy(update={"steps": steps})


def policy_for(plan: ProductPlan, adapter_policy: DunningPolicy | None) -> DunningPolicy | None:
    """The policy of orders on ``plan``: the plan's own, else its adapter's default (None: no dunning)."""
    return plan.dunning if plan.dunning is not None else adapter_policy


def start_dunning(
    policy: DunningPolicy, order: Order, due_at: datetime, *, open_balance: int | None, currency: str | None
) -> OrderDunning:
    """The schedule of an unpaid ``order`` due at ``due_at``: every step pending at due + offset."""
    return OrderDunning(
        order_id=order.id,
        order_number=order.number,
        due_at=due_at,
        currency=currency,
        open_balance=open_balance,
        steps=schedule(policy, due_at),
    )


def schedule(policy: DunningPolicy, due_at: datetime) -> list[DunningStepState]:
    """The steps of an order due at ``due_at``, each pending at due + its offset."""
    return [
        DunningStepState(index=index, action=step.action, at=due_at + step.offset)
        for index, step in enumerate(policy.steps)
    ]


def due_time(plan: ProductPlan, period: PeriodWindow) -> datetime | None:
    """When the order of ``period`` is due: its start (billed in advance) or its end, when it is billed in arrears
    (metered); None for a trial, which has no order."""
    if period.is_trial:
        return None
    return period.end if plan.usage_calculation_type is UsageCalculationType.METERED else period.start


def due_step(dunning: list[OrderDunning], now: datetime) -> tuple[OrderDunning, DunningStepState] | None:
    """The step to run next by ``now``: the earliest due one over all orders (each order's steps in order)."""
    due = [(entry, step) for entry in dunning if (step := entry.next_step) is not None and step.at <= now]
    return min(due, key=lambda pair: (pair[1].at, pair[0].due_at, pair[0].order_id)) if due else None


def next_step_at(dunning: list[OrderDunning]) -> datetime | None:
    """When the next step of any order is due (None: none is pending)."""
    moments = [step.at for entry in dunning if (step := entry.next_step) is not None]
    return min(moments) if moments else None


def holds_pause(dunning: list[OrderDunning]) -> bool:
    """Whether an order's pause step holds the enrollment PAUSED (overdue): it stays so until none does."""
    return any(entry.paused for entry in dunning)


def ends_dunning(status: OrderStatus) -> bool:
    """Whether an order in this status is no longer chased: paid, fulfilled, or rejected (it will not be paid)."""
    return status is not OrderStatus.PENDING


def payment_problem(order: Order, open_balance: int | None, amount: int) -> str | None:
    """Why a payment of ``amount`` cannot be recorded for ``order`` with ``open_balance`` left (None: it can)."""
    name = f"order {order.number} ({order.id})"
    if order.status is not OrderStatus.PENDING:
        return f"{name} is {order.status}: it has nothing open to pay"
    if open_balance is None:
        return f"{name} has no amount: record its payment with its status (CONFIRMED)"
    if amount > open_balance:
        return f"payment of {amount} is above the open balance of {name}: {open_balance}"
    return None


def describe_step(entry: OrderDunning, step: DunningStepState) -> str:
    """How the log reads a step: ``dunning step 2 of 4 for order O-…: retry_payment (open 1500 CHF)``."""
    balance = "" if entry.open_balance is None else f" (open {format_amount(entry.open_balance, entry.currency)})"
    return f"dunning step {step.index + 1} of {len(entry.steps)} for order {entry.order_number}: {step.action}{balance}"


def format_amount(amount: int, currency: str | None) -> str:
    """``1500 CHF`` (minor units, as stored), or ``1500`` without a currency."""
    return f"{amount} {currency}" if currency else str(amount)


def dunning_summary(entry: OrderDunning, when: Callable[[datetime], str] = isoformat_utc) -> str:
    """One line per order in dunning (CLI status, Web UI details): balance, steps done, the next step and its time."""
    balance = "no amount" if entry.open_balance is None else f"open {format_amount(entry.open_balance, entry.currency)}"
    step = entry.next_step
    upcoming = "no step left" if step is None else f"next {step.action} at {when(step.at)}"
    held = ", holds the pause" if entry.paused else ""
    return (
        f"order {entry.order_number}: {balance}, {entry.steps_done} of {len(entry.steps)} steps done, {upcoming}{held}"
    )


# --- workflow ⇄ activity contracts --------------------------------------------------------------------


class DunningStepRequest(DomainModel):
    """Run step ``index`` of the order's dunning schedule (idempotent: a step runs once)."""

    enrollment_id: str
    order_id: str
    index: int = Field(ge=0)
    now: UtcDatetime


class DunningStepResult(DomainModel):
    """The order's schedule after the step (None: it had ended, the step did not run)."""

    dunning: OrderDunning | None = None


class PaymentRequest(DomainModel):
    """Record a payment (``received``) or a failed attempt (``failed``) for an order, once per ``key``."""

    enrollment_id: str
    order_id: str
    key: str = Field(min_length=1, max_length=200)
    received: int | None = Field(default=None, ge=1)
    failed: Decline | None = None
    code: str | None = None
    now: UtcDatetime


class PaymentResult(DomainModel):
    """The order after the payment, and its dunning (None: none is running any more)."""

    order: Order
    dunning: OrderDunning | None = None
    info: str = Field(default="", description="the log entry it wrote")
