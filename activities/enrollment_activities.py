"""The enrollment workflow's activities: every side effect of an enrollment's lifecycle.

Each activity is one idempotent unit of work on business keys (enrollment id, period start, event key,
order id): a retry after a commit finds the rows it wrote and returns them instead of writing again.
"Now" always comes from the workflow. Failures that retrying cannot fix are non-retryable
``ApplicationError``s typed with :class:`adapters.lifecycle.ErrorType`; anything else (a database that is
down) raises as is and Temporal retries it with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.faults import FaultPoint, fault_injector
from activities.persistence import (
    EnrollmentConflict,
    EnrollmentNotFound,
    EnrollmentRepository,
    OrderNotFound,
    ProductNotFound,
)
from adapters.base import EnrollmentAdapter, EnrollmentContext
from adapters.calendar import InvalidPlanError, validate_plan
from adapters.director import EnrollmentDirector, NoAdapterForPlanError, UnknownAdapterError
from adapters.domain import Enrollment, EnrollmentStatus, Order, Period, Product, ProductType
from adapters.lifecycle import (
    ActivityName,
    AdvanceRequest,
    AdvanceResult,
    ErrorType,
    OrderStatusRequest,
    RegisterRequest,
    RegisterResult,
    StatusChangeRequest,
)

MAX_PERIODS_PER_ADVANCE = 500
"""Catching up after a long outage creates at most this many periods per call (the workflow calls again)."""


def non_retryable(error_type: ErrorType, message: str) -> ApplicationError:
    return ApplicationError(message, type=str(error_type), non_retryable=True)


class RepositoryServices:
    """The I/O adapters may use in their async actions, backed by the repository."""

    def __init__(self, repository: EnrollmentRepository) -> None:
        self._repository = repository

    async def find_order(self, order_id: str) -> Order | None:
        return await self._repository.get_order(order_id)

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        return await self._repository.usage_units(enrollment_id, start, end)


class EnrollmentActivities:
    """Activities bound to one repository and one director (build one per worker)."""

    def __init__(self, repository: EnrollmentRepository, director: EnrollmentDirector) -> None:
        self.repository = repository
        self.director = director
        self.services = RepositoryServices(repository)

    def all(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [
            self.register_enrollment,
            self.advance_enrollment,
            self.change_enrollment_status,
            self.apply_order_status,
        ]

    async def _plan_product(self, product_id: str) -> Product:
        product = await self.repository.get_product(product_id)
        if product is None:
            raise non_retryable(ErrorType.PRODUCT_NOT_FOUND, f"product {product_id!r} does not exist")
        if product.type is not ProductType.PLAN_PRODUCT or product.plan is None:
            raise non_retryable(
                ErrorType.NOT_A_PLAN_PRODUCT, f"product {product_id!r} is a {product.type}, not a PLAN_PRODUCT"
            )
        try:
            validate_plan(product.plan)
        except InvalidPlanError as error:
            raise non_retryable(
                ErrorType.INVALID_PLAN, f"product {product_id!r} has an invalid plan: {error}"
            ) from None
        return product

    async def _enrollment(self, enrollment_id: str) -> Enrollment:
        enrollment = await self.repository.get_enrollment(enrollment_id)
        if enrollment is None:
            raise non_retryable(ErrorType.ENROLLMENT_NOT_FOUND, f"enrollment {enrollment_id!r} does not exist")
        return enrollment

    def _actions(self, enrollment: Enrollment, product: Product, now: datetime, adapter_key: str) -> EnrollmentAdapter:
        context = EnrollmentContext(enrollment=enrollment, product=product, now=now, services=self.services)
        try:
            return self.director.actions(context, adapter_key)
        except UnknownAdapterError as error:
            raise non_retryable(ErrorType.UNKNOWN_ADAPTER, str(error)) from None

    @activity.defn(name=ActivityName.REGISTER)
    async def register_enrollment(self, request: RegisterRequest) -> RegisterResult:
        """Persist the enrollment (idempotent by id) and resolve its adapter through the director."""
        product = await self._plan_product(request.terms.product_id)
        assert product.plan is not None
        try:
            adapter = self.director.resolve(product.plan)
        except NoAdapterForPlanError as error:
            raise non_retryable(ErrorType.NO_ADAPTER, f"product {product.id!r}: {error}") from None
        try:
            enrollment = await self.repository.create_enrollment(
                request.enrollment_id,
                request.terms,
                anchor=request.anchor,
                adapter_key=adapter.key,
                now=request.now,
                # Due now: active at once; a future start keeps it INITIAL until then.
                status=EnrollmentStatus.ACTIVE if request.anchor <= request.now else EnrollmentStatus.INITIAL,
            )
        except EnrollmentConflict as error:
            raise non_retryable(ErrorType.ENROLLMENT_CONFLICT, str(error)) from None
        except ProductNotFound as error:
            raise non_retryable(ErrorType.PRODUCT_NOT_FOUND, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return RegisterResult(enrollment=enrollment, adapter_key=adapter.key)

    @activity.defn(name=ActivityName.ADVANCE)
    async def advance_enrollment(self, request: AdvanceRequest) -> AdvanceResult:
        """Create every period due by ``now`` with its order; report the next boundary and overdue."""
        enrollment = await self._enrollment(request.enrollment_id)
        product = await self._plan_product(enrollment.product_id)
        adapter_key = enrollment.adapter_key or self.director.resolve(product.require_plan()).key
        actions = self._actions(enrollment, product, request.now, adapter_key)
        next_window = await actions.next_period()
        created = 0
        while request.create_periods and next_window is not None and next_window.start <= request.now:
            if created >= MAX_PERIODS_PER_ADVANCE:
                break
            order = None if next_window.is_trial else await actions.configuration_for_order(next_window)
            period, _ = await self.repository.add_period(request.enrollment_id, next_window, order, now=request.now)
            created += 1
            fault_injector.hit(FaultPoint.AFTER_COMMIT)
            enrollment = enrollment.model_copy(update={"periods": [*enrollment.periods, period]})
            actions = self._actions(enrollment, product, request.now, adapter_key)
            next_window = await actions.next_period()
        new_periods = [
            period
            for period in enrollment.periods
            if request.known_through is None or period.start > request.known_through
        ]
        orders = await self._orders_of(request.enrollment_id, new_periods)
        return AdvanceResult(
            periods=new_periods,
            orders=orders,
            next_period_start=next_window.start if next_window is not None else None,
            overdue=await actions.is_overdue(),
            deadline=type(actions).deadline_after(enrollment, request.now),
        )

    async def _orders_of(self, enrollment_id: str, periods: list[Period]) -> list[Order]:
        wanted = {period.order_id for period in periods if period.order_id}
        if not wanted:
            return []
        return [order for order in await self.repository.list_orders(enrollment_id) if order.id in wanted]

    @activity.defn(name=ActivityName.CHANGE_STATUS)
    async def change_enrollment_status(self, request: StatusChangeRequest) -> None:
        """Record a status change with its reason in the enrollment's log (idempotent by event key)."""
        try:
            await self.repository.change_status(
                request.enrollment_id,
                request.status,
                event_key=request.event_key,
                at=request.at,
                info=request.info,
                pause_reason=request.pause_reason,
                expires=request.expires,
                anchor=request.anchor,
            )
        except EnrollmentNotFound as error:
            raise non_retryable(ErrorType.ENROLLMENT_NOT_FOUND, str(error)) from None
        except ValueError as error:
            raise non_retryable(ErrorType.INVALID_TRANSITION, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)

    @activity.defn(name=ActivityName.APPLY_ORDER_STATUS)
    async def apply_order_status(self, request: OrderStatusRequest) -> Order:
        """Persist an order's new status; the order must belong to the enrollment."""
        order = await self.repository.get_order(request.order_id)
        if order is None or order.enrollment_id != request.enrollment_id:
            raise non_retryable(
                ErrorType.ORDER_NOT_FOUND,
                f"order {request.order_id!r} does not belong to enrollment {request.enrollment_id!r}",
            )
        try:
            updated = await self.repository.set_order_status(request.order_id, request.status, now=request.now)
        except OrderNotFound as error:
            raise non_retryable(ErrorType.ORDER_NOT_FOUND, str(error)) from None
        fault_injector.hit(FaultPoint.AFTER_COMMIT)
        return updated
