"""The client library services use to drive enrollments through Temporal.

Commands go to the enrollment's workflow as updates, so the caller learns at once whether the enrollment
accepted them (an invalid transition raises :class:`EnrollmentCommandRejected` with the reason). An unknown
enrollment raises :class:`EnrollmentNotFound`, never a raw RPC error. With a database (``database_url``) the
client also checks a create before it starts anything (:mod:`starter.client.preflight`), takes enrollment
and order numbers wherever it takes ids (:mod:`starter.client.references`) and answers access at moments
older than what a workflow carries from the stored periods (:mod:`starter.client.access`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Sequence
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
from activities.persistence.numbers import ENROLLMENT_PREFIX
from adapters.builtin import director_from_names
from adapters.checkout import CheckoutOrder
from adapters.director import EnrollmentDirector
from adapters.domain import EnrollmentStatus, EnrollmentTerms, OrderStatus
from adapters.events import EventPage, EventType
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
from adapters.webhooks import (
    WAKE_SIGNAL,
    WEBHOOK_WORKFLOW_TYPE,
    DeliveryAttempt,
    WebhookDeliveryInput,
    WebhookEndpoint,
    WebhookEndpointSpec,
    webhook_workflow_id,
)
from adapters.webhooks import webhook_task_queue as default_webhook_task_queue
from starter.client.access import needs_stored_periods, stored_access
from starter.client.changes import ChangesMixin
from starter.client.checkout import CheckoutEnrollment, EnrollmentsFromOrder, plan_enrollments
from starter.client.errors import EnrollmentCommandRejected, EnrollmentNotFound, rejection
from starter.client.payload_limits import ensure_fits
from starter.client.payments import PaymentsMixin
from starter.client.preflight import existing_status, terminated_rejection
from starter.client.references import as_number, enrollment_id_of, order_and_enrollment
from starter.client.run_chain import RunEnded, following_runs
from starter.connection import Settings, connect
from workflows.enrollment_state import EnrollmentWorkflowInput
from workflows.search_attributes import ENROLLMENT_PRODUCT_ID, ENROLLMENT_STATUS, ENROLLMENT_USER_ID

T = TypeVar("T")


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class EnrollmentsClient(ChangesMixin, PaymentsMixin):
    """Typed access to enrollments for services: create, command, change, pay, query; events and webhooks."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = "enrollments",
        database_url: str | None = None,
        webhook_task_queue: str | None = None,
        next_period_attribute: bool = False,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.next_period_attribute = next_period_attribute
        self.webhook_task_queue = webhook_task_queue or default_webhook_task_queue(task_queue)
        self._database_url = database_url
        self._engine: AsyncEngine | None = None

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> EnrollmentsClient:
        """A client for the Temporal cluster and database named by ``settings`` (default: environment)."""
        settings = settings or Settings()
        return cls(
            await connect(settings),
            task_queue=settings.task_queue,
            database_url=settings.database_url,
            webhook_task_queue=settings.webhook_task_queue,
            next_period_attribute=settings.next_period_attribute,
        )

    def _handle(self, enrollment_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id_for(enrollment_id))

    @property
    def _has_database(self) -> bool:
        return self._database_url is not None

    def store(self) -> Store:
        """The enrollment database, for lookups (products, orders) and usage; needs the client's ``database_url``.

        A SQLite file that does not exist raises ``DatabaseNotFound``: the client never creates a database.
        """
        if self._database_url is None:
            raise ValueError("this needs the client's database_url (EnrollmentsClient.connect reads DATABASE_URL)")
        if self._engine is None:
            self._engine = create_engine(self._database_url, create_missing=False)
        return Store.over(session_factory(self._engine))

    async def _enrollment_id(self, reference: str) -> str:
        """The id an enrollment id or number (``E-…``) names; without a database a reference is an id."""
        if self._database_url is None or as_number(reference, ENROLLMENT_PREFIX) is None:
            return reference
        return await enrollment_id_of(self.store(), reference)

    async def create_enrollment(
        self,
        terms: EnrollmentTerms | None = None,
        /,
        *,
        start: datetime | None = None,
        enrollment_id: str | None = None,
        backdate: bool = False,
        **fields: Any,
    ) -> str:
        """Create an enrollment and wait until it is registered; returns its id.

        A ``start`` more than one period in the past makes every period since then, each with its order: ask
        for that with ``backdate=True`` (at most 1,000 periods are caught up on). Without it, such a start is
        refused (``InvalidStart``), as is one more than ten years ahead.

        By default the enrollment is ACTIVE from its start, its first order PENDING. With the term
        ``activate_on_payment=True`` it stays INITIAL (no access) with its first period and order made, until
        that order is paid (``order_status_changed`` to CONFIRMED or FULFILLED) or :meth:`activate` is
        called; a rejected order, or one unpaid when its period ends, ends it (see docs/enrollment-lifecycle.md).

        The terms are an :class:`EnrollmentTerms` or its fields as keywords (``product_id``, ``user_id``,
        ``quantity``, ``timezone``, …). Idempotent for a caller-given ``enrollment_id``: the same id with the
        same terms returns the same enrollment; with other terms it raises :class:`EnrollmentCommandRejected`
        (``EnrollmentConflict``), and so does the id of a TERMINATED enrollment (final: not created again).
        Invalid terms raise pydantic's ``ValidationError`` and terms over 256 KiB serialized
        :class:`~starter.client.payload_limits.PayloadTooLarge`, both before anything reaches Temporal; an
        unknown product, a product that is not a plan product or an invalid plan raise
        :class:`EnrollmentCommandRejected` (``ProductNotFound``, ``NotAPlanProduct``, ``InvalidPlan``), and so
        does a ``currency_code`` the plan has no price in (``NoPrice``), before any workflow starts, when the
        client has a database.
        """
        if terms is not None and fields:
            raise TypeError("pass the terms as an EnrollmentTerms or as keyword fields, not both")
        validated = terms if terms is not None else EnrollmentTerms.model_validate(fields)
        anchor = _aware("start", start) if start is not None else None
        ensure_fits("enrollment terms", validated)  # PayloadTooLarge before anything reaches Temporal
        identifier = enrollment_id or uuid.uuid4().hex
        if self._database_url is not None:  # refused before anything starts (a closed workflow would start again)
            existing = await existing_status(
                self.store(), enrollment_id, validated, start=anchor, now=datetime.now(UTC), backdate=backdate
            )
            if existing is EnrollmentStatus.TERMINATED:
                raise terminated_rejection(identifier)
        workflow_input = EnrollmentWorkflowInput(
            enrollment_id=identifier, terms=validated, start=anchor, backdate=backdate
        )
        view = await self._start(workflow_input)
        if view.status is EnrollmentStatus.TERMINATED:
            raise terminated_rejection(identifier)
        return identifier

    async def _start(self, workflow_input: EnrollmentWorkflowInput) -> EnrollmentView:
        """Start (or find) the enrollment's workflow and wait for its registration; returns the registered view."""
        workflow_input = workflow_input.model_copy(update={"next_period_attribute": self.next_period_attribute})
        identifier, terms = workflow_input.enrollment_id, workflow_input.terms

        def operation() -> WithStartWorkflowOperation[Any, Any]:  # one per attempt: an operation is used once
            return WithStartWorkflowOperation(
                ENROLLMENT_WORKFLOW_TYPE,
                workflow_input,
                id=workflow_id_for(identifier),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(ENROLLMENT_STATUS, str(EnrollmentStatus.INITIAL)),
                        SearchAttributePair(ENROLLMENT_PRODUCT_ID, terms.product_id),
                        SearchAttributePair(ENROLLMENT_USER_ID, terms.user_id),
                    ]
                ),
                static_summary=f"{enrollment_number(identifier)} · {terms.product_id} · {terms.user_id}",
                result_type=EnrollmentView,
            )

        try:
            view: EnrollmentView = await following_runs(
                lambda: self.client.execute_update_with_start_workflow(
                    MessageName.REGISTRATION_UPDATE, start_workflow_operation=operation(), result_type=EnrollmentView
                )
            )
        except WorkflowUpdateFailedError as error:
            raise rejection(error) from None
        if view.model_dump(include=set(EnrollmentTerms.model_fields)) != terms.model_dump():
            raise EnrollmentCommandRejected(
                f"enrollment {identifier!r} already exists with different terms", ErrorType.ENROLLMENT_CONFLICT
            )
        return view

    async def send(self, enrollment_id: str, command: Command) -> EnrollmentView:
        """Send ``command`` as its update and return the enrollment once its workflow has applied it.

        ``enrollment_id`` may also be the enrollment's number (``E-…``).
        """
        update = COMMAND_MESSAGES[type(command)].update
        if update is None:
            raise ValueError(f"{command.kind} is a signal only; it has no update to wait for")
        identifier = await self._enrollment_id(enrollment_id)
        handle = self._handle(identifier)
        return await following_runs(
            lambda: self._command(identifier, handle.execute_update(update, command, result_type=EnrollmentView))
        )

    async def _command(self, enrollment_id: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except WorkflowUpdateFailedError as error:
            raise rejection(error) from None
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                # The run that was asked has completed: either the enrollment ended, or the run continued as new
                # an instant before the update reached it and the latest run (which the query reaches) is open.
                latest = self._handle(enrollment_id).query(MessageName.STATE_QUERY, result_type=EnrollmentView)
                if (await self._query(enrollment_id, latest)).status is not EnrollmentStatus.TERMINATED:
                    raise RunEnded from None
                raise EnrollmentCommandRejected(
                    f"enrollment {enrollment_id!r} is closed (TERMINATED); it accepts no commands",
                    ErrorType.INVALID_TRANSITION,
                ) from None
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
        """Start an INITIAL enrollment now: ACTIVE, anchored now, its first period created.

        One waiting for its first payment (``activate_on_payment``) keeps its first period and anchor; its
        order stays due. Refused (:class:`EnrollmentCommandRejected`) once it has started or when it is TERMINATED.
        """
        return await self.send(enrollment_id, ActivateCommand(reason=reason))

    async def order_status_changed(
        self, order_id: str, status: OrderStatus | str, *, enrollment_id: str | None = None
    ) -> EnrollmentView:
        """Tell an order's enrollment that the order changed status (e.g. paid → CONFIRMED).

        ``order_id`` may be the order's number (``O-…``); without ``enrollment_id`` the database is asked.
        """
        wanted = OrderStatus(status)
        store = self.store if self._has_database else None
        identifier, enrollment_id = await order_and_enrollment(store, order_id, enrollment_id, "order_status_changed")
        return await self.send(enrollment_id, OrderStatusCommand(order_id=identifier, status=wanted))

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
        identifier = await self._enrollment_id(enrollment_id)
        try:
            return await self.store().usage.record(identifier, units, idempotency_key, moment, now=datetime.now(UTC))
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
        """Whether the enrollment grants access at ``at`` (default: the caller's clock, now).

        The workflow's query answers; for a moment older than the periods the workflow carries, the same rule
        runs on the periods in the database (:mod:`starter.client.access`), when the client has one (a "no"
        costs a second query, for the workflow's view).
        """
        moment = _aware("at", at) if at is not None else datetime.now(UTC)
        identifier = await self._enrollment_id(enrollment_id)
        handle = self._handle(identifier)
        valid: bool = await self._query(identifier, handle.query(MessageName.ACCESS_QUERY, moment, result_type=bool))
        if valid or self._database_url is None:
            return valid
        view = await self._query(identifier, handle.query(MessageName.STATE_QUERY, result_type=EnrollmentView))
        if not needs_stored_periods(view, moment):
            return valid
        stored = await stored_access(self.store(), identifier, moment, Settings().adapter_names)
        return valid if stored is None else stored

    async def get_enrollment(self, enrollment_id: str) -> EnrollmentView:
        """The full state of the enrollment as its workflow sees it (``enrollment_id``: its id or number)."""
        identifier = await self._enrollment_id(enrollment_id)
        handle = self._handle(identifier)
        return await self._query(identifier, handle.query(MessageName.STATE_QUERY, result_type=EnrollmentView))

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
        store = self.store()
        planned, skipped = await plan_enrollments(checkout, store, resolver)
        result = EnrollmentsFromOrder(order_id=checkout.id, skipped=skipped)
        for plan in planned:
            # Idempotent: an enrollment the order made earlier is found, a TERMINATED one too (not restarted).
            status = await existing_status(
                store, plan.enrollment_id, plan.terms, start=None, now=datetime.now(UTC), backdate=False
            )
            if status is not EnrollmentStatus.TERMINATED:
                await self._start(EnrollmentWorkflowInput(enrollment_id=plan.enrollment_id, terms=plan.terms))
            result.enrollments.append(
                CheckoutEnrollment(
                    position=plan.position, product_id=plan.terms.product_id, enrollment_id=plan.enrollment_id
                )
            )
        return result

    async def catch_up(self, enrollment_id: str) -> None:
        """Ask the enrollment to re-check its due periods now."""
        identifier = await self._enrollment_id(enrollment_id)
        await self._query(identifier, self._handle(identifier).signal(MessageName.CATCH_UP_SIGNAL))

    # --- events and webhooks ---------------------------------------------------------------------

    async def events(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: Sequence[EventType | str] | None = None,
        enrollment_id: str | None = None,
    ) -> EventPage:
        """Events oldest first after the cursor ``after`` (None: from the first), read from the database.

        Pass ``next_cursor`` of a page as ``after`` for the next one; it stays the same while nothing is new.
        """
        return await self.store().events.page(after=after, limit=limit, types=types, enrollment_id=enrollment_id)

    async def add_webhook(
        self, url: str, secret: str, *, events: Sequence[EventType | str] | None = None
    ) -> WebhookEndpoint:
        """Register an endpoint for the events committed from now on (``events``: these types only) and start
        its delivery. A URL that is not http(s) or carries credentials, or a secret under 16 characters, raises
        pydantic's ``ValidationError`` and nothing is stored."""
        spec = WebhookEndpointSpec(url=url, secret=secret, event_types=None if events is None else list(events))
        endpoint = await self.store().webhooks.add(spec, now=datetime.now(UTC))
        await self._start_delivery(endpoint.id)
        return endpoint

    async def webhooks(self) -> list[WebhookEndpoint]:
        """Every endpoint with its status (``failing`` once retries ran out), pending and delivered counts."""
        return await self.store().webhooks.all()

    async def webhook_attempts(self, endpoint_id: str, *, limit: int = 50) -> list[DeliveryAttempt]:
        """The endpoint's latest delivery attempts, newest first."""
        return await self.store().webhooks.attempts(endpoint_id, limit=limit)

    async def remove_webhook(self, endpoint_id: str) -> None:
        """Delete the endpoint (and its delivery records); its delivery workflow ends."""
        await self.store().webhooks.remove(endpoint_id)
        with contextlib.suppress(RPCError):  # a workflow that is not running has nothing to end
            await self.client.get_workflow_handle(webhook_workflow_id(endpoint_id)).signal(WAKE_SIGNAL)

    async def redeliver_events(self, endpoint_id: str, *, since: datetime | None = None) -> int:
        """Deliver the endpoint's waiting events now (also when it is failing), and with ``since`` every event
        recorded since then again. Returns how many deliveries wait."""
        pending = await self.store().webhooks.redeliver(
            endpoint_id, now=datetime.now(UTC), since=None if since is None else _aware("since", since)
        )
        await self._start_delivery(endpoint_id)
        return pending

    async def start_webhook_deliveries(self) -> int:
        """Make sure every endpoint's delivery workflow runs; returns how many endpoints there are."""
        endpoint_ids = await self.store().webhooks.ids()
        for endpoint_id in endpoint_ids:
            await self._start_delivery(endpoint_id)
        return len(endpoint_ids)

    async def _start_delivery(self, endpoint_id: str) -> None:
        """Start the endpoint's delivery workflow, or wake the running one."""
        await self.client.start_workflow(
            WEBHOOK_WORKFLOW_TYPE,
            WebhookDeliveryInput(endpoint_id=endpoint_id),
            id=webhook_workflow_id(endpoint_id),
            task_queue=self.webhook_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=WAKE_SIGNAL,
            static_summary=f"webhook endpoint {endpoint_id}",
        )

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
