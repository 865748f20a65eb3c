"""The enrollment workflow's activities: every side effect of an enrollment's lifecycle.

Each activity is one idempotent unit of work on business keys (enrollment id, period start, event key, order
id): a retry after a commit finds the rows it wrote and returns them instead of writing again. "Now" always
comes from the workflow. Failures that retrying cannot fix are non-retryable ``ApplicationError``s typed with
:class:`adapters.lifecycle.ErrorType`; anything else (a database that is down) raises and Temporal retries it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.change_activities import ChangeActivities
from activities.faults import FaultPoint, fault_injector
from activities.persistence import (
    EnrollmentConflict,
    EnrollmentNotFound,
    EnrollmentTerminated,
    MakeOrder,
    OrderNotFound,
    PersistenceError,
    ProductNotFound,
    Store,
)
from adapters.base import EnrollmentAdapter, EnrollmentContext, EnrollmentServices
from adapters.calendar import CalendarRangeError
from adapters.director import EnrollmentDirector, NoAdapterForPlanError, UnknownAdapterError
from adapters.domain import (
    Enrollment,
    EnrollmentStatus,
    Order,
    OrderConfiguration,
    OrderPosition,
    OrderStatus,
    Period,
    PeriodWindow,
    Product,
    StatusChange,
    describe_status,
)
from adapters.dunning import (
    DunningStepRequest,
    DunningStepResult,
    OrderDunning,
    PaymentRequest,
    PaymentResult,
    next_step_at,
    policy_for,
)
from adapters.dunning_policy import DunningPolicy
from adapters.lifecycle import (
    ActivityName,
    AdvanceRequest,
    AdvanceResult,
    ErrorType,
    OrderStatusRequest,
    RegisterRequest,
    RegisterResult,
    ScheduledActionRequest,
    StatusChangeRequest,
    recent_history,
)
from adapters.pricing import price_problem, priced_order
from adapters.rules import next_wake_up, plan_product_problem, start_problem, stored_plan_problem

MAX_PERIODS_PER_ADVANCE = 100
"""Catching up after a long outage creates at most this many periods per call (the workflow calls again)."""


def non_retryable(error_type: ErrorType, message: str) -> ApplicationError:
    return ApplicationError(message, type=str(error_type), non_retryable=True)


class StoreServices:
    """The I/O adapters may use in their async actions, backed by the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def find_order(self, order_id: str) -> Order | None:
        return await self._store.billing.get_order(order_id)

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        return await self._store.usage.units(enrollment_id, start, end)


class EnrollmentActivities:
    """Activities bound to one store and one director (build one per worker)."""

    def __init__(self, store: Store, director: EnrollmentDirector) -> None:
        self.store = store
        self.director = director
        self.services = StoreServices(store)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [
            self.register_enrollment,
            self.advance_enrollment,
            self.change_enrollment_status,
            self.set_scheduled_action,
            self.apply_order_status,
            self.run_dunning_step,
            self.record_payment,
            ChangeActivities(self.store).change_enrollment,
        ]

    async def _plan_product(self, product_id: str, version: int | None = None) -> Product:
        try:
            product = await self.store.products.get(product_id, version)
        except ValidationError as error:  # a row written by another tool: retrying cannot fix it
            raise non_retryable(*stored_plan_problem(product_id, error)) from None
        problem = plan_product_problem(product_id, product)
        if problem is not None:
            raise non_retryable(*problem)
        assert product is not None
        return product

    async def _enrollment(self, enrollment_id: str, *, recent: bool = False) -> Enrollment:
        """The enrollment: in full, or ``recent`` (what a period's work needs, in bounded time)."""
        enrollments = self.store.enrollments
        enrollment = await (enrollments.get_recent(enrollment_id) if recent else enrollments.get(enrollment_id))
        if enrollment is None:
            raise non_retryable(ErrorType.ENROLLMENT_NOT_FOUND, f"enrollment {enrollment_id!r} does not exist")
        return enrollment

    def _actions(
        self,
        enrollment: Enrollment,
        product: Product,
        now: datetime,
        adapter_key: str,
        services: EnrollmentServices | None = None,
    ) -> EnrollmentAdapter:
        context = EnrollmentContext(enrollment=enrollment, product=product, now=now, services=services or self.services)
        try:
            return self.director.actions(context, adapter_key)
        except UnknownAdapterError as error:
            raise non_retryable(ErrorType.UNKNOWN_ADAPTER, str(error)) from None

    @activity.defn(name=ActivityName.REGISTER)
    async def register_enrollment(self, request: RegisterRequest) -> RegisterResult:
        """Persist the enrollment (idempotent by id) and resolve its adapter; or say why it cannot be.

        A refusal (unknown product, invalid start, other terms under the same id, …) is a result, not a
        failure: the workflow closes with it and the caller gets it typed. An enrollment that exists already
        (a rebuilt workflow) comes back with its recent history and is not checked again. One unit of work.
        """
        try:
            return await self.store.transactions.unit(lambda: self._register(request))
        except ApplicationError as error:
            if not error.non_retryable:
                raise
            activity.logger.info("registration of %s refused: %s", request.enrollment_id, error.message)
            return RegisterResult(refused=error.message, refused_type=error.type)

    async def _register(self, request: RegisterRequest) -> RegisterResult:
        product = await self._plan_product(request.terms.product_id)
        plan = product.require_plan()
        try:
            adapter = self.director.resolve(plan)
        except NoAdapterForPlanError as error:
            raise non_retryable(ErrorType.NO_ADAPTER, f"product {product.id!r}: {error}") from None
        if not await self.store.enrollments.exists(request.enrollment_id):
            problem = start_problem(
                plan,
                request.anchor,
                request.terms.timezone,
                request.now,
                backdate=request.backdate,
                activate_on_payment=request.terms.activate_on_payment,
            )
            if problem is not None:
                raise non_retryable(ErrorType.INVALID_START, problem)
            no_price = price_problem(product, request.terms.currency_code)
            if no_price is not None:
                raise non_retryable(ErrorType.NO_PRICE, no_price)
        try:
            enrollment = await self.store.enrollments.create(
                request.enrollment_id,
                request.terms,
                anchor=request.anchor,
                adapter_key=adapter.key,
                now=request.now,
                # Due now: active at once; a future start, or one that waits for payment, keeps it INITIAL.
                status=(
                    EnrollmentStatus.ACTIVE
                    if request.anchor <= request.now and not request.terms.activate_on_payment
                    else EnrollmentStatus.INITIAL
                ),
            )
        except EnrollmentConflict as error:
            raise non_retryable(ErrorType.ENROLLMENT_CONFLICT, str(error)) from None
        except ProductNotFound as error:
            raise non_retryable(ErrorType.PRODUCT_NOT_FOUND, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        dunning = await self.store.dunning.open_for(enrollment.id)
        return RegisterResult(enrollment=recent_history(enrollment), adapter_key=adapter.key, dunning=dunning)

    @activity.defn(name=ActivityName.ADVANCE)
    async def advance_enrollment(self, request: AdvanceRequest) -> AdvanceResult:
        """Create every period due by ``now`` with its order; report the next boundary and overdue.

        One unit of work (one transaction). The store is first brought in line with the workflow's status (they
        differ after a Temporal reset), unless the store has the enrollment TERMINATED, which is final: then
        nothing is made and the result says so. A period that can never be made (the schedule leaves the
        calendar, an order the domain refuses) is a non-retryable ``InvalidSchedule`` (needs attention).
        """
        result = await self.store.transactions.unit(lambda: self._advance_in_unit(request))
        if result.periods or result.billed:
            fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return result

    async def _advance_in_unit(self, request: AdvanceRequest) -> AdvanceResult:
        enrollment = await self._enrollment(request.enrollment_id, recent=True)
        if enrollment.status is EnrollmentStatus.TERMINATED and request.status not in (None, enrollment.status):
            return AdvanceResult(
                periods=[],
                orders=[],
                next_period_start=None,
                overdue=False,
                deadline=None,
                terminated=enrollment.expires,
            )
        if (
            request.reconcile
            and request.status is not None
            and (request.status, request.pause_reason) != (enrollment.status, enrollment.pause_reason)
        ):
            enrollment = await self._reconcile(enrollment, request)
        try:
            return await self._advance(enrollment, request)
        except (CalendarRangeError, OverflowError, ValidationError, ValueError) as error:
            if isinstance(error, PersistenceError):
                raise
            message = f"enrollment {request.enrollment_id!r}: its next period cannot be made: {error}"
            raise non_retryable(ErrorType.INVALID_SCHEDULE, " ".join(message.split())) from None

    async def _reconcile(self, enrollment: Enrollment, request: AdvanceRequest) -> Enrollment:
        """Store the workflow's status where the store says otherwise (its workflow was reset)."""
        assert request.status is not None
        was = describe_status(enrollment.status, enrollment.pause_reason)
        change = StatusChange(
            status=request.status,
            pause_reason=request.pause_reason,
            event_key=f"reconciled@{request.now.isoformat()}",
            at=request.now,
            info=f"reconciled with its workflow (the database said {was})",
        )
        activity.logger.warning("enrollment %s: %s", enrollment.id, change.info)
        return await self.store.enrollments.change_status(enrollment.id, change)

    async def _advance(self, enrollment: Enrollment, request: AdvanceRequest) -> AdvanceResult:
        product = await self._plan_product(enrollment.product_id, enrollment.plan_version)
        adapter_key = enrollment.adapter_key or self.director.resolve(product.require_plan()).key
        actions = self._actions(enrollment, product, request.now, adapter_key)
        next_window = await actions.next_period()
        in_arrears = type(actions).bills_in_arrears
        dunning = policy_for(product.require_plan(), type(actions).dunning)
        created = 0
        written: dict[str, Order] = {}  # the orders add_period returns: not read back from the database
        while request.create_periods and next_window is not None and next_window.start <= request.now:
            if created >= MAX_PERIODS_PER_ADVANCE or (request.first_period_only and enrollment.periods):
                break
            # In arrears, a period's order is made by the billing pass below once the period has ended.
            wants_order = not (next_window.is_trial or in_arrears)
            order = await actions.configuration_for_order(next_window) if wants_order else None
            order = None if order is None else priced_order(order, product, enrollment.currency_code)
            paid = checkout_paid_order(enrollment, next_window, order, in_arrears=in_arrears)
            period, made = await self.store.billing.add_period(
                request.enrollment_id,
                next_window,
                paid or order,
                now=request.now,
                order_status=OrderStatus.PENDING if paid is None else OrderStatus.CONFIRMED,
                dunning=dunning,
            )
            created += 1
            if made is not None:
                written[made.id] = made
            enrollment = enrollment.model_copy(update={"periods": [*enrollment.periods, period]})
            actions = self._actions(enrollment, product, request.now, adapter_key)
            next_window = await actions.next_period()
        if in_arrears:
            enrollment = await self._bill_in_arrears(enrollment, product, request.now, adapter_key, dunning)
            actions = self._actions(enrollment, product, request.now, adapter_key)

        def is_new(period: Period) -> bool:
            return request.known_through is None or period.start > request.known_through

        def newly_billed(period: Period) -> bool:
            # Billed by now but open in the workflow's eyes (a retried attempt finds it billed already).
            open_since = request.open_since
            return open_since is not None and period.start >= open_since and period.billed_at is not None

        new_periods = [period for period in enrollment.periods if is_new(period)]
        billed = [period for period in enrollment.periods if not is_new(period) and newly_billed(period)]
        orders = await self._orders_of([*new_periods, *billed], written)
        open_dunning = await self._open_dunning(enrollment.id, dunning, request.known_through, new_periods or billed)
        result = AdvanceResult(
            periods=new_periods,
            orders=orders,
            next_period_start=next_window.start if next_window is not None else None,
            overdue=await actions.is_overdue(),
            deadline=type(actions).deadline_after(enrollment, request.now),
            billed=billed,
            billing_due=_billing_due(enrollment, request.now) if in_arrears else None,
            dunning=open_dunning,
        )
        wake_up = next_wake_up(
            enrollment,
            enrollment.scheduled,
            next_period_start=result.next_period_start,
            deadline=result.deadline,
            billing_due=result.billing_due,
            dunning_at=request.dunning_at if open_dunning is None else next_step_at(open_dunning),
        )
        if wake_up != enrollment.next_wake_up:
            await self.store.enrollments.set_next_wake_up(enrollment.id, wake_up)
        return result

    async def _bill_in_arrears(
        self, enrollment: Enrollment, product: Product, now: datetime, adapter_key: str, dunning: DunningPolicy | None
    ) -> Enrollment:
        """Bill every period whose service has ended and that is not billed yet, oldest first.

        For each one the adapter's ``configuration_for_order`` makes the order (or None: nothing to bill)
        inside :meth:`BillingRepository.bill_period`, which marks the period billed either way, so it is
        never asked again and a retry creates no second order. The adapter reads the usage through the
        billing transaction's own session. Returns the updated snapshot.
        """
        for period in list(enrollment.periods):
            if _is_closed(period) or period.end > now:
                continue
            make_order = self._order_maker(enrollment, product, now, adapter_key)
            stored, _ = await self.store.billing.bill_period(
                enrollment.id, period.start, make_order, now=now, dunning=dunning
            )
            periods = [stored if known.start == stored.start else known for known in enrollment.periods]
            enrollment = enrollment.model_copy(update={"periods": periods})
        return enrollment

    def _order_maker(self, enrollment: Enrollment, product: Product, now: datetime, adapter_key: str) -> MakeOrder:
        """The adapter's ``configuration_for_order`` for ``enrollment``, on the services it is handed."""

        async def make_order(window: PeriodWindow, services: EnrollmentServices) -> OrderConfiguration | None:
            actions = self._actions(enrollment, product, now, adapter_key, services)
            order = await actions.configuration_for_order(window)
            return None if order is None else priced_order(order, product, enrollment.currency_code)

        return make_order

    async def _open_dunning(
        self, enrollment_id: str, policy: DunningPolicy | None, known_through: datetime | None, made: list[Period]
    ) -> list[OrderDunning] | None:
        """The enrollment's running schedules, read when they may have changed: orders were made on a plan with a
        policy, or the workflow is new to them (its first advance). None: not read, the workflow's are current."""
        if known_through is not None and (policy is None or not made):
            return None
        return await self.store.dunning.open_for(enrollment_id)

    async def _orders_of(self, periods: list[Period], written: dict[str, Order]) -> list[Order]:
        """The orders of ``periods`` by period start: those this call wrote as they are, the others (an earlier
        attempt's, billed in arrears) read one by one — not all of the enrollment's orders every period."""
        orders: list[Order] = []
        for period in sorted(periods, key=lambda period: period.start):
            if period.order_id is None:
                continue
            order = written.get(period.order_id) or await self.store.billing.get_order(period.order_id)
            if order is not None:
                orders.append(order)
        return orders

    @activity.defn(name=ActivityName.CHANGE_STATUS)
    async def change_enrollment_status(self, request: StatusChangeRequest) -> None:
        """Record a status change with its reason in the enrollment's log (idempotent by event key).

        An enrollment the store has TERMINATED refuses with ``EnrollmentTerminated`` and its expiry as the
        error's details, so the workflow can take the termination over.
        """
        try:
            await self.store.enrollments.change_status(request.enrollment_id, request)
        except EnrollmentNotFound as error:
            raise non_retryable(ErrorType.ENROLLMENT_NOT_FOUND, str(error)) from None
        except EnrollmentTerminated as error:
            expires = None if error.expires is None else error.expires.isoformat()
            raise ApplicationError(
                str(error), expires, type=ErrorType.ENROLLMENT_TERMINATED, non_retryable=True
            ) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)

    @activity.defn(name=ActivityName.SET_SCHEDULED)
    async def set_scheduled_action(self, request: ScheduledActionRequest) -> None:
        """Store the pause or termination scheduled at period end, or that none is any more."""
        try:
            await self.store.enrollments.set_scheduled(request.enrollment_id, request.scheduled)
        except EnrollmentNotFound as error:
            raise non_retryable(ErrorType.ENROLLMENT_NOT_FOUND, str(error)) from None

    @activity.defn(name=ActivityName.APPLY_ORDER_STATUS)
    async def apply_order_status(self, request: OrderStatusRequest) -> Order:
        """Persist an order's new status; the order must belong to the enrollment and allow the change.

        The workflow checks the orders it carries; the store checks the change under the order's lock (a retry
        after the commit finds the status set already, which is allowed).
        """
        order = await self.store.billing.get_order(request.order_id)
        if order is None or order.enrollment_id != request.enrollment_id:
            raise non_retryable(
                ErrorType.ORDER_NOT_FOUND,
                f"order {request.order_id!r} is not an order of enrollment {request.enrollment_id!r}",
            )
        try:
            updated = await self.store.billing.set_order_status(request.order_id, request.status, now=request.now)
        except OrderNotFound as error:
            raise non_retryable(ErrorType.ORDER_NOT_FOUND, str(error)) from None
        except ValueError as error:
            raise non_retryable(ErrorType.INVALID_TRANSITION, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return updated

    @activity.defn(name=ActivityName.DUNNING_STEP)
    async def run_dunning_step(self, request: DunningStepRequest) -> DunningStepResult:
        """Run one step of an order's dunning schedule (log entry and events; once); None: its dunning ended."""
        try:
            dunning = await self.store.dunning.run_step(
                request.enrollment_id, request.order_id, request.index, now=request.now
            )
        except OrderNotFound as error:
            raise non_retryable(ErrorType.ORDER_NOT_FOUND, str(error)) from None
        except ValueError as error:
            raise non_retryable(ErrorType.INVALID_TRANSITION, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return DunningStepResult(dunning=dunning)

    @activity.defn(name=ActivityName.RECORD_PAYMENT)
    async def record_payment(self, request: PaymentRequest) -> PaymentResult:
        """Record a payment received or failed for an order of the enrollment (once per key); see
        :meth:`activities.persistence.payments.DunningRepository.record_payment`."""
        try:
            result = await self.store.dunning.record_payment(request)
        except OrderNotFound as error:
            raise non_retryable(ErrorType.ORDER_NOT_FOUND, str(error)) from None
        except ValueError as error:
            raise non_retryable(ErrorType.INVALID_TRANSITION, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return result


def _is_closed(period: Period) -> bool:
    """Whether a period needs no billing in arrears any more: billed already, or it has its order."""
    return period.billed_at is not None or period.order_id is not None


def _billing_due(enrollment: Enrollment, now: datetime) -> datetime | None:
    """When the next open period ends (the workflow advances then to bill it); None when none is open.

    A period is billed at its end even when its service ended earlier (an immediate termination): usage
    before the service end that is reported late is still counted until then.
    """
    ends = [period.end for period in enrollment.periods if not _is_closed(period)]
    later = [end for end in ends if end > now]
    return min(later) if later else None


# --- enrollments from a checkout order ---------------------------------------------------------------


def checkout_paid_order(
    enrollment: Enrollment, window: PeriodWindow, order: OrderConfiguration | None, *, in_arrears: bool
) -> OrderConfiguration | None:
    """The order recording that the checkout order which created ``enrollment`` pays its first period.

    None unless ``enrollment`` came from a checkout (``origin_order_id``), ``window`` is its first period
    and it bills in advance (usage billed in arrears is unknown at checkout). As in the reference, the first
    period is the one the checkout order pays, a trial too: the first billable period after a trial gets
    its own order. The caller stores the returned order CONFIRMED; its context names the checkout order.
    """
    if enrollment.origin_order_id is None or enrollment.periods or in_arrears:
        return None
    positions = (
        list(order.order_position_templates)
        if order is not None
        else [
            OrderPosition(
                product_id=enrollment.product_id,
                original_product_id=enrollment.product_id,
                quantity=enrollment.quantity,
                configuration=list(enrollment.configuration),
            )
        ]
    )
    context = {**(order.order_context if order is not None else {}), "checkout_order_id": enrollment.origin_order_id}
    return OrderConfiguration(period=window, order_context=context, order_position_templates=positions)
