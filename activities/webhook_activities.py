"""The webhook delivery activity: one dispatch pass for one endpoint.

A pass takes the endpoint's new events from the outbox, then POSTs what is due: the events of one enrollment
one after the other, in order, and up to ``concurrency`` enrollments at once. A failed POST stops its
enrollment for this pass and sets when to try again (the policy's backoff); once an event has failed for the
policy's whole retry window the endpoint is marked failing and waits for ``redeliver``. Attempts are recorded in
batches, beside the POSTs: a crash before a batch is stored sends those events again (same ids), never skips
one. The waiting between passes is the workflow's (timers); a pass itself never sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity

from activities.faults import FaultPoint, fault_injector
from activities.persistence import Store
from activities.persistence.deliveries import AttemptOutcome, EndpointTarget, PendingDelivery
from activities.webhook_http import new_http_client, post_event
from adapters.webhooks import DISPATCH_ACTIVITY, DeliveryPolicy, DispatchRequest, DispatchResult

TAKE_LIMIT = 1_000
"""Outbox events turned into deliveries per pass at most."""
PER_ENROLLMENT = 100
"""Events of one enrollment delivered per pass at most (the others' turn comes in the next pass)."""
LOAD_LIMIT = 5_000
"""Pending deliveries loaded per pass at most."""
RECORD_EVERY = 100
"""Attempts stored per transaction (a crash before a batch is stored sends its events again)."""
PASS_SECONDS = 30.0
"""No new POST starts after a pass has run this long (the next pass goes on at once)."""


@dataclass
class _Pass:
    """The state of one dispatch pass."""

    endpoint_id: str
    target: EndpointTarget
    started: float = field(default_factory=time.monotonic)
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    next_retry: datetime | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    out_of_time: bool = False
    recording: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: asyncio.TaskGroup | None = None

    def retry_at(self, moment: datetime | None) -> None:
        if moment is not None and (self.next_retry is None or moment < self.next_retry):
            self.next_retry = moment


class WebhookActivities:
    """The delivery activity, bound to a store, a policy and an HTTP client (build one per worker)."""

    def __init__(self, store: Store, policy: DeliveryPolicy, http: httpx.AsyncClient | None = None) -> None:
        self.store = store
        self.policy = policy
        self.http = http or new_http_client(policy)
        self._retry_window = timedelta(seconds=policy.retry_for_seconds)

    def all(self) -> list[Callable[..., Any]]:
        return [self.dispatch_webhook_events]

    async def close(self) -> None:
        await self.http.aclose()

    @activity.defn(name=DISPATCH_ACTIVITY)
    async def dispatch_webhook_events(self, request: DispatchRequest) -> DispatchResult:
        """Take the endpoint's new events, deliver what is due, report when the workflow should come back."""
        deliveries = self.store.deliveries
        target, more_events = await deliveries.take_new_events(request.endpoint_id, limit=TAKE_LIMIT)
        poll = self.policy.poll_seconds
        if target is None:
            return DispatchResult(removed=True, wait_seconds=poll)
        if target.failing_since is not None:
            return DispatchResult(
                url=target.url,
                pending=await deliveries.count_pending(request.endpoint_id),
                failing_since=target.failing_since,
                last_error=target.last_error,
                wait_seconds=poll,
            )
        loaded = await deliveries.pending(request.endpoint_id, per_enrollment=PER_ENROLLMENT, limit=LOAD_LIMIT)
        chains: dict[str, list[PendingDelivery]] = {}
        for delivery in loaded:
            chains.setdefault(delivery.enrollment_id, []).append(delivery)
        run = _Pass(request.endpoint_id, target)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def deliver_chain(chain: list[PendingDelivery]) -> None:
            async with gate:
                await self._deliver_in_order(run, chain)

        try:
            async with asyncio.TaskGroup() as group:
                run.tasks = group
                for chain in chains.values():
                    group.create_task(deliver_chain(chain))
        except BaseExceptionGroup as failures:  # the first failure (the database is down, …) fails the pass
            raise failures.exceptions[0] from None
        await self._record(run)
        if run.failing_since is not None:
            await deliveries.mark_failing(request.endpoint_id, since=run.failing_since, error=run.last_error)
        truncated = len(loaded) == LOAD_LIMIT or any(len(chain) == PER_ENROLLMENT for chain in chains.values())
        return DispatchResult(
            url=target.url,
            delivered=run.delivered,
            failed_attempts=run.failed,
            pending=await deliveries.count_pending(request.endpoint_id),
            more=run.failing_since is None and (more_events or (run.delivered > 0 and (truncated or run.out_of_time))),
            next_retry=run.next_retry,
            failing_since=run.failing_since,
            last_error=run.last_error,
            # The next poll, or sooner the earliest retry (by this worker's clock, which set the retry times).
            wait_seconds=min(poll, _seconds_until(run.next_retry)),
        )

    async def _deliver_in_order(self, run: _Pass, chain: list[PendingDelivery]) -> None:
        """One enrollment's due events in order, until one fails or the pass must end."""
        for delivery in chain:
            now = datetime.now(UTC)
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
                run.retry_at(delivery.next_attempt_at)  # only an enrollment's oldest event can be waiting
                return
            if run.failing_since is not None or time.monotonic() - run.started > PASS_SECONDS:
                run.out_of_time = run.failing_since is None
                return
            result = await post_event(self.http, run.target.url, run.target.secret, delivery.event, self.policy)
            at = datetime.now(UTC)
            attempts = delivery.attempts + 1
            first_failed_at = delivery.first_failed_at if result.delivered else delivery.first_failed_at or at
            next_attempt_at = None if result.delivered else at + self.policy.backoff(attempts)
            if result.delivered:
                run.delivered += 1
            else:
                run.failed += 1
                run.last_error = result.error
                if first_failed_at is not None and at - first_failed_at >= self._retry_window:
                    run.failing_since = at  # retries ran out: every delivery of the endpoint stops
                run.retry_at(next_attempt_at)
            outcome = AttemptOutcome(
                delivery_id=delivery.delivery_id,
                event=delivery.event,
                at=at,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
                delivered=result.delivered,
                attempts=attempts,
                first_failed_at=first_failed_at,
                next_attempt_at=next_attempt_at,
            )
            run.outcomes.append(outcome)
            if len(run.outcomes) >= RECORD_EVERY and not run.recording.locked() and run.tasks is not None:
                run.tasks.create_task(self._record(run))  # beside the POSTs: no enrollment waits for it
            if not result.delivered:
                return

    async def _record(self, run: _Pass) -> None:
        """Store the outcomes gathered so far (one transaction), then report progress."""
        async with run.recording:
            outcomes, run.outcomes = run.outcomes, []
            if not outcomes:
                return
            await self.store.deliveries.record(run.endpoint_id, outcomes)
            fault_injector.hit(FaultPoint.AFTER_COMMIT)
            activity.heartbeat(run.delivered)


def _seconds_until(moment: datetime | None) -> float:
    return float("inf") if moment is None else max((moment - datetime.now(UTC)).total_seconds(), 0.0)
