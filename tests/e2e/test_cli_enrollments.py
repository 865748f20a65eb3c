"""The operators' CLI against a real stack: products, create, commands, status, access, list and their errors."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from starter.cli import app
from starter.devtools.stack import free_port
from tests.support.dev_stack_env import ThreadedDevStack

ENV_VARS = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE")
MINUTE_PLAN = '{"billing_interval": "MINUTES", "billing_interval_count": 30}'


@pytest.fixture
def cli(dev_stack: ThreadedDevStack, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    config = dev_stack.config
    global_options = ["--address", config.address, "--database-url", config.effective_database_url]

    def invoke(*args: str, options: list[str] | None = None) -> Result:
        return runner.invoke(app, [*(global_options if options is None else options), *args])

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fails(result: Result, exit_code: int, message: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def product(cli: Any) -> str:
    product_id = unique("cli-product")
    ok(cli("product", "create", "--id", product_id, "--plan", MINUTE_PLAN, "--title", "CLI test"))
    return product_id


def test_products_create_list_show(cli: Any) -> None:
    product_id = unique("p")
    created = json.loads(ok(cli("product", "create", "--id", product_id, "--plan", MINUTE_PLAN, "--json")).stdout)
    assert created["id"] == product_id and created["type"] == "PLAN_PRODUCT"
    assert created["plan"]["billing_interval"] == "MINUTES" and created["plan"]["billing_interval_count"] == 30
    assert (
        f"product {product_id} saved: LICENSED every 30 MINUTES"
        in ok(cli("product", "create", "--id", product_id, "--plan", MINUTE_PLAN)).stdout
    )
    listed = json.loads(ok(cli("product", "list", "--json")).stdout)
    assert [item for item in listed if item["id"] == product_id] == [created]
    assert product_id in ok(cli("product", "list")).stdout
    assert json.loads(ok(cli("product", "show", product_id, "--json")).stdout) == created
    assert "every 30 MINUTES" in ok(cli("product", "show", product_id)).stdout


def test_product_errors_are_one_line(cli: Any) -> None:
    fails(cli("product", "show", "no-such-product"), 1, "product 'no-such-product' not found")
    fails(
        cli(
            "product", "create", "--id", "bad", "--plan", '{"billing_interval": "MONTHS", "billing_interval_count": 0}'
        ),
        2,
        "plan.billing_interval_count: must be at least 1",
    )
    fails(cli("product", "create", "--id", "bad"), 2, "plan: is required for a PLAN_PRODUCT")


def test_enrollment_lifecycle_through_the_cli(cli: Any, product: str) -> None:
    user = unique("user")
    created = ok(
        cli(
            "create",
            "--product",
            product,
            "--user",
            user,
            "--quantity",
            "3",
            "--configuration",
            '{"size": "L"}',
            "--timezone",
            "Europe/Zurich",
            "--json",
        )
    )
    enrollment_id = json.loads(created.stdout)["enrollment_id"]

    view = json.loads(ok(cli("status", enrollment_id, "--json")).stdout)
    assert view["id"] == enrollment_id and view["status"] == "ACTIVE"
    assert view["quantity"] == 3 and view["configuration"] == [{"key": "size", "value": "L"}]
    assert view["timezone"] == "Europe/Zurich"
    (period,) = view["periods"]
    assert set(period) >= {"start", "end", "is_trial", "order_id"}
    assert period["start"].endswith("Z") and period["is_trial"] is False
    (order,) = view["orders"]
    assert order["id"] == period["order_id"] and order["status"] == "PENDING"
    text = ok(cli("status", enrollment_id)).stdout
    assert "ACTIVE" in text and order["number"] in text

    access = json.loads(ok(cli("access", enrollment_id, "--json")).stdout)
    assert access["valid"] is True and access["at"].endswith("Z")
    before = json.loads(ok(cli("access", enrollment_id, "--at", "2001-01-01T00:00:00Z", "--json")).stdout)
    assert before == {"valid": False, "at": "2001-01-01T00:00:00Z"}

    paid = json.loads(ok(cli("order-status", order["id"], "confirmed", "--json")).stdout)
    assert paid["orders"][0]["status"] == "CONFIRMED"

    assert "PAUSED (manual)" in ok(cli("pause", enrollment_id, "--reason", "holiday")).stdout
    assert json.loads(ok(cli("access", enrollment_id, "--json")).stdout)["valid"] is False
    paused = json.loads(ok(cli("list", "--status", "PAUSED", "--user", user, "--json")).stdout)
    assert [item["id"] for item in paused] == [enrollment_id]
    assert paused[0]["orders"][0]["status"] == "CONFIRMED"
    fails(cli("pause", enrollment_id), 1, "PAUSED")

    resumed = json.loads(ok(cli("resume", enrollment_id, "--json")).stdout)
    assert resumed["status"] == "ACTIVE"
    scheduled = ok(cli("terminate", enrollment_id, "--at-period-end")).stdout
    assert "ACTIVE; terminate scheduled at" in scheduled
    terminated = json.loads(ok(cli("terminate", enrollment_id, "--immediately", "--json")).stdout)
    assert terminated["status"] == "TERMINATED" and terminated["expires"] is not None
    fails(cli("resume", enrollment_id), 1, "TERMINATED")
    assert json.loads(ok(cli("access", enrollment_id, "--json")).stdout)["valid"] is False


def test_create_is_idempotent_for_an_id_and_prints_it(cli: Any, product: str) -> None:
    enrollment_id = unique("fixed")
    args = ("create", "--product", product, "--user", "u-1", "--id", enrollment_id)
    assert ok(cli(*args)).stdout == f"{enrollment_id}\n"
    assert ok(cli(*args)).stdout == f"{enrollment_id}\n"
    fails(cli(*args[:-2], "--quantity", "2", "--id", enrollment_id), 1, "already exists with different terms")


def test_list_pages_and_filters(cli: Any, product: str) -> None:
    user = unique("pager")
    ids = [json.loads(ok(cli("create", "--product", product, "--user", user, "--json")).stdout)["enrollment_id"]]
    ids += [json.loads(ok(cli("create", "--product", product, "--user", user, "--json")).stdout)["enrollment_id"]]
    ids += [json.loads(ok(cli("create", "--product", product, "--user", user, "--json")).stdout)["enrollment_id"]]

    def listed(*args: str) -> list[str]:
        return [item["id"] for item in json.loads(ok(cli("list", "--user", user, *args, "--json")).stdout)]

    assert listed() == ids
    assert listed("--limit", "2") == ids[:2]
    assert listed("--limit", "2", "--page", "2") == ids[2:]
    assert listed("--limit", "1", "--offset", "1") == ids[1:2]
    assert listed("--limit", "1", "--all") == ids
    assert listed("--product", "no-such-product") == []
    assert listed("--status", "TERMINATED") == []
    table = ok(cli("list", "--user", user, "--limit", "2"))
    assert table.stdout.splitlines()[0].split() == ["ID", "NUMBER", "STATUS", "PRODUCT", "USER", "PERIOD", "ENDS"]
    assert all(identifier in table.stdout for identifier in ids[:2]) and "--page 2" not in table.stdout
    assert "--offset 2" in table.stderr


def test_unknown_ids_are_clean_errors(cli: Any, product: str) -> None:
    for command in (
        ["status", "nope"],
        ["access", "nope"],
        ["pause", "nope"],
        ["resume", "nope"],
        ["terminate", "nope"],
    ):
        fails(cli(*command), 1, "enrollment 'nope' not found")
    fails(cli("order-status", "no-such-order", "CONFIRMED"), 1, "order 'no-such-order' not found")
    fails(cli("create", "--product", "no-such-product", "--user", "u"), 1, "product 'no-such-product' does not exist")


def test_invalid_input_is_a_usage_error(cli: Any, product: str) -> None:
    fails(cli("terminate", "x", "--at-period-end", "--immediately"), 2, "exclude each other")
    fails(cli("create", "--product", product, "--user", "u", "--start", "tomorrow"), 2, "--start: 'tomorrow'")
    fails(cli("create", "--product", product, "--user", "u", "--timezone", "Mars/Base"), 2, "--timezone")
    fails(cli("create", "--product", product, "--user", "u", "--configuration", "{"), 2, "--configuration: is not")
    fails(cli("access", "x", "--at", "2031-01-01T00:00:00"), 2, "has no UTC offset")
    fails(cli("order-status", "o", "PAID"), 2, "'PAID' is not one of")


def test_unreachable_temporal_is_one_line(cli: Any, dev_stack: ThreadedDevStack) -> None:
    address = f"127.0.0.1:{free_port()}"
    options = ["--address", address, "--database-url", dev_stack.config.effective_database_url]
    fails(cli("status", "anything", options=options), 1, f"cannot reach Temporal at {address}")
    debug = cli("status", "anything", options=["--debug", *options])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == f"error: cannot reach Temporal at {address}"


def test_unmigrated_database_names_the_fix(cli: Any, tmp_path: Any) -> None:
    options = ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"]
    fails(cli("product", "list", options=options), 1, "run `enrollments db upgrade` first")
