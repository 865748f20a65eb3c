"""``enrollments payment`` and dunning in ``status`` against a real stack (real time: a policy of seconds)."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.cli_env import fails, ok, unique

DUNNING_PLAN = json.dumps(
    {
        "billing_interval": "MINUTES",
        "billing_interval_count": 30,
        "prices": [{"currency": "CHF", "amount": 3000}],
        "dunning": {"steps": [{"after": "PT1S", "action": "remind"}, {"after": "PT3S", "action": "pause"}]},
    }
)


def _status(cli: Any, enrollment_id: str) -> dict[str, Any]:
    return dict(json.loads(ok(cli("status", enrollment_id, "--json")).stdout))


def _eventually(cli: Any, enrollment_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = _status(cli, enrollment_id)
        if view["status"] == status:
            return view
        time.sleep(0.2)
    raise AssertionError(f"{enrollment_id} is not {status}: {view['status']}")


def test_payments_and_dunning_through_the_cli(cli: Any) -> None:
    product = unique("dunned")
    ok(cli("product", "create", "--id", product, "--plan", DUNNING_PLAN))
    enrollment_id = json.loads(ok(cli("create", "--product", product, "--user", "u", "--json")).stdout)["enrollment_id"]
    view = _status(cli, enrollment_id)
    (order,) = view["orders"]
    (entry,) = view["dunning"]
    assert (entry["order_id"], entry["open_balance"], entry["currency"]) == (order["id"], 3000, "CHF")

    declined = ok(cli("payment", order["number"], "--failed", "soft", "--code", "do_not_honor")).stdout
    assert declined.startswith(f"{enrollment_id} ({view['number']}): ACTIVE")
    paid = ok(cli("payment", order["id"], "--received", "1000")).stdout
    assert f"dunning order {order['number']}: open 2000 CHF" in paid
    fails(cli("payment", order["id"], "--received", "2001"), 1, "above the open balance of order")

    view = _eventually(cli, enrollment_id, "PAUSED")
    assert view["pause_reason"] == "overdue" and view["dunning"][0]["paused"]
    text = ok(cli("status", enrollment_id)).stdout
    assert "dunning (1):" in text and f"order {order['number']}: open 2000 CHF, 2 of 2 steps done" in text
    assert "no step left, holds the pause" in text
    resumed = json.loads(ok(cli("payment", order["number"], "--received", "2000", "--json")).stdout)
    assert resumed["status"] == "ACTIVE" and resumed["dunning"] == []
    assert resumed["orders"][0]["status"] == "CONFIRMED"
    log = [entry["info"] for entry in resumed["log"]]
    assert f"payment for order {order['number']} declined (soft, code do_not_honor)" in log
    assert log[-1] == "payment received"
    fails(cli("payment", order["id"], "--failed", "hard"), 1, "is CONFIRMED: it has nothing open to pay")


def test_payment_input_is_checked_before_anything_is_sent(cli: Any) -> None:
    fails(cli("payment", "o"), 2, "give either --received AMOUNT or --failed soft|hard")
    fails(cli("payment", "o", "--received", "5", "--failed", "soft"), 2, "give either --received")
    fails(cli("payment", "o", "--received", "0"), 2, "--received")
    fails(cli("payment", "o", "--failed", "maybe"), 2, "'maybe' is not one of soft, hard")
    fails(cli("payment", "o", "--received", "5", "--code", "x"), 2, "--code")
    fails(cli("payment", "no-such-order", "--received", "5"), 1, "order 'no-such-order' not found")
    bad_policy = '{"billing_interval": "MONTHS", "dunning": {"steps": [{"after": "P3D", "action": "remind"}, ' + (
        '{"after": "P3D", "action": "pause"}]}}'
    )
    fails(cli("product", "create", "--id", "x", "--plan", bad_policy), 2, "plan.dunning.steps: offsets must strictly")
