"""The workflow sandbox: workflow modules import no I/O code, and the worker refuses those that do."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from starter.runtime.worker import DELIVERY_WORKFLOWS, GENERATOR_WORKFLOWS, WORKFLOWS, sandbox_runner

IO_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "alembic", "activities", "starter")


def test_workflow_modules_import_no_io_code() -> None:
    probe = (
        "import sys, workflows.enrollment, workflows.transitions, workflows.details, workflows.webhook_delivery;"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({IO_MODULES!r})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


async def test_worker_validates_the_project_workflows(time_skipping_env) -> None:
    client: Client = time_skipping_env.client
    every = [*WORKFLOWS, *GENERATOR_WORKFLOWS, *DELIVERY_WORKFLOWS]
    worker = Worker(client, task_queue=f"q-{uuid.uuid4().hex[:6]}", workflows=every, workflow_runner=sandbox_runner())
    assert list(worker.config()["workflows"]) == every  # validated while constructing
    async with worker:
        pass


async def test_worker_refuses_a_workflow_that_imports_io_code(time_skipping_env) -> None:
    from tests.support.sandbox_probe.leaky_workflow import LeakyWorkflow

    with pytest.raises(RuntimeError, match="Failed validating workflow LeakyWorkflow") as caught:
        Worker(
            time_skipping_env.client,
            task_queue=f"q-{uuid.uuid4().hex[:6]}",
            workflows=[LeakyWorkflow],
            workflow_runner=sandbox_runner(),
        )
    assert "activities" in repr(caught.value.__cause__)
