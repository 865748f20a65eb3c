"""``enrollments change`` and ``upcoming`` against a real stack: a dry run, the change it previews, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.support.cli_env import fails, ok, unique

PLAN = '{"billing_interval": "MONTHS", "prices": [{"currency": "CHF", "amount": %d}]}'


def test_a_dry_run_shows_the_order_the_change_then_makes(cli: Any) -> None:
    basic, pro = unique("basic"), unique("pro")
    ok(cli("product", "create", "--id", basic, "--plan", PLAN % 3000))
    ok(cli("product", "create", "--id", pro, "--plan", PLAN % 6200))
    created = ok(cli("create", "--product", basic, "--user", unique("u"), "--currency", "chf", "--json"))
    enrollment_id = json.loads(created.stdout)["enrollment_id"]
    at = datetime.now(UTC).isoformat()
    change = ("change", enrollment_id, "--product", pro, "--when", "now", "--at", at)
    preview = json.loads(ok(cli(*change, "--dry-run", "--json")).stdout)
    assert preview["order"]["currency"] == "CHF" and preview["total"] > 0
    text = ok(cli(*change, "--dry-run")).stdout
    assert "dry run at" in text and "total" in text and "CHF" in text
    view = json.loads(ok(cli(*change, "--json")).stdout)
    made = [order for order in view["orders"] if order["period_start"] == preview["order"]["period"]["start"]]
    assert [line["amount"] for line in made[0]["positions"]] == [
        line["amount"] for line in preview["order"]["order_position_templates"]
    ]
    assert made[0]["total"] == preview["total"] and view["product_id"] == pro
    upcoming = json.loads(ok(cli("upcoming", enrollment_id, "--json")).stdout)
    assert (upcoming["product_id"], upcoming["total"]) == (pro, 6200)
    assert "next period" in ok(cli("upcoming", enrollment_id)).stdout
    pending = ok(cli("change", enrollment_id, "--quantity", "2", "--when", "period-end")).stdout
    assert f"changes to {pro} × 2 at" in pending
    assert "withdrew the change" in ok(cli("change", enrollment_id, "--cancel")).stdout


def test_change_errors_are_one_line(cli: Any) -> None:
    fails(cli("change", "some-id", "--quantity", "2"), 2, "--when: is required (now or period-end)")
    fails(
        cli("change", "some-id", "--quantity", "2", "--when", "period-end", "--proration", "none"),
        2,
        "proration applies to changes now, not to changes at period end",
    )
    fails(cli("change", "some-id", "--quantity", "0", "--when", "now"), 2, "quantity")
    fails(cli("change", "no-such-enrollment", "--quantity", "2", "--when", "now"), 1, "not found")


def test_product_migrate_moves_enrollments_to_the_latest_plan_version(cli: Any) -> None:
    product = unique("plan")
    ok(cli("product", "create", "--id", product, "--plan", PLAN % 1000))
    enrollment_id = json.loads(ok(cli("create", "--product", product, "--user", unique("u"), "--json")).stdout)[
        "enrollment_id"
    ]
    ok(cli("product", "create", "--id", product, "--plan", PLAN % 1200))
    dry = json.loads(ok(cli("product", "migrate", product, "--dry-run", "--json")).stdout)
    assert (dry["version"], dry["enrollments"], dry["migrated"]) == (2, 1, [])
    assert [(s["total_before"], s["total_after"]) for s in dry["samples"]] == [(1000, 1200)]
    assert "would move 1 of 1 enrollment(s)" in ok(cli("product", "migrate", product, "--dry-run")).stdout
    moved = json.loads(ok(cli("product", "migrate", product, "--when", "now", "--json")).stdout)
    assert moved["migrated"] == [enrollment_id]
    view = json.loads(ok(cli("status", enrollment_id, "--json")).stdout)
    assert view["plan_version"] == 2
    fails(cli("product", "migrate", product, "--when", "later"), 2, "--when: 'later' is not one of period-end, now")
