"""WebhookDelivery: one long-lived workflow per webhook endpoint, on the webhook task queue.

It loops: one dispatch pass (an activity that takes the endpoint's new events from the outbox and POSTs what is
due), then a durable wait until the next poll or the earliest retry, whichever comes first; a ``wake`` signal
cuts the wait short. When an event's retries ran out the endpoint is failing: the workflow waits for ``wake``
(``enrollments events redeliver``) and says so in its current details in the Web UI. It ends when the endpoint
is removed and continues as new every ``DISPATCHES_PER_RUN`` passes. Enrollment workflows know nothing of it:
events cost their histories nothing.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from adapters.webhooks import (
        DISPATCH_ACTIVITY,
        WAKE_SIGNAL,
        WEBHOOK_WORKFLOW_TYPE,
        DispatchRequest,
        DispatchResult,
        WebhookDeliveryInput,
    )

DISPATCHES_PER_RUN = 500
"""Passes before continue-as-new: a run's history stays at a few thousand events."""
PASS_TIMEOUT = timedelta(minutes=5)
PASS_HEARTBEAT_TIMEOUT = timedelta(minutes=1)
PASS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)
"""A pass that fails (the database is down, the worker died) is retried until it works."""


@workflow.defn(name=WEBHOOK_WORKFLOW_TYPE)
class WebhookDeliveryWorkflow:
    """Deliver an endpoint's events: signed, in order per enrollment, retried with backoff, never lost."""

    def __init__(self) -> None:
        self._woken = False

    @workflow.signal(
        name=WAKE_SIGNAL, description="Dispatch now (after a redeliver, or when the endpoint was removed)."
    )
    def wake(self) -> None:
        self._woken = True

    @workflow.run
    async def run(self, input: WebhookDeliveryInput) -> WebhookDeliveryInput:
        totals = input.model_copy()
        for _ in range(DISPATCHES_PER_RUN):
            self._woken = False
            result: DispatchResult = await workflow.execute_activity(
                DISPATCH_ACTIVITY,
                DispatchRequest(endpoint_id=input.endpoint_id),
                result_type=DispatchResult,
                start_to_close_timeout=PASS_TIMEOUT,
                heartbeat_timeout=PASS_HEARTBEAT_TIMEOUT,
                retry_policy=PASS_RETRY,
                summary=f"dispatch to endpoint {input.endpoint_id}",
            )
            if result.removed:
                workflow.set_current_details(f"## Webhook endpoint {input.endpoint_id}\n**Removed.**")
                return totals
            totals.delivered += result.delivered
            totals.failed_attempts += result.failed_attempts
            workflow.set_current_details(render_details(totals, result))
            if result.more:
                continue
            if result.failing_since is not None:
                await workflow.wait_condition(lambda: self._woken)
                continue
            await self._wait(result)
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(totals)

    async def _wait(self, result: DispatchResult) -> None:
        """As long as the pass said (the next poll or the earliest retry), or until a ``wake`` signal."""
        if result.wait_seconds <= 0 or self._woken:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._woken, timeout=timedelta(seconds=result.wait_seconds))


def render_details(totals: WebhookDeliveryInput, result: DispatchResult) -> str:
    """The endpoint's state as markdown for the Web UI's current details."""
    lines = [f"## Webhook endpoint {totals.endpoint_id}", f"**URL:** {result.url}  "]
    if result.failing_since is not None:
        lines.append(
            f"**Status:** FAILING since {result.failing_since.isoformat()}: its events wait for "
            f"`enrollments events redeliver --endpoint {totals.endpoint_id}`  "
        )
    else:
        lines.append("**Status:** active  ")
    lines.append(
        f"**Delivered:** {totals.delivered} · **Failed attempts:** {totals.failed_attempts} · "
        f"**Pending:** {result.pending}  "
    )
    if result.next_retry is not None:
        lines.append(f"**Next retry:** {result.next_retry.isoformat()}  ")
    if result.last_error:
        lines.append(f"**Last error:** {result.last_error}")
    return "\n".join(lines)
