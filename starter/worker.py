"""Builds and runs the worker: the enrollment workflow plus its activities on one task queue."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.enrollment_activities import EnrollmentActivities
from activities.persistence import EnrollmentRepository, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from starter.settings import Settings
from workflows.enrollment import EnrollmentWorkflow

PASSTHROUGH_MODULES = ("adapters",)
"""Pure domain and adapter code shared with the sandbox unchanged; nothing with I/O is passed through."""

WORKFLOWS: Sequence[type] = (EnrollmentWorkflow,)


def sandbox_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox: default restrictions, the pure modules passed through, and an error (not a
    silent passthrough) when workflow code imports anything else from the host."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    restrictions = restrictions.with_import_notification_policy(
        workflow.SandboxImportNotificationPolicy.RAISE_ON_UNINTENTIONAL_PASSTHROUGH
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


async def connect(settings: Settings) -> Client:
    """A Temporal client with the pydantic data converter, from settings."""
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )


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
) -> WorkerResources:
    """A worker for ``task_queue`` whose activities persist to ``database_url``."""
    engine = create_engine(database_url)
    activities = EnrollmentActivities(EnrollmentRepository(session_factory(engine)), director)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=activities.all(),
        workflow_runner=sandbox_runner(),
        max_concurrent_activities=max_concurrent_activities,
    )
    return WorkerResources(worker=worker, activities=activities, engine=engine)


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then shut down gracefully."""
    client = await connect(settings)
    resources = build_worker(
        client,
        database_url=settings.database_url,
        task_queue=settings.task_queue,
        director=director_from_names(settings.adapter_names),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with resources.worker:
            await stop.wait()
    finally:
        await resources.close()
