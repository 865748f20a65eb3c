"""Builds and runs the worker: the enrollment workflows and their activities on the enrollment task queue, and
the webhook delivery workflows and their activity on a task queue of their own, in one process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.enrollment_activities import EnrollmentActivities
from activities.faults import fault_injector
from activities.generator_activities import GeneratorActivities
from activities.persistence import Store, create_engine, session_factory
from activities.webhook_activities import WebhookActivities
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from adapters.lifecycle import generator_task_queue
from adapters.webhooks import DeliveryPolicy, webhook_task_queue
from starter.client import EnrollmentsClient
from starter.connection import Settings, connect
from starter.runtime.observability import EnrollmentMetricsInterceptor, configure_logging, metrics_runtime
from starter.runtime.schedules import apply_autoschedule
from workflows.enrollment import EnrollmentWorkflow
from workflows.order_generator import GenerateEnrollmentOrders
from workflows.webhook_delivery import WebhookDeliveryWorkflow

_logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN_SECONDS = 5.0
"""How long past the graceful shutdown a stopping worker waits for the SDK before the process exits anyway."""

PASSTHROUGH_MODULES = ("adapters",)
"""Pure domain and adapter code shared with the sandbox unchanged; nothing with I/O is passed through."""

WORKFLOWS: Sequence[type] = (EnrollmentWorkflow,)
GENERATOR_WORKFLOWS: Sequence[type] = (GenerateEnrollmentOrders,)
DELIVERY_WORKFLOWS: Sequence[type] = (WebhookDeliveryWorkflow,)


def sandbox_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox: default restrictions, the pure modules passed through, and an error (not a
    silent passthrough) when workflow code imports anything else from the host."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    restrictions = restrictions.with_import_notification_policy(
        workflow.SandboxImportNotificationPolicy.RAISE_ON_UNINTENTIONAL_PASSTHROUGH
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


@dataclass
class WorkerResources:
    """The workers of a process (enrollments, order generator, webhook delivery) and what they own (closed
    together)."""

    worker: Worker
    generator_worker: Worker
    delivery_worker: Worker
    activities: EnrollmentActivities
    webhooks: WebhookActivities
    engine: AsyncEngine

    @property
    def workers(self) -> tuple[Worker, ...]:
        return (self.worker, self.generator_worker, self.delivery_worker)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Every worker polling until the block ends."""
        async with AsyncExitStack() as stack:
            for worker in self.workers:
                await stack.enter_async_context(worker)
            yield

    async def close(self) -> None:
        await self.webhooks.close()
        await self.engine.dispose()


def build_worker(
    client: Client,
    *,
    database_url: str,
    task_queue: str,
    director: EnrollmentDirector,
    max_concurrent_activities: int = 50,
    max_cached_workflows: int = 1_000,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    delivery_task_queue: str | None = None,
    delivery_policy: DeliveryPolicy | None = None,
    next_period_attribute: bool = False,
) -> WorkerResources:
    """Workers for ``task_queue``, its generator queue (``<task_queue>-generator``) and its webhook queue
    (default ``<task_queue>-webhooks``) on ``database_url``.

    ``max_cached_workflows``: past it, a woken enrollment is replayed from its history first (slower, and
    a generator pass over more open enrollments than the cache holds replays most of them).
    ``graceful_shutdown``: how long running activities may finish when the worker stops (then cancelled).
    """
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    activities = EnrollmentActivities(store, director)
    # The order generator runs on its own queue; its activity signals-with-start enrollment workflows on this one.
    generator = GeneratorActivities(
        store, director, client, task_queue=task_queue, next_period_attribute=next_period_attribute
    )
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities.all(),
        workflow_runner=sandbox_runner(),
        max_concurrent_activities=max_concurrent_activities,
        max_cached_workflows=max_cached_workflows,
        graceful_shutdown_timeout=graceful_shutdown,
        # Project counters on the client's runtime meter: served with the SDK's metrics when it has Prometheus.
        interceptors=[
            EnrollmentMetricsInterceptor((client.service_client.config.runtime or Runtime.default()).metric_meter)
        ],
    )
    generator_worker = Worker(
        client,
        task_queue=generator_task_queue(task_queue),
        workflows=list(GENERATOR_WORKFLOWS),
        activities=generator.all(),
        workflow_runner=sandbox_runner(),
        graceful_shutdown_timeout=graceful_shutdown,
    )
    webhooks = WebhookActivities(store, delivery_policy or DeliveryPolicy())
    delivery_worker = Worker(
        client,
        task_queue=delivery_task_queue or webhook_task_queue(task_queue),
        workflows=list(DELIVERY_WORKFLOWS),
        activities=webhooks.all(),
        workflow_runner=sandbox_runner(),
        graceful_shutdown_timeout=graceful_shutdown,
    )
    return WorkerResources(
        worker=worker,
        generator_worker=generator_worker,
        delivery_worker=delivery_worker,
        activities=activities,
        webhooks=webhooks,
        engine=engine,
    )


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then stop within ``ENROLLMENTS_SHUTDOWN_SECONDS``, whatever happens.

    Activities get that long to finish, then they are cancelled; should the worker still not have stopped a
    few seconds later (an activity stuck in a blocking call), the process exits anyway, with status 1 and a
    log line saying so: an operator's SIGTERM is always obeyed. Workflows lose nothing: Temporal gives their
    tasks to the next worker.
    """
    configure_logging(settings.log_format, settings.log_level)
    fault_injector.configure(settings.faults)  # ENROLLMENTS_FAULTS: test-only fault injection (off when unset)
    client = await connect(settings, metrics_runtime(settings.metrics_port, settings.metrics_host))
    resources = build_worker(
        client,
        database_url=settings.database_url,
        task_queue=settings.task_queue,
        director=director_from_names(settings.adapter_names),
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown=timedelta(seconds=settings.shutdown_seconds),
        delivery_task_queue=settings.webhook_task_queue,
        delivery_policy=settings.delivery_policy(),
        next_period_attribute=settings.next_period_attribute,
    )
    await apply_autoschedule(client, settings)  # ENROLLMENTS_AUTOSCHEDULE_CRON: the order generator's schedule
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    workers = resources.workers
    runs = [asyncio.create_task(worker.run()) for worker in workers]
    stopping = asyncio.create_task(stop.wait())
    try:
        await start_webhook_deliveries(client, settings)
        await asyncio.wait({*runs, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            _logger.info("stopping the worker (at most %.0f s)", settings.shutdown_seconds)
        else:  # a worker failed on its own (e.g. the server went away for good): the process stops with it
            _logger.error("a worker stopped on its own; stopping the process")
        shutdown = asyncio.gather(*(worker.shutdown() for worker in workers))
        await asyncio.wait_for(shutdown, timeout=settings.shutdown_seconds + SHUTDOWN_MARGIN_SECONDS)
        for run in runs:
            await run  # a worker's own failure is raised here
    except TimeoutError:
        _logger.error("the worker did not stop within %.0f s; exiting anyway", settings.shutdown_seconds)
        logging.shutdown()
        os._exit(1)
    finally:
        stopping.cancel()
        await resources.close()


async def start_webhook_deliveries(client: Client, settings: Settings) -> None:
    """Make sure every webhook endpoint's delivery workflow runs (also one whose start failed when it was added).

    A safety net, so a failure (the database is down) is logged and the worker runs on: the workflows of
    endpoints added normally run already.
    """
    enrollments = EnrollmentsClient(
        client,
        task_queue=settings.task_queue,
        database_url=settings.database_url,
        webhook_task_queue=settings.webhook_task_queue,
    )
    try:
        await enrollments.start_webhook_deliveries()
    except Exception as error:  # logged: the worker runs anyway
        logging.getLogger(__name__).warning("could not start the webhook delivery workflows: %s", error)
    finally:
        await enrollments.close()
