"""The client library services use to drive enrollments through Temporal.

Commands go to the enrollment's workflow as updates, so the caller learns at once whether the enrollment
accepted them (an invalid transition raises :class:`EnrollmentCommandRejected` with the reason). An unknown
enrollment raises :class:`EnrollmentNotFound`, never a raw RPC error.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.persistence import EnrollmentNotFound as StoredEnrollmentNotFound
from activities.persistence import Store, create_engine, enrollment_number, session_factory
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from adapters.domain import CheckoutOrder, EnrollmentStatus, EnrollmentTerms, OrderStatus
from adapters.lifecycle import (
    COMMAND_MESSAGES,
    ENROLLMENT_WORKFLOW_TYPE,
    ActivateCommand,
    Command,
    EnrollmentView,
    ErrorType,
    MessageName,
    OrderStatusCommand,
    PauseCommand,
    ResumeCommand,
    TerminateCommand,
    workflow_id_for,
)
from starter.client.checkout import CheckoutEnrollment, EnrollmentsFromOrder, plan_enrollments
from starter.client.errors import EnrollmentCommandRejected, EnrollmentNotFound, OrderNotFound, rejection
from starter.client.payload_limits import ensure_fits
from starter.connection import Settings, connect
from workflows.enrollment_state import EnrollmentWorkflowInput
from workflows.search_attributes import ENROLLMENT_PRODUCT_ID, ENROLLMENT_STATUS, ENROLLMENT_USER_ID

T = TypeVar("T")


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class EnrollmentsClient:
    """Typed access to enrollments for services: create, command, query."""

    def __init__(self, client: Client, *, task_queue: str = "enrollments", database_url: str | None = None) -> None:
        self.client = client
        self.task_queue = task_queue
        self._database_url = database_url
        self._engine: AsyncEngine | None = None

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> EnrollmentsClient:
        """A client for the Temporal cluster and database named by ``settings`` (default: environment)."""
        settings = settings or Settings()
        return cls(await connect(settings), task_queue=settings.task_queue, database_url=settings.database_url)

    def _handle(self, enrollment_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id_for(enrollment_id))

    def store(self) -> Store:
        """The enrollment database, for lookups (products, orders) and usage; needs the client's ``database_url``."""
        if self._database_url is None:
            raise ValueError("this needs the client's database_url (EnrollmentsClient.connect reads DATABASE_URL)")
        if self._engine is None:
            self._engine = create_engine(self._database_url)
        return Store.over(session_factory(self._engine))

    async def create_enrollment(
        self,
        terms: EnrollmentTerms | None = None,
        /,
        *,
        start: datetime | None = None,
        enrollment_id: str | None = None,
        **fields: Any,
    ) -> str:
        """Create an enrollment and wait until it is registered; returns its id.

        The terms are an :class:`EnrollmentTerms` or its fields as keywords (``product_id``, ``user_id``,
        ``quantity``, ``timezone``, …). Idempotent for a caller-given ``enrollment_id``: the same id with the
        same terms returns the same enrollment; with other terms it raises :class:`EnrollmentCommandRejected`
        (``EnrollmentConflict``). Invalid terms raise pydantic's ``ValidationError`` and terms over 256 KiB
        serialized :class:`~starter.client.payload_limits.PayloadTooLarge`, both before anything reaches Temporal.
        """
        if terms is not None and fields:
            raise TypeError("pass the terms as an EnrollmentTerms or as keyword fields, not both")
        validated = terms if terms is not None else EnrollmentTerms.model_validate(fields)
        anchor = _aware("start", start) if start is not None else None
        identifier = enrollment_id or uuid.uuid4().hex
        workflow_input = EnrollmentWorkflowInput(enrollment_id=identifier, terms=validated, start=anchor)
        ensure_fits("enrollment terms", validated)  # PayloadTooLarge before anything reaches Temporal
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            ENROLLMENT_WORKFLOW_TYPE,
            workflow_input,
            id=workflow_id_for(identifier),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ENROLLMENT_STATUS, str(EnrollmentStatus.INITIAL)),
                    SearchAttributePair(ENROLLMENT_PRODUCT_ID, validated.product_id),
                    SearchAttributePair(ENROLLMENT_USER_ID, validated.user_id),
                ]
            ),
            static_summary=f"{enrollment_number(identifier)} · {validated.product_id} · {validated.user_id}",
            result_type=EnrollmentView,
        )
        try:
            view = await self.client.execute_update_with_start_workflow(
                MessageName.REGISTRATION_UPDATE, start_workflow_operation=operation, result_type=EnrollmentView
            )
        except WorkflowUpdateFailedError as error:
            raise rejection(error) from None
        if view.model_dump(include=set(EnrollmentTerms.model_fields)) != validated.model_dump():
            raise EnrollmentCommandRejected(
                f"enrollment {identifier!r} already exists with different terms", ErrorType.ENROLLMENT_CONFLICT
            )
        return identifier

    async def send(self, enrollment_id: str, command: Command) -> EnrollmentView:
        """Send ``command`` as its update and return the enrollment once its workflow has applied it."""
        update = COMMAND_MESSAGES[type(command)].update
        if update is None:
            raise ValueError(f"{command.kind} is a signal only; it has no update to wait for")
        handle = self._handle(enrollment_id)
        return await self._command(enrollment_id, handle.execute_update(update, command, result_type=EnrollmentView))

    async def _command(self, enrollment_id: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except WorkflowUpdateFailedError as error:
            raise rejection(error) from None
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                await self._raise_if_missing(enrollment_id)
                raise EnrollmentCommandRejected(
                    f"enrollment {enrollment_id!r} is closed (TERMINATED); it accepts no commands",
                    ErrorType.INVALID_TRANSITION,
                ) from None
            raise

    async def _raise_if_missing(self, enrollment_id: str) -> None:
        try:
            await self._handle(enrollment_id).query(MessageName.STATE_QUERY, result_type=EnrollmentView)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise EnrollmentNotFound(enrollment_id) from None
            raise

    async def pause(
        self, enrollment_id: str, *, reason: str | None = None, at_period_end: bool = False
    ) -> EnrollmentView:
        return await self.send(enrollment_id, PauseCommand(reason=reason, at_period_end=at_period_end))

    async def resume(self, enrollment_id: str, *, reason: str | None = None) -> EnrollmentView:
        return await self.send(enrollment_id, ResumeCommand(reason=reason))

    async def terminate(
        self,
        enrollment_id: str,
        *,
        reason: str | None = None,
        at_period_end: bool = False,
        immediately: bool = False,
    ) -> EnrollmentView:
        command = TerminateCommand(reason=reason, at_period_end=at_period_end, immediately=immediately)
        return await self.send(enrollment_id, command)

    async def activate(self, enrollment_id: str, *, reason: str | None = None) -> EnrollmentView:
        """Start an INITIAL (scheduled) enrollment now: ACTIVE, anchored now, its first period created.

        Refused (:class:`EnrollmentCommandRejected`) once it has started or when it is TERMINATED.
        """
        return await self.send(enrollment_id, ActivateCommand(reason=reason))

    async def order_status_changed(
        self, order_id: str, status: OrderStatus | str, *, enrollment_id: str | None = None
    ) -> EnrollmentView:
        """Tell an order's enrollment that the order changed status (e.g. paid → CONFIRMED).

        Without ``enrollment_id`` the order's enrollment is looked up in the database.
        """
        command = OrderStatusCommand(order_id=order_id, status=OrderStatus(status))
        return await self.send(enrollment_id or await self._enrollment_of_order(order_id), command)

    async def _enrollment_of_order(self, order_id: str) -> str:
        if self._database_url is None:
            raise ValueError("order_status_changed needs enrollment_id when the client has no database_url")
        order = await self.store().billing.get_order(order_id)
        if order is None or order.enrollment_id is None:
            raise OrderNotFound(order_id)
        return order.enrollment_id

    async def record_usage(
        self, enrollment_id: str, units: int, idempotency_key: str, at: datetime | None = None
    ) -> bool:
        """Record ``units`` of usage of a metered enrollment at ``at`` (default: now); True when new.

        Written straight to the database (:meth:`activities.persistence.UsageRepository.record`), not sent to
        the workflow: a busy meter costs the workflow no signals and no history; it reads the totals when it
        bills a period after the period ends. The same ``idempotency_key`` twice is one record (False the
        second time); with other units it raises ``UsageConflict``. ``UsageRefused`` says why usage can
        no longer be billed (late for a period that is billed already, after ``expires``, not a METERED
        plan, …); an unknown enrollment raises :class:`EnrollmentNotFound`.
        """
        moment = _aware("at", at) if at is not None else datetime.now(UTC)
        if self._database_url is None:
            raise ValueError("record_usage needs a client with a database_url")
        try:
            return await self.store().usage.record(enrollment_id, units, idempotency_key, moment, now=datetime.now(UTC))
        except StoredEnrollmentNotFound:
            raise EnrollmentNotFound(enrollment_id) from None

    async def _query(self, enrollment_id: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise EnrollmentNotFound(enrollment_id) from None
            raise
        except WorkflowQueryFailedError as error:
            raise EnrollmentCommandRejected(str(error)) from None

    async def is_valid_for_activation(self, enrollment_id: str, at: datetime | None = None) -> bool:
        """Whether the enrollment grants access at ``at`` (default: the caller's clock, now)."""
        moment = _aware("at", at) if at is not None else datetime.now(UTC)
        handle = self._handle(enrollment_id)
        return await self._query(enrollment_id, handle.query(MessageName.ACCESS_QUERY, moment, result_type=bool))

    async def get_enrollment(self, enrollment_id: str) -> EnrollmentView:
        """The enrollment's full state as its workflow sees it."""
        handle = self._handle(enrollment_id)
        return await self._query(enrollment_id, handle.query(MessageName.STATE_QUERY, result_type=EnrollmentView))

    async def create_enrollments_from_order(
        self, order: CheckoutOrder | dict[str, Any], *, director: EnrollmentDirector | None = None
    ) -> EnrollmentsFromOrder:
        """One enrollment per PLAN_PRODUCT position of a CONFIRMED/FULFILLED checkout order (idempotent).

        The checkout order pays the first period; orders the engine generated are refused. ``director``
        (default: the built-in adapters named by ``ENROLLMENT_ADAPTERS``) transforms the positions. See
        :mod:`starter.client.checkout` for the rules.
        """
        checkout = CheckoutOrder.model_validate(order)
        resolver = director or director_from_names(Settings().adapter_names)
        planned, skipped = await plan_enrollments(checkout, self.store(), resolver)
        result = EnrollmentsFromOrder(order_id=checkout.id, skipped=skipped)
        for plan in planned:
            await self.create_enrollment(plan.terms, enrollment_id=plan.enrollment_id)
            result.enrollments.append(
                CheckoutEnrollment(
                    position=plan.position, product_id=plan.terms.product_id, enrollment_id=plan.enrollment_id
                )
            )
        return result

    async def catch_up(self, enrollment_id: str) -> None:
        """Ask the enrollment to re-check its due periods now."""
        handle = self._handle(enrollment_id)
        await self._query(enrollment_id, handle.signal(MessageName.CATCH_UP_SIGNAL))

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
