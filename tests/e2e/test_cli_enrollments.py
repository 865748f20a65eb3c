"""The operators' CLI against a real stack: products, create, commands, status, access, list and their errors."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from starter.devtools.stack import free_port
from tests.support.cli_env import MINUTE_PLAN, fails, ok, unique
from tests.support.dev_stack_env import ThreadedDevStack
from tests.support.paths import REPO_ROOT


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

    listed = json.loads(ok(cli("list", "--user", user, "--json")).stdout)
    assert listed[0]["next_wake_up"] == view["next_wake_up"] == period["end"], "the next period, from the database"
    assert listed[0]["scheduled"] is None
    due = json.loads(ok(cli("list", "--user", user, "--due-before", period["end"], "--json")).stdout)
    assert due == [], "due before its next wake-up: not yet"
    due = json.loads(ok(cli("list", "--user", user, "--due-before", "2999-01-01T00:00:00Z", "--json")).stdout)
    assert [item["id"] for item in due] == [enrollment_id]
    fails(cli("list", "--due-before", "tomorrow"), 2, "--due-before")

    assert "PAUSED (manual)" in ok(cli("pause", enrollment_id, "--reason", "holiday")).stdout
    assert json.loads(ok(cli("access", enrollment_id, "--json")).stdout)["valid"] is False
    paused = json.loads(ok(cli("list", "--status", "PAUSED", "--user", user, "--json")).stdout)
    assert [item["id"] for item in paused] == [enrollment_id]
    assert paused[0]["orders"][0]["status"] == "CONFIRMED"
    assert paused[0]["next_wake_up"] is None, "a manual pause waits for a command"
    after_pause = json.loads(ok(cli("status", enrollment_id, "--json")).stdout)
    assert datetime.fromisoformat(after_pause["updated"]) > datetime.fromisoformat(view["updated"])
    assert after_pause["updated"] == after_pause["log"][-1]["at"], "updated when the status changed"
    fails(cli("pause", enrollment_id), 1, "PAUSED")

    resumed = json.loads(ok(cli("resume", enrollment_id, "--json")).stdout)
    assert resumed["status"] == "ACTIVE"
    scheduled = ok(cli("terminate", enrollment_id, "--at-period-end")).stdout
    assert "ACTIVE; terminate scheduled at" in scheduled
    (listed,) = json.loads(ok(cli("list", "--user", user, "--json")).stdout)
    assert listed["scheduled"]["kind"] == "terminate" and listed["scheduled"]["at"] == period["end"]
    assert listed["next_wake_up"] == period["end"]
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
    ok(cli("terminate", enrollment_id, "--immediately"))
    fails(cli(*args), 1, f"enrollment '{enrollment_id}' exists and is TERMINATED, which is final")


def test_numbers_work_wherever_ids_do(cli: Any, product: str) -> None:
    created = ok(cli("create", "--product", product, "--user", unique("numbered"), "--json"))
    enrollment_id = json.loads(created.stdout)["enrollment_id"]
    view = json.loads(ok(cli("status", enrollment_id, "--json")).stdout)
    number, order_number = view["number"], view["orders"][0]["number"]
    assert json.loads(ok(cli("status", f" {number.lower()} ", "--json")).stdout)["id"] == enrollment_id
    assert json.loads(ok(cli("access", number, "--json")).stdout)["valid"] is True
    paid = json.loads(ok(cli("order-status", order_number, "CONFIRMED", "--json")).stdout)
    assert paid["id"] == enrollment_id and paid["orders"][0]["status"] == "CONFIRMED"
    assert "PAUSED (manual)" in ok(cli("pause", number, "--reason", "by number")).stdout
    assert f"{enrollment_id} ({number}): ACTIVE" in ok(cli("resume", number)).stdout
    fails(cli("status", "E-00000000"), 1, "enrollment 'E-00000000' not found")
    fails(cli("order-status", "O-00000000", "CONFIRMED"), 1, "order 'O-00000000' not found")


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
    year_one = ["--start", "0001-01-01T00:00:00Z", "--timezone", "America/New_York"]
    fails(cli("create", "--product", product, "--user", "u", *year_one), 2, "outside the supported calendar (years 1")
    fails(cli("create", "--product", product, "--user", "u", "--configuration", "{"), 2, "--configuration: is not")
    fails(cli("access", "x", "--at", "2031-01-01T00:00:00"), 2, "has no UTC offset")
    fails(cli("order-status", "o", "paid"), 2, "'paid' is not one of PENDING, CONFIRMED, FULFILLED, REJECTED")
    fails(cli("list", "--status", "closed"), 2, "'closed' is not one of INITIAL, ACTIVE, PAUSED, TERMINATED")
    fails(cli("product", "create", "--id", "x", "--type", "plan"), 2, "is not one of PLAN_PRODUCT, SIMPLE_PRODUCT")
    fails(cli("status", ""), 2, "must not be empty")
    fails(cli("create", "--product", product, "--user", "u", "--id", " "), 2, "--id: must not be empty")
    fails(cli("list", "--page", "2", "--offset", "2"), 2, "--page and --offset exclude each other")
    fails(cli("list", "--offset", "99999999999999999999"), 2, "'--offset': must be at most")
    huge_price = ["--plan", MINUTE_PLAN, "--price-amount", "99999999999999999999"]
    fails(cli("product", "create", "--id", "x", *huge_price), 2, "price_amount: must be at most 9223372036854775807")
    fails(cli("schedule", "generate-orders", "--cron", "61 * * * *"), 2, "--cron: '61 * * * *' is not a valid cron")
    assert "generate-enrollment-orders" not in ok(cli("schedule", "list")).stdout, "nothing was scheduled"


def test_the_operators_guide_access_example_is_true(cli: Any) -> None:
    guide = (REPO_ROOT / "docs" / "operators.md").read_text(encoding="utf-8")
    plan = re.search(r"enrollments product create --id gym-monthly --plan '([^']+)'", guide)
    examples = re.findall(
        r'^enrollments access "\$ID"( --at \S+)? --json +# \{"valid": (true|false), "at": "([^"]+)"\}', guide, re.M
    )
    assert plan is not None and len(examples) == 2, examples
    product_id = unique("gym-monthly")
    ok(cli("product", "create", "--id", product_id, "--plan", plan.group(1)))
    enrollment_id = ok(cli("create", "--product", product_id, "--user", "u-42", "--timezone", "Europe/Zurich")).stdout
    for at_option, valid, at in examples:
        shown = json.loads(ok(cli("access", enrollment_id.strip(), *at_option.split(), "--json")).stdout)
        assert shown["valid"] is (valid == "true"), (at_option, shown)
        assert not at_option or shown["at"] == at


def test_the_documented_checkout_order_creates_its_enrollments(cli: Any) -> None:
    example = REPO_ROOT / "docs" / "examples" / "checkout-order.json"
    ok(cli("product", "create", "--id", "gym-monthly", "--plan", '{"billing_interval": "MONTHS"}'))
    ok(cli("product", "create", "--id", "water-bottle", "--type", "SIMPLE_PRODUCT"))
    result = json.loads(ok(cli("create-from-order", str(example), "--json")).stdout)
    (enrollment,) = result["enrollments"]
    assert enrollment["position"] == 0 and enrollment["product_id"] == "gym-monthly"
    assert result["skipped"] == [
        {"position": 1, "product_id": "water-bottle", "reason": "a SIMPLE_PRODUCT, not a subscription"}
    ]
    view = json.loads(ok(cli("status", enrollment["enrollment_id"], "--json")).stdout)
    assert view["user_id"] == "u-42" and view["timezone"] == "Europe/Zurich" and view["status"] == "ACTIVE"
    assert view["configuration"] == [{"key": "locker", "value": "L12"}]
    assert [order["status"] for order in view["orders"]] == ["CONFIRMED"], "the checkout order paid the first period"
    assert json.loads(ok(cli("create-from-order", str(example), "--json")).stdout) == result, "idempotent"


def test_unreachable_temporal_is_one_line(cli: Any, dev_stack: ThreadedDevStack) -> None:
    address = f"127.0.0.1:{free_port()}"
    options = ["--address", address, "--database-url", dev_stack.config.effective_database_url]
    fails(cli("status", "anything", options=options), 1, f"cannot reach Temporal at {address}")
    debug = cli("status", "anything", options=["--debug", *options])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == f"error: cannot reach Temporal at {address}"


def test_unmigrated_database_names_the_fix(cli: Any, tmp_path: Any) -> None:
    (tmp_path / "empty.db").touch()
    options = ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"]
    fails(cli("product", "list", options=options), 1, "run `enrollments db upgrade` first")


def test_a_missing_database_is_named_and_never_created(cli: Any, dev_stack: ThreadedDevStack, tmp_path: Any) -> None:
    missing = tmp_path / "nowhere" / "x.db"
    options = ["--address", dev_stack.config.address, "--database-url", f"sqlite:///{missing}"]
    for command in (["list"], ["product", "list"], ["usage", "record", "x", "--units", "1", "--key", "k"]):
        fails(cli(*command, options=options), 1, f"no database at {missing} (from --database-url)")
    fails(cli("order-status", "O-B0730H0Z", "CONFIRMED", options=options), 1, f"no database at {missing}")
    assert not (tmp_path / "nowhere").exists()
