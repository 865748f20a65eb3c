"""Metrics and structured logs: a worker with Prometheus on a free loopback port, scraped over HTTP."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
import uuid

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.faults import FaultPoint, fault_injector
from adapters.builtin import director_from_names
from adapters.domain import BillingInterval, ProductPlan, UsageCalculationType
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from starter.connection.settings import Settings
from starter.devtools.stack import free_port
from starter.runtime.observability import (
    ACTIVITY_FAILURES,
    ORDERS_CREATED,
    PERIODS_STARTED,
    REGISTRATIONS_REFUSED,
    STATUS_CHANGES,
    JsonFormatter,
    TextFormatter,
    enrollment_id_of,
    log_handler,
    metrics_runtime,
)
from starter.runtime.worker import build_worker
from tests.support.dev_stack_env import ThreadedDevStack
from tests.support.temporal_env import add_product


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` in a Prometheus text exposition: (labels, value)."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(value for found, value in samples(text, name) if all(found.get(k) == v for k, v in labels.items()))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def run_enrollments(address: str, database_url: str, port: int) -> dict[str, str]:
    """A worker with metrics on ``port``: one enrollment through a period (its registration crashes once after its
    commit, and is retried), paused; one refused at registration (a metered plan, which the worker's director has
    no adapter for: the client cannot know, the registration refuses)."""
    runtime = metrics_runtime(port)
    client = await Client.connect(address, data_converter=pydantic_data_converter, runtime=runtime)
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    resources = build_worker(
        client, database_url=database_url, task_queue=queue, director=director_from_names(["licensed"])
    )
    product_id = f"metrics-{uuid.uuid4().hex[:6]}"
    await add_product(database_url, product_id, ProductPlan(billing_interval=BillingInterval.MINUTES))
    metered = ProductPlan(billing_interval=BillingInterval.MINUTES, usage_calculation_type=UsageCalculationType.METERED)
    await add_product(database_url, f"{product_id}-metered", metered)
    enrollments = EnrollmentsClient(client, task_queue=queue, database_url=database_url)
    try:
        async with resources.worker:
            fault_injector.arm(FaultPoint.AFTER_COMMIT, times=1)  # the registration fails once, after its commit
            enrollment_id = await enrollments.create_enrollment(product_id=product_id, user_id="metrics-user")
            await enrollments.pause(enrollment_id, reason="metrics test")
            with pytest.raises(EnrollmentCommandRejected, match="no enrollment adapter is activated"):
                await enrollments.create_enrollment(product_id=f"{product_id}-metered", user_id="metrics-user")
    finally:
        fault_injector.disarm()
        await enrollments.close()
        await resources.close()
    return {"enrollment_id": enrollment_id, "task_queue": queue}


def test_worker_serves_sdk_and_project_metrics_and_logs_the_enrollment(dev_stack: ThreadedDevStack) -> None:
    port = free_port()
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        ran = dev_stack.run(run_enrollments(dev_stack.config.address, dev_stack.config.effective_database_url, port))
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)

    text = scrape(port)
    queue = ran["task_queue"]
    assert total(text, PERIODS_STARTED, task_queue=queue) == 1
    assert total(text, ORDERS_CREATED, task_queue=queue) == 1
    assert total(text, STATUS_CHANGES, task_queue=queue, status="PAUSED") == 1
    assert total(text, ACTIVITY_FAILURES, task_queue=queue, activity="register_enrollment") == 1
    assert total(text, REGISTRATIONS_REFUSED, task_queue=queue, type="NoAdapterForPlan") == 1
    assert samples(text, "temporal_request"), "the SDK's own metrics are missing"
    assert any(
        labels.get("task_queue") == queue for labels, _ in samples(text, "temporal_activity_execution_latency_count")
    )

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = [record for record in records if record.get("enrollment_id") == ran["enrollment_id"]]
    messages = [record["message"] for record in about]
    assert any(message.startswith("periods started: ") for message in messages), messages
    assert any(message.startswith("orders created: O-") for message in messages), messages
    assert any(message.startswith("status changed to PAUSED: paused: metrics test") for message in messages), messages
    assert all({"ts", "level", "logger", "message"} <= set(record) for record in records)
    assert about[0]["temporal_activity"]["workflow_id"] == f"enrollment-{ran['enrollment_id']}"


def test_formatters_carry_the_enrollment_id() -> None:
    record = logging.makeLogRecord(
        {
            "name": "temporalio.workflow",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "ignored %s",
            "args": ("pause",),
            "temporal_workflow": {"workflow_id": "enrollment-abc", "run_id": "r1"},
        }
    )
    assert enrollment_id_of(record) == "abc"
    line = json.loads(JsonFormatter().format(record))
    assert line["enrollment_id"] == "abc" and line["message"] == "ignored pause" and line["level"] == "warning"
    assert line["temporal_workflow"] == {"workflow_id": "enrollment-abc", "run_id": "r1"}
    assert TextFormatter().format(record).endswith("ignored pause [enrollment abc]")
    other = logging.makeLogRecord({"msg": "hello", "temporal_workflow": {"workflow_id": "order-generator"}})
    assert enrollment_id_of(other) is None and "enrollment_id" not in json.loads(JsonFormatter().format(other))


def test_metrics_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENROLLMENTS_METRICS_PORT", "")
    assert Settings().metrics_port is None
    monkeypatch.setenv("ENROLLMENTS_METRICS_PORT", "9464")
    monkeypatch.setenv("ENROLLMENTS_LOG_FORMAT", "text")
    settings = Settings()
    assert settings.metrics_port == 9464 and settings.log_format == "text"
    assert metrics_runtime(0) is None and metrics_runtime(None) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_worker_cache_size_setting(monkeypatch: pytest.MonkeyPatch, time_skipping_env, database_url) -> None:
    assert Settings().max_cached_workflows == 1_000
    monkeypatch.setenv("ENROLLMENTS_MAX_CACHED_WORKFLOWS", "5000")
    settings = Settings()
    assert settings.max_cached_workflows == 5_000
    monkeypatch.setenv("ENROLLMENTS_MAX_CACHED_WORKFLOWS", "-1")
    with pytest.raises(ValueError, match="ENROLLMENTS_MAX_CACHED_WORKFLOWS"):
        Settings()
    resources = build_worker(
        time_skipping_env.client,
        database_url=database_url,
        task_queue="cache-size",
        director=director_from_names(["licensed"]),
        max_cached_workflows=settings.max_cached_workflows,
    )
    try:
        assert resources.worker.config()["max_cached_workflows"] == 5_000
    finally:
        await resources.close()
