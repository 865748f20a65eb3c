"""GenerateEnrollmentOrders: the reference order generator worker, kept as a safety net (docs/order-generator.md).

Every enrollment's own workflow creates its periods and orders on time. This workflow goes over the open
enrollments that are **due** — the database's next wake-up of each is at or before the pass's start plus
``due_within_seconds``: its workflow should be acting now, or is late — page by page, and makes sure each
one's workflow runs and has caught up (an activity signals-with-start ``catch_up``), collecting what went
wrong per enrollment. Enrollments that are not due are not touched, so a pass costs what is due, not what
exists; ``every_open`` makes a full pass over all INITIAL, ACTIVE and PAUSED enrollments.
Orders are never created here: an enrollment's periods and orders are written by its own workflow,
keyed by (enrollment, period start), so running the generator any number of times, even concurrently,
creates no second order for a period.

It returns exactly ``{"success": true}`` or ``{"success": false, "error": {"name":
"SOME_ENROLLMENTS_COULD_NOT_PROCESS", "message": …, "logs": [{"name": …, "message": …}]}}``.

Memory and history stay bounded for any number of enrollments: one activity per page (keyset paging,
bounded concurrency inside), and continue-as-new every ``pages_per_run`` pages (or when the server
suggests it), carrying the cursor, the counts and the errors collected so far.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from adapters.domain import DomainModel, UtcDatetime
    from adapters.lifecycle import (
        GENERATOR_WORKFLOW_TYPE,
        ActivityName,
        EnrollmentPageRequest,
        EnrollmentPageResult,
        GeneratorLogEntry,
    )

ERROR_NAME = "SOME_ENROLLMENTS_COULD_NOT_PROCESS"
ERROR_MESSAGE = "Some errors have been reported during order generation"
MAX_LOGS = 1_000
"""Errors listed in the result at most; more are counted in one last entry (the result stays far below 2 MB)."""
MORE_ERRORS = "MoreErrors"
DUE_WITHIN_SECONDS = 60
LATE_AFTER_SECONDS = 300

PAGE_TIMEOUT = timedelta(minutes=10)
PAGE_HEARTBEAT_TIMEOUT = timedelta(minutes=1)
PAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
"""A page that keeps failing (database or Temporal down) fails the run; a scheduled run is then retried."""


class GenerateOrdersInput(DomainModel):
    """Tuning of a run (all optional: the Web UI and schedules start it without input) and carried state."""

    page_size: int = Field(default=100, ge=1, le=1_000, description="enrollments per page (one activity)")
    concurrency: int = Field(default=20, ge=1, le=200, description="enrollments processed at once in a page")
    pages_per_run: int = Field(default=50, ge=1, le=10_000, description="pages before continue-as-new")
    max_logs: int = Field(default=MAX_LOGS, ge=1, le=MAX_LOGS, description="errors listed; more are counted")
    due_within_seconds: int = Field(
        default=DUE_WITHIN_SECONDS,
        ge=0,
        le=366 * 86_400,
        description="also enrollments due this soon after the pass starts (their workflow is about to act)",
    )
    late_after_seconds: int = Field(
        default=LATE_AFTER_SECONDS,
        ge=0,
        le=366 * 86_400,
        description="an enrollment whose wake-up passed this long before the pass is examined, not just signalled",
    )
    every_open: bool = Field(default=False, description="every open enrollment, due or not (a full check)")
    # Carried over continue-as-new:
    due_by: UtcDatetime | None = Field(default=None, description="the pass's cutoff, fixed when it starts")
    late_before: UtcDatetime | None = Field(default=None, description="wake-ups before this are late (fixed at start)")
    after_id: str | None = Field(default=None, description="cursor: the last enrollment id processed")
    processed: int = Field(default=0, ge=0)
    restarted: int = Field(default=0, ge=0)
    logs: list[GeneratorLogEntry] = Field(default_factory=list)
    omitted_errors: int = Field(default=0, ge=0, description="errors beyond MAX_LOGS, counted only")


class GenerateOrdersError(DomainModel):
    name: Literal["SOME_ENROLLMENTS_COULD_NOT_PROCESS"] = "SOME_ENROLLMENTS_COULD_NOT_PROCESS"
    message: str = ERROR_MESSAGE
    logs: list[GeneratorLogEntry] = Field(min_length=1)


class GenerateOrdersResult(DomainModel):
    """``{"success": true}`` or ``{"success": false, "error": {...}}`` — never ``"error": null``."""

    success: bool
    error: GenerateOrdersError | None = None

    @model_serializer(mode="wrap")
    def _without_null_error(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("error") is None:
            data.pop("error", None)
        return data

    @classmethod
    def from_logs(cls, logs: list[GeneratorLogEntry]) -> GenerateOrdersResult:
        if not logs:
            return cls(success=True)
        return cls(success=False, error=GenerateOrdersError(logs=logs))


@workflow.defn(name=GENERATOR_WORKFLOW_TYPE)
class GenerateEnrollmentOrders:
    """Make sure every ACTIVE and PAUSED enrollment's workflow runs and has caught up; report failures."""

    @workflow.run
    async def run(self, input: GenerateOrdersInput | None = None) -> GenerateOrdersResult:
        state = input.model_copy(deep=True) if input is not None else GenerateOrdersInput()
        if state.due_by is None and not state.every_open:
            state.due_by = workflow.now() + timedelta(seconds=state.due_within_seconds)
            state.late_before = workflow.now() - timedelta(seconds=state.late_after_seconds)
        pages = 0
        while True:
            self._publish(state)
            page = await workflow.execute_activity(
                ActivityName.PROCESS_ENROLLMENT_PAGE,
                EnrollmentPageRequest(
                    after_id=state.after_id,
                    limit=state.page_size,
                    concurrency=state.concurrency,
                    due_by=state.due_by,
                    late_before=state.late_before,
                ),
                result_type=EnrollmentPageResult,
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=PAGE_HEARTBEAT_TIMEOUT,
                retry_policy=PAGE_RETRY,
                summary=f"enrollments after {state.after_id or 'the first'}",
            )
            state.processed += page.processed
            state.restarted += page.restarted
            room = max(state.max_logs - len(state.logs), 0)
            state.logs.extend(page.errors[:room])
            state.omitted_errors += len(page.errors[room:])
            if page.next_after_id is None:
                break
            state.after_id = page.next_after_id
            pages += 1
            if pages >= state.pages_per_run or workflow.info().is_continue_as_new_suggested():
                self._publish(state)
                workflow.continue_as_new(state)
        self._publish(state, done=True)
        logs = list(state.logs)
        if state.omitted_errors:
            logs.append(
                GeneratorLogEntry(
                    name=MORE_ERRORS,
                    message=f"{state.omitted_errors} more enrollments could not be processed (see the worker log)",
                )
            )
        return GenerateOrdersResult.from_logs(logs)

    @staticmethod
    def _publish(state: GenerateOrdersInput, *, done: bool = False) -> None:
        errors = len(state.logs) + state.omitted_errors
        where = "done" if done else f"after {state.after_id}" if state.after_id else "starting"
        workflow.set_current_details(
            f"**{state.processed}** enrollments checked, **{state.restarted}** workflows started, "
            f"**{errors}** errors ({where})"
        )
