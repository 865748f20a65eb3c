"""Builds and runs the worker: the enrollment workflow plus its activities on one task queue."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from dataclasses import dataclass

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
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from starter.connection import Settings, connect
from starter.runtime.observability import EnrollmentMetricsInterceptor, configure_logging, metrics_runtime
from starter.runtime.schedules import apply_autoschedule
from workflows.enrollment import EnrollmentWorkflow
from workflows.order_generator import GenerateEnrollmentOrders

PASSTHROUGH_MODULES = ("adapters",)
"""Pure domain and adapter code shared with the sandbox unchanged; nothing with I/O is passed through."""

WORKFLOWS: Sequence[type] = (EnrollmentWorkflow, GenerateEnrollmentOrders)


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
    """A worker and what it owns (closed together)."""

    worker: Worker
    activities: EnrollmentActivities
    engine: AsyncEngine

    async def close(self) -> None:
        await self.engine.dispose()


def build_worker(
    client: Client,
    *,
    database_url: str,
    task_queue: str,
    director: EnrollmentDirector,
    max_concurrent_activities: int = 50,
    max_cached_workflows: int = 1_000,
) -> WorkerResources:
    """A worker for ``task_queue`` whose activities persist to ``database_url``.

    ``max_cached_workflows``: past it, a woken enrollment is replayed from its history first (slower, and
    a generator pass over more open enrollments than the cache holds replays most of them).
    """
    engine = create_engine(database_url)
    store = Store.over(session_factory(engine))
    activities = EnrollmentActivities(store, director)
    # The order generator's activity signals-with-start enrollment workflows on this same task queue.
    generator = GeneratorActivities(store, director, client, task_queue=task_queue)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=[*activities.all(), *generator.all()],
        workflow_runner=sandbox_runner(),
        max_concurrent_activities=max_concurrent_activities,
        max_cached_workflows=max_cached_workflows,
        # Project counters on the client's runtime meter: served with the SDK's metrics when it has Prometheus.
        interceptors=[
            EnrollmentMetricsInterceptor((client.service_client.config.runtime or Runtime.default()).metric_meter)
        ],
    )
    return WorkerResources(worker=worker, activities=activities, engine=engine)


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then shut down gracefully."""
    configure_logging(settings.log_format, settings.log_level)
    fault_injector.configure(settings.faults)  # ENROLLMENTS_FAULTS: test-only fault injection (off when unset)
    client = await connect(settings, metrics_runtime(settings.metrics_port, settings.metrics_host))
    resources = build_worker(
        client,
        database_url=settings.database_url,
        task_queue=settings.task_queue,
        director=director_from_names(settings.adapter_names),
        max_cached_workflows=settings.max_cached_workflows,
    )
    await apply_autoschedule(client, settings)  # ENROLLMENTS_AUTOSCHEDULE_CRON: the order generator's schedule
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with resources.worker:
            await stop.wait()
    finally:
        await resources.close()
