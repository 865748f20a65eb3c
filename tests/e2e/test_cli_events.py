"""Events and webhooks through the CLI against the dev stack (SQLite) and a real receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from starter.client import verify_webhook
from starter.devtools.receiver import Received, WebhookReceiver
from tests.support.cli_env import fails, ok, unique
from tests.support.dev_stack_env import ThreadedDevStack
from tests.support.paths import REPO_ROOT

SECRET = "cli-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    try:
        yield started
    finally:
        started.stop()


def wait_for(receiver: WebhookReceiver, done: Callable[[list[Received]], bool]) -> list[Received]:
    deadline = time.monotonic() + 30
    while not done(received := receiver.received):
        assert time.monotonic() < deadline, f"the receiver got {len(received)} requests"
        time.sleep(0.05)
    return received


def endpoints(cli: Any) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(ok(cli("webhook", "list", "--json")).stdout)
    return listed


def test_bad_endpoints_are_refused_and_nothing_is_stored(cli: Any, receiver: WebhookReceiver) -> None:
    before = endpoints(cli)
    fails(
        cli("webhook", "add", "ftp://example.com/hooks", "--secret", SECRET), 2, "url: must be an http:// or https://"
    )
    with_credentials = receiver.url.replace("http://", "http://user:password@")
    fails(cli("webhook", "add", with_credentials, "--secret", SECRET), 2, "url: must not carry credentials")
    fails(cli("webhook", "add", receiver.url, "--secret", "short"), 2, "secret: must be at least 16 characters")
    fails(cli("webhook", "add", receiver.url, "--secret", SECRET, "--events", "order.lost"), 2, "unknown event type")
    assert endpoints(cli) == before


def test_a_webhook_session(cli: Any, product: str, receiver: WebhookReceiver) -> None:
    endpoint_id = json.loads(ok(cli("webhook", "add", receiver.url, "--secret", SECRET, "--json")).stdout)[
        "endpoint_id"
    ]
    assert {"id": endpoint_id, "status": "active", "url": receiver.url}.items() <= next(
        listed for listed in endpoints(cli) if listed["id"] == endpoint_id
    ).items()
    created = ok(cli("create", "--product", product, "--user", unique("u"), "--json"))
    enrollment_id = json.loads(created.stdout)["enrollment_id"]

    def ours(received: list[Received]) -> list[Received]:
        return [r for r in received if verify_webhook(SECRET, r.headers, r.body).enrollment_id == enrollment_id]

    arrived = wait_for(receiver, lambda received: len(ours(received)) >= 4)
    assert [verify_webhook(SECRET, r.headers, r.body).sequence for r in ours(arrived)] == [1, 2, 3, 4]

    page = json.loads(ok(cli("events", "list", "--enrollment", enrollment_id, "--json")).stdout)
    assert [event["type"] for event in page["events"]] == [
        "enrollment.created",
        "enrollment.activated",
        "order.created",
        "enrollment.period_started",
    ]
    orders = json.loads(
        ok(cli("events", "list", "--enrollment", enrollment_id, "--type", "order.created", "--json")).stdout
    )
    assert [event["id"] for event in orders["events"]] == [page["events"][2]["id"]]
    later = ok(cli("events", "list", "--enrollment", enrollment_id, "--after", page["next_cursor"]))
    assert later.stdout == "" and f"--after {page['next_cursor']}" in later.stderr
    text = ok(cli("events", "list", "--enrollment", enrollment_id)).stdout.splitlines()
    assert len(text) == 4 and "enrollment.created" in text[0] and enrollment_id in text[0]
    fails(cli("events", "list", "--type", "enrollment.exploded"), 2, "--type: unknown event type 'enrollment.exploded'")
    fails(cli("events", "list", "--after", "yesterday"), 2, "cursor 'yesterday' is not one this engine returned")

    attempts = json.loads(ok(cli("webhook", "deliveries", endpoint_id, "--json")).stdout)
    assert attempts and all(attempt["status_code"] == 200 for attempt in attempts)
    assert "STATUS" in ok(cli("webhook", "deliveries", endpoint_id)).stdout

    before = len(receiver.received)
    again = json.loads(
        ok(cli("events", "redeliver", "--endpoint", endpoint_id, "--since", "2000-01-01T00:00:00Z", "--json")).stdout
    )
    assert again["pending"] >= 4
    wait_for(receiver, lambda received: len(ours(received[before:])) >= 4)

    assert f"removed webhook endpoint {endpoint_id}" in ok(cli("webhook", "remove", endpoint_id)).stdout
    assert all(listed["id"] != endpoint_id for listed in endpoints(cli))
    fails(cli("webhook", "deliveries", endpoint_id), 1, f"webhook endpoint '{endpoint_id}' not found")
    fails(cli("events", "redeliver", "--endpoint", endpoint_id), 1, "not found")


def test_events_list_follow_prints_new_events_until_ctrl_c(cli: Any, product: str, dev_stack: ThreadedDevStack) -> None:
    config = dev_stack.config
    env = {**os.environ, "DATABASE_URL": config.effective_database_url, "TEMPORAL_ADDRESS": config.address}
    follower = subprocess.Popen(
        [sys.executable, "-m", "starter", "events", "list", "--follow", "--json", "--type", "enrollment.created"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        created = ok(cli("create", "--product", product, "--user", unique("u"), "--json"))
        enrollment_id = json.loads(created.stdout)["enrollment_id"]
        assert follower.stdout is not None
        seen: list[str] = []
        while enrollment_id not in seen:
            batch = json.loads(follower.stdout.readline())
            assert batch["events"] and batch["next_cursor"]
            seen += [event["enrollment_id"] for event in batch["events"]]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
