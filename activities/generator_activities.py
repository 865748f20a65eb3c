"""The order generator's activity: a page of enrollments, each one's workflow examined, repaired and caught up.

A page holds the open enrollments that are due — their stored next wake-up is at or before the pass's
cutoff, so their workflow should be advancing now or is late — or, for a full pass, every open one (keyset
paging by id, so memory stays bounded however many there are). For each it

1. checks what the enrollment's workflow needs to go on: its product exists, is a PLAN_PRODUCT with a
   valid plan, and its adapter is known. An enrollment failing these is reported (``ProductNotFound``,
   ``NotAPlanProduct``, ``InvalidPlan``, ``UnknownAdapter``, ``NoAdapterForPlan``) and not signalled:
   catching up could only fail its workflow;
2. an enrollment due now (its wake-up is not before the request's ``late_before``) is signalled ``catch_up``,
   which makes its workflow re-check its due periods now: a healthy workflow moves its wake-up forward, so
   it is not examined (one signal, no describe). When the signal finds no running workflow, or the
   enrollment is late (its workflow has not acted on its wake-up), or the pass is a full one, it
3. examines its workflow against the store (:mod:`activities.checkup`): a workflow an operator closed in
   Temporal gets its termination recorded (never a restart); a missing or failed one is rebuilt from the
   store; a running one is signalled ``catch_up``; a wedged one, one that needs attention or one that
   disagrees with the store is reported.

Enrollments of a page are processed ``concurrency`` at a time; the activity heartbeats its progress.
Sending ``catch_up`` twice is harmless, so a retried page repeats nothing that matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.checkup import Checkup, Problem, RebuildFailed, label
from activities.persistence import Store
from adapters.director import EnrollmentDirector, NoAdapterForPlanError, UnknownAdapterError, adapter_for_key
from adapters.domain import Enrollment, EnrollmentStatus, Product
from adapters.lifecycle import (
    ActivityName,
    EnrollmentPageRequest,
    EnrollmentPageResult,
    ErrorType,
    GeneratorLogEntry,
)
from adapters.rules import plan_product_problem

PAGED_STATUSES = (EnrollmentStatus.INITIAL, EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


class EnrollmentProblem(Exception):
    """Why one enrollment could not be processed; ``name`` is the error class reported in the logs."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


REPAIRED_QUIETLY = (Problem.CLOSED_IN_TEMPORAL, Problem.MISSING)
"""Findings the pass repairs and only logs: the rest are reported in its result."""


class GeneratorActivities:
    """The generator's activities, bound to a store, the worker's director and a Temporal client."""

    def __init__(
        self,
        store: Store,
        director: EnrollmentDirector,
        client: Client,
        *,
        task_queue: str,
        next_period_attribute: bool = False,
    ) -> None:
        self.store = store
        self.director = director
        self.checkup = Checkup(client, store, task_queue, next_period_attribute)

    def all(self) -> list[Callable[..., Any]]:
        return [self.process_enrollment_page]

    @activity.defn(name=ActivityName.PROCESS_ENROLLMENT_PAGE)
    async def process_enrollment_page(self, request: EnrollmentPageRequest) -> EnrollmentPageResult:
        """Make sure each enrollment of the page has its workflow running and caught up; collect failures."""
        page = await self.store.enrollments.page(
            PAGED_STATUSES, after_id=request.after_id, limit=request.limit, due_by=request.due_by
        )
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
                    if not await self._signalled(enrollment, request):
                        restarted += await self._examine(enrollment)
                except EnrollmentProblem as problem:
                    errors.append((index, GeneratorLogEntry(name=problem.name, message=problem.message)))
                    activity.logger.warning("order generator: %s: %s", problem.name, problem.message)
                except (RPCError, RebuildFailed) as error:
                    message = f"{label(enrollment)}: {getattr(error, 'message', error)}"
                    errors.append((index, GeneratorLogEntry(name=type(error).__name__, message=message)))
                    activity.logger.warning("order generator: %s", message)
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
        name = label(enrollment)
        problem = plan_product_problem(enrollment.product_id, product)
        if problem is not None:
            error_type, message = problem
            raise EnrollmentProblem(error_type, f"{name}: {message}")
        assert product is not None and product.plan is not None
        try:
            if enrollment.adapter_key:
                adapter_for_key(enrollment.adapter_key)
            else:
                self.director.resolve(product.plan)
        except UnknownAdapterError as error:
            raise EnrollmentProblem(ErrorType.UNKNOWN_ADAPTER, f"{name}: {error}") from None
        except NoAdapterForPlanError as error:
            raise EnrollmentProblem(ErrorType.NO_ADAPTER, f"{name}: {error}") from None

    async def _signalled(self, enrollment: Enrollment, request: EnrollmentPageRequest) -> bool:
        """Signal an enrollment that is due now, not late, ``catch_up``: False when it must be examined instead."""
        wake_up = enrollment.next_wake_up
        if request.late_before is None or wake_up is None or wake_up < request.late_before:
            return False
        try:
            await self.checkup.catch_up(enrollment.id)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:  # no running workflow: the examination repairs that
                return False
            raise
        return True

    async def _examine(self, enrollment: Enrollment) -> int:
        """Examine and repair the enrollment's workflow; 1 when it was rebuilt. Raises what must be reported."""
        findings = await self.checkup.examine(enrollment, repair=True, query=False)
        for finding in findings:
            activity.logger.warning("order generator: %s: %s (%s)", finding.problem, finding.message, finding.repaired)
        reported = [finding for finding in findings if finding.problem not in REPAIRED_QUIETLY]
        if reported:
            raise EnrollmentProblem(reported[0].problem, "; ".join(finding.message for finding in reported))
        return int(any(finding.problem is Problem.MISSING for finding in findings))
