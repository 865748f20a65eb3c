"""The order generator's activity: a page of enrollments, each one's workflow made sure to run and catch up.

For every ACTIVE or PAUSED enrollment of the page (keyset paging by id, so memory stays bounded however
many enrollments there are) it

1. checks what the enrollment's workflow needs to go on: its product exists, is a PLAN_PRODUCT with a
   valid plan, and its adapter is known. An enrollment failing these is reported (``ProductNotFound``,
   ``NotAPlanProduct``, ``InvalidPlan``, ``UnknownAdapter``, ``NoAdapterForPlan``) and not signalled:
   catching up could only fail its workflow;
2. signals-with-start its workflow (``enrollment-<id>``, started from the enrollment's stored terms and
   anchor when it is not running, e.g. lost or never started) with ``catch_up``, which makes the workflow
   re-check its due periods now;
3. when the workflow was not running, waits until the new run has registered the enrollment (the
   ``registration`` update) and reports it if it could not.

Enrollments of a page are processed ``concurrency`` at a time; the activity heartbeats its progress.
Sending ``catch_up`` twice is harmless, so a retried page repeats nothing that matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.enrollment_activities import plan_product_problem
from activities.persistence import Store
from adapters.director import EnrollmentDirector, NoAdapterForPlanError, UnknownAdapterError, adapter_for_key
from adapters.domain import Enrollment, EnrollmentStatus, EnrollmentTerms, Product
from adapters.lifecycle import (
    ENROLLMENT_WORKFLOW_TYPE,
    ActivityName,
    EnrollmentPageRequest,
    EnrollmentPageResult,
    ErrorType,
    GeneratorLogEntry,
    MessageName,
    workflow_id_for,
)

PAGED_STATUSES = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


class EnrollmentProblem(Exception):
    """Why one enrollment could not be processed; ``name`` is the error class reported in the logs."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def enrollment_workflow_input(enrollment: Enrollment) -> dict[str, Any]:
    """The input of ``EnrollmentWorkflow`` (``EnrollmentWorkflowInput``) for a stored enrollment.

    Activities do not import the workflow package, so the input is built by its field names here;
    ``tests/workflows/test_order_generator.py`` checks that it validates as ``EnrollmentWorkflowInput``.
    """
    terms = EnrollmentTerms.model_validate(enrollment.model_dump(include=set(EnrollmentTerms.model_fields)))
    return {"enrollment_id": enrollment.id, "terms": terms, "start": enrollment.anchor}


class GeneratorActivities:
    """The generator's activities, bound to a store, the worker's director and a Temporal client."""

    def __init__(self, store: Store, director: EnrollmentDirector, client: Client, *, task_queue: str) -> None:
        self.store = store
        self.director = director
        self.client = client
        self.task_queue = task_queue

    def all(self) -> list[Callable[..., Any]]:
        return [self.process_enrollment_page]

    @activity.defn(name=ActivityName.PROCESS_ENROLLMENT_PAGE)
    async def process_enrollment_page(self, request: EnrollmentPageRequest) -> EnrollmentPageResult:
        """Make sure each enrollment of the page has its workflow running and caught up; collect failures."""
        page = await self.store.enrollments.page(PAGED_STATUSES, after_id=request.after_id, limit=request.limit)
        products: dict[str, Product | None] = {}
        for product_id in {enrollment.product_id for enrollment in page}:
            products[product_id] = await self.store.products.get(product_id)
        gate = asyncio.Semaphore(request.concurrency)
        errors: list[tuple[int, GeneratorLogEntry]] = []
        restarted = 0
        done = 0

        async def process(index: int, enrollment: Enrollment) -> None:
            nonlocal restarted, done
            async with gate:
                try:
                    self._check(enrollment, products.get(enrollment.product_id))
                    restarted += await self._ensure_caught_up(enrollment)
                except EnrollmentProblem as problem:
                    errors.append((index, GeneratorLogEntry(name=problem.name, message=problem.message)))
                    activity.logger.warning("order generator: %s: %s", problem.name, problem.message)
                except RPCError as error:
                    message = f"{_label(enrollment)}: {error.message}"
                    errors.append((index, GeneratorLogEntry(name=type(error).__name__, message=message)))
                    activity.logger.warning("order generator: %s: %s", _label(enrollment), error)
                done += 1
                activity.heartbeat(done)

        await asyncio.gather(*(process(index, enrollment) for index, enrollment in enumerate(page)))
        return EnrollmentPageResult(
            processed=len(page),
            restarted=restarted,
            errors=[entry for _, entry in sorted(errors, key=lambda item: item[0])],
            next_after_id=page[-1].id if len(page) == request.limit else None,
        )

    def _check(self, enrollment: Enrollment, product: Product | None) -> None:
        """What the enrollment's workflow needs to advance; raises :class:`EnrollmentProblem` naming it."""
        label = _label(enrollment)
        problem = plan_product_problem(enrollment.product_id, product)
        if problem is not None:
            error_type, message = problem
            raise EnrollmentProblem(error_type, f"{label}: {message}")
        assert product is not None and product.plan is not None
        try:
            if enrollment.adapter_key:
                adapter_for_key(enrollment.adapter_key)
            else:
                self.director.resolve(product.plan)
        except UnknownAdapterError as error:
            raise EnrollmentProblem(ErrorType.UNKNOWN_ADAPTER, f"{label}: {error}") from None
        except NoAdapterForPlanError as error:
            raise EnrollmentProblem(ErrorType.NO_ADAPTER, f"{label}: {error}") from None

    async def _ensure_caught_up(self, enrollment: Enrollment) -> int:
        """Signal-with-start ``catch_up``; returns 1 when the workflow was not running (and now is), else 0."""
        workflow_id = workflow_id_for(enrollment.id)
        running = await self._is_running(workflow_id)
        handle = await self.client.start_workflow(
            ENROLLMENT_WORKFLOW_TYPE,
            enrollment_workflow_input(enrollment),
            id=workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal=MessageName.CATCH_UP_SIGNAL,
            static_summary=f"{enrollment.number or enrollment.id} · {enrollment.product_id} · {enrollment.user_id}",
        )
        if running:
            return 0
        activity.logger.info("order generator: started the workflow of %s", _label(enrollment))
        try:
            await handle.execute_update(MessageName.REGISTRATION_UPDATE)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            name = (cause.type if isinstance(cause, ApplicationError) else None) or type(cause or error).__name__
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
            raise EnrollmentProblem(name, f"{_label(enrollment)}: its workflow could not start: {message}") from None
        return 1

    async def _is_running(self, workflow_id: str) -> bool:
        """Whether the workflow's latest run is running (the raw call: no search attribute decoding needed)."""
        request = DescribeWorkflowExecutionRequest(
            namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
        )
        try:
            response = await self.client.workflow_service.describe_workflow_execution(request, retry=True)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return False
            raise
        return response.workflow_execution_info.status == WorkflowExecutionStatus.RUNNING.value


def _label(enrollment: Enrollment) -> str:
    """``enrollment E-7KQ2M9XA (id)``: how log messages name an enrollment."""
    if enrollment.number:
        return f"enrollment {enrollment.number} ({enrollment.id})"
    return f"enrollment {enrollment.id}"
