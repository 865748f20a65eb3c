"""``enrollments simulate``: scripted scenarios on the real workflow, activities and time-skipping server.

Each scenario gets a fresh test server (``run_scenario`` starts one): scenarios use absolute dates and a
server's clock only moves forward, so the session's shared server cannot be reused. Commands take effect
at exactly their event's time, though they reach the server a few milliseconds later.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.persistence import Store
from adapters.domain import EnrollmentStatus, OrderStatus
from adapters.lifecycle import workflow_id_for
from starter.devtools import binaries as temporal_binaries
from starter.devtools.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from starter.devtools.simulation import main_simulate, run_scenario
from tests.support.paths import REPO_ROOT

SCENARIOS = Path(__file__).parent / "scenarios"
"""How long after an event's time a command may take effect (the server's clock runs while it travels)."""


def scenario_path(name: str) -> str:
    return str(SCENARIOS / f"{name}.json")


def utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


async def simulate(name: str, **options: Any) -> dict[str, Any]:
    """The printed JSON document of scenario ``name``."""
    result = await run_scenario(load_scenario(scenario_path(name)), **options)
    document: dict[str, Any] = json.loads(result.to_json())
    return document


def windows(document: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(period["start"], period["end"], period["is_trial"]) for period in document["enrollment"]["periods"]]


def assert_exactly_at(text: str, at: str) -> None:
    assert text == at, f"{text} is not exactly {at}"


def assert_one_order_per_billable_period(document: dict[str, Any], configuration: list[dict[str, str]]) -> None:
    orders = document["orders"]
    billable = [period for period in document["enrollment"]["periods"] if not period["is_trial"]]
    assert all(period["order_id"] is None for period in document["enrollment"]["periods"] if period["is_trial"])
    assert [period["order_id"] for period in billable] == [order["id"] for order in orders]
    assert [(order["period_start"], order["period_end"]) for order in orders] == [
        (period["start"], period["end"]) for period in billable
    ]
    assert len({order["number"] for order in orders}) == len(orders)
    for order in orders:
        (position,) = order["positions"]
        assert position["product_id"] == position["original_product_id"]
        assert position["configuration"] == configuration


# --- scenarios --------------------------------------------------------------------------------------


async def test_trial_then_monthly_in_zurich_anchored_at_trial_end() -> None:
    document = await simulate("trial_zurich")

    # 00:00Z is 01:00 in Zurich: the local time stays 01:00, so summer boundaries are 23:00Z the day before.
    assert windows(document) == [
        ("2031-01-31T00:00:00Z", "2031-02-14T00:00:00Z", True),
        ("2031-02-14T00:00:00Z", "2031-03-14T00:00:00Z", False),
        ("2031-03-14T00:00:00Z", "2031-04-13T23:00:00Z", False),
        ("2031-04-13T23:00:00Z", "2031-05-13T23:00:00Z", False),
        ("2031-05-13T23:00:00Z", "2031-06-13T23:00:00Z", False),
        ("2031-06-13T23:00:00Z", "2031-07-13T23:00:00Z", False),
        ("2031-07-13T23:00:00Z", "2031-08-13T23:00:00Z", False),
        ("2031-08-13T23:00:00Z", "2031-09-13T23:00:00Z", False),
        ("2031-09-13T23:00:00Z", "2031-10-13T23:00:00Z", False),
        ("2031-10-13T23:00:00Z", "2031-11-14T00:00:00Z", False),
        ("2031-11-14T00:00:00Z", "2031-12-14T00:00:00Z", False),
        ("2031-12-14T00:00:00Z", "2032-01-14T00:00:00Z", False),
    ]
    enrollment = document["enrollment"]
    assert (enrollment["status"], enrollment["expires"]) == ("ACTIVE", None)
    assert enrollment["number"].startswith("E-")
    assert len(document["orders"]) == 11
    assert_one_order_per_billable_period(document, [{"key": "k", "value": "v"}])
    assert all(order["status"] == "PENDING" for order in document["orders"])
    assert document["log"][-1] == {"at": "2031-01-31T00:00:00Z", "status": "ACTIVE", "info": "started"}
    assert document["access_checks"] == document["rejected"] == []


async def test_month_end_clamps_without_drifting() -> None:
    document = await simulate("month_end")

    starts = [start for start, _, _ in windows(document)]
    assert starts == [
        "2032-01-31T00:00:00Z",
        "2032-02-29T00:00:00Z",
        "2032-03-31T00:00:00Z",
        "2032-04-30T00:00:00Z",
        "2032-05-31T00:00:00Z",
    ]
    assert windows(document)[-1][1] == "2032-06-30T00:00:00Z"
    assert_one_order_per_billable_period(document, [])


async def test_pause_then_resume_after_the_period_ended_anchors_a_new_schedule() -> None:
    document = await simulate("pause_resume_new_anchor")

    enrollment = document["enrollment"]
    periods = windows(document)
    # The pause at exactly 2031-04-01 comes after the boundary: April's period and order exist.
    assert periods[:2] == [
        ("2031-03-01T00:00:00Z", "2031-04-01T00:00:00Z", False),
        ("2031-04-01T00:00:00Z", "2031-05-01T00:00:00Z", False),
    ]
    paused, resumed = document["log"][-2:]
    assert (paused["status"], paused["info"]) == ("PAUSED", "paused: holiday")
    assert_exactly_at(paused["at"], "2031-04-01T00:00:00Z")
    assert (resumed["status"], resumed["info"]) == ("ACTIVE", "resumed: back")
    assert_exactly_at(resumed["at"], "2031-05-20T00:00:00Z")

    # No period while paused; the resume time is the new anchor, monthly from there.
    anchor = utc(enrollment["anchor"])
    assert enrollment["anchor"] == resumed["at"]
    assert [(utc(start), utc(end)) for start, end, _ in periods[2:]] == [
        (anchor, anchor.replace(month=6)),
        (anchor.replace(month=6), anchor.replace(month=7)),
    ]
    assert enrollment["status"] == "ACTIVE"
    assert document["access_checks"] == [
        {"at": "2031-04-15T00:00:00Z", "valid": False},
        {"at": "2031-05-25T00:00:00Z", "valid": True},
    ]
    assert_one_order_per_billable_period(document, [])


async def test_pause_at_period_end_withdrawn_by_resume_keeps_the_periods_running() -> None:
    document = await simulate("pause_at_period_end_withdrawn")

    assert [start for start, _, _ in windows(document)] == [
        "2031-03-01T00:00:00Z",
        "2031-04-01T00:00:00Z",
        "2031-05-01T00:00:00Z",
        "2031-06-01T00:00:00Z",  # `until` is a boundary: what is due at `until` has happened
    ]
    assert document["enrollment"]["status"] == "ACTIVE"
    assert [entry["status"] for entry in document["log"]] == ["INITIAL", "ACTIVE"]
    assert document["rejected"] == []


async def test_pause_at_period_end_happens_exactly_at_the_boundary() -> None:
    document = await simulate("pause_at_period_end")

    assert windows(document) == [("2031-03-01T00:00:00Z", "2031-04-01T00:00:00Z", False)]
    assert (document["enrollment"]["status"], document["enrollment"]["pause_reason"]) == ("PAUSED", "manual")
    assert document["log"][-1] == {
        "at": "2031-04-01T00:00:00Z",
        "status": "PAUSED",
        "info": "paused at period end: moving",
    }
    assert document["access_checks"] == [{"at": "2031-04-01T00:00:00Z", "valid": False}]


async def test_terminate_keeps_access_until_the_paid_period_ends_and_rejects_later_commands() -> None:
    document = await simulate("terminate")

    enrollment = document["enrollment"]
    assert (enrollment["status"], enrollment["expires"]) == ("TERMINATED", "2031-05-01T00:00:00Z")
    assert [start for start, _, _ in windows(document)] == ["2031-03-01T00:00:00Z", "2031-04-01T00:00:00Z"]
    assert [(check["at"], check["valid"]) for check in document["access_checks"]] == [
        ("2031-04-05T00:00:00Z", True),
        ("2031-04-20T00:00:00Z", True),
        ("2031-05-01T00:00:00Z", False),
        ("2031-05-02T00:00:00Z", False),
    ]
    (rejection,) = document["rejected"]
    assert (rejection["at"], rejection["type"]) == ("2031-04-15T00:00:00Z", "resume")
    assert "TERMINATED" in rejection["error"]
    terminated = document["log"][-1]
    assert (terminated["status"], terminated["info"]) == ("TERMINATED", "terminated: cancelled")


async def test_terminate_immediately_expires_at_once() -> None:
    document = await simulate("terminate_immediately")

    enrollment = document["enrollment"]
    assert enrollment["status"] == "TERMINATED"
    assert_exactly_at(enrollment["expires"], "2031-04-10T00:00:00Z")
    assert enrollment["expires"] == document["log"][-1]["at"]
    assert [check["valid"] for check in document["access_checks"]] == [True, False]


async def test_order_status_on_latest_and_by_index_and_usage() -> None:
    document = await simulate("order_status")

    assert [order["status"] for order in document["orders"]] == ["CONFIRMED", "CONFIRMED", "PENDING", "PENDING"]
    assert [period["order_status"] for period in document["enrollment"]["periods"]] == [
        "CONFIRMED",
        "CONFIRMED",
        "PENDING",
        "PENDING",
    ]
    assert all(order["positions"][0]["quantity"] == 3 for order in document["orders"])
    assert_one_order_per_billable_period(document, [{"key": "seat", "value": "A1"}])
    # Events are applied in time order but named by their index in the file.
    rejection, *usage_refusals = document["rejected"]
    assert (rejection["at"], rejection["type"]) == ("2031-04-16T00:00:00Z", "order_status")
    assert "cannot become PENDING" in rejection["error"]
    # A LICENSED enrollment has no meter: its usage is refused, not recorded.
    assert [(refusal["at"], refusal["type"]) for refusal in usage_refusals] == [
        ("2031-04-17T00:00:00Z", "usage"),
        ("2031-04-18T00:00:00Z", "usage"),
    ]
    assert all("METERED" in refusal["error"] for refusal in usage_refusals)
    assert document["usage"] == []


async def test_metered_usage_is_billed_in_arrears_once_per_key() -> None:
    document = await simulate("metered_usage")

    orders = document["orders"]
    # March: 5 units (the repeated key counts once) billed when March ends; April: no usage, no order.
    assert [(order["period_start"], order["positions"][0]["quantity"]) for order in orders] == [
        ("2031-03-01T00:00:00Z", 5)
    ]
    assert [entry["recorded"] for entry in document["usage"]] == [True, False]
    periods = document["enrollment"]["periods"]
    assert [period["order_id"] for period in periods[:2]] == [orders[0]["id"], None]
    assert document["rejected"] == []


async def test_a_given_database_keeps_the_rows(database_url: str, store: Store) -> None:
    document = await simulate("order_status", database_url=database_url)

    enrollment_id = document["enrollment"]["id"]
    stored = await store.enrollments.get(enrollment_id)
    assert stored is not None and stored.status is EnrollmentStatus.ACTIVE
    assert [order.status for order in await store.billing.list_orders(enrollment_id)] == [
        OrderStatus.CONFIRMED,
        OrderStatus.CONFIRMED,
        OrderStatus.PENDING,
        OrderStatus.PENDING,
    ]
    # The scenario's usage was refused (LICENSED plan): no usage row was written.
    assert await store.usage.units(enrollment_id, utc("2031-04-01T00:00:00Z"), utc("2031-05-01T00:00:00Z")) == 0


async def test_runs_on_a_given_environment_and_stops_its_workflow() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binaries.test_server_path(), data_converter=pydantic_data_converter
    )
    try:
        await temporal_binaries.register_search_attributes(env.client, "default")
        result = await run_scenario(load_scenario(scenario_path("month_end")), env=env)
        request = DescribeWorkflowExecutionRequest(
            namespace=env.client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id_for(result.enrollment.id)),
        )
        description = await env.client.workflow_service.describe_workflow_execution(request)
        assert len(result.enrollment.periods) == 5
        assert (
            description.workflow_execution_info.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
        )
        with pytest.raises(ScenarioError, match=r"enrollment.start: 2032-01-31T00:00:00Z is not in the future"):
            await run_scenario(load_scenario(scenario_path("month_end")), env=env)
    finally:
        await env.shutdown()


# --- the command's contract -------------------------------------------------------------------------


def test_main_simulate_prints_one_json_document(capfd: pytest.CaptureFixture[str]) -> None:
    assert main_simulate(scenario_path("month_end"), None) == 0

    out, err = capfd.readouterr()
    document = json.loads(out)  # nothing but the document on stdout
    assert set(document) >= {"enrollment", "orders", "access_checks", "log", "rejected"}
    assert document["enrollment"]["periods"][0]["start"] == "2032-01-31T00:00:00Z"
    assert document["orders"][1]["period_start"] == "2032-02-29T00:00:00Z"
    assert "error" not in err


def test_the_command_runs_it_as_a_program() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "starter", "simulate", "--scenario", scenario_path("terminate_immediately")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["enrollment"]["status"] == "TERMINATED"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("invalid_past", "error: events[1].at: 2020-01-01T00:00:00Z is not in the future"),
        ("invalid_naive", "error: events[1].at: must include a UTC offset"),
        ("invalid_plan", "error: product.plan.billing_interval_count: must be at least 1"),
        ("invalid_no_adapter", "error: product.plan: no enrollment adapter is activated for plan"),
        ("invalid_unknown_adapter", "error: adapters[1]: unknown enrollment adapter 'nonesuch'"),
        ("invalid_date", "error: until: Input should be a valid datetime"),
        ("invalid_event_type", "error: events[1].type: unknown event type 'refund'"),
        ("invalid_after_until", "error: events[1].at: 2031-06-02T00:00:00Z is after until 2031-06-01T00:00:00Z"),
        ("invalid_order_index", "error: events[0].order: index 2 is out of range; the enrollment has 2 order(s)"),
    ],
)
def test_invalid_scenarios_exit_2_with_one_line_and_no_json(
    capfd: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    assert main_simulate(scenario_path(name), None) == 2

    out, err = capfd.readouterr()
    assert out == ""
    # Only what the program prints counts: the SDK's native threads may write a teardown panic to fd 2
    # in-process (the subprocess test checks a whole process's stderr).
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(message), line
    assert "Traceback" not in err


def test_unreadable_or_malformed_files_exit_2(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"until": ', encoding="utf-8")
    assert main_simulate(str(broken), None) == 2
    assert main_simulate(str(tmp_path / "missing.json"), None) == 2

    out, err = capfd.readouterr()
    assert out == ""
    malformed, missing = err.strip().splitlines()
    assert malformed.startswith(f"error: {broken}: not valid JSON: Expecting value (line 1, column 11)")
    assert missing.startswith(f"error: {tmp_path / 'missing.json'}: cannot read the scenario")


# --- the scenario model -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "product": {"id": "p", "plan": {"billing_interval": "MONTHS"}},
    "enrollment": {"user_id": "u", "start": "2031-03-01T00:00:00Z"},
    "until": "2031-06-01T00:00:00Z",
}


def with_events(*events: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, "events": list(events)}


def test_events_are_applied_in_time_order_keeping_file_order_for_ties() -> None:
    scenario = parse_scenario(
        with_events(
            {"at": "2031-04-01T00:00:00Z", "type": "resume"},
            {"at": "2031-03-10T01:00:00+01:00", "type": "pause"},
            {"at": "2031-04-01T00:00:00Z", "type": "access_check"},
        )
    )
    assert [(index, event.type) for index, event in scenario.ordered_events()] == [
        (1, "pause"),
        (0, "resume"),
        (2, "access_check"),
    ]
    assert scenario.events[1].at == datetime(2031, 3, 10, tzinfo=UTC)  # offsets are normalised to UTC


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_events(
                {"at": "2031-04-01T00:00:00Z", "type": "terminate", "at_period_end": True, "immediately": True}
            ),
            "events[0]: at_period_end and immediately exclude each other",
        ),
        (
            with_events({"at": "2031-04-01T00:00:00Z", "type": "order_status", "order": "1", "status": "CONFIRMED"}),
            "events[0].order: must be \"latest\" or a 0-based order index, got '1'",
        ),
        (
            with_events({"at": "2031-04-01T00:00:00Z", "type": "order_status", "order": 0, "status": "PAID"}),
            "events[0].status: must be one of 'PENDING', 'CONFIRMED', 'FULFILLED' or 'REJECTED', got 'PAID'",
        ),
        (with_events({"at": "2031-04-01T00:00:00Z"}), "events[0].type: is required"),
        (
            with_events({"at": "2031-04-01T00:00:00Z", "type": "pause", "when": "now"}),
            "events[0].when: is not a known field",
        ),
        (with_events({"type": "usage", "units": -1}), "events[0].at: is required; events[0].units: must be at least 0"),
        ({**BASE, "until": "2031-03-01T00:00:00Z"}, "until: 2031-03-01T00:00:00Z must be after enrollment.start"),
        ({**BASE, "enrollment": {"user_id": "u", "timezone": "Mars/Olympus"}}, "enrollment.timezone: unknown IANA"),
        ([], "scenario: must be a JSON object"),
    ],
)
def test_invalid_scenarios_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_default_adapters_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario: Scenario = parse_scenario(BASE)
    monkeypatch.setenv("ENROLLMENT_ADAPTERS", "nonesuch")
    with pytest.raises(ScenarioError, match=r"^adapters: unknown enrollment adapter 'nonesuch'"):
        scenario.director()
    monkeypatch.setenv("ENROLLMENT_ADAPTERS", "licensed")
    assert [adapter.key for adapter in scenario.director().adapters] == ["shop.unchained.enrollments.licensed"]


def test_times_must_be_in_the_future_of_the_clock() -> None:
    scenario = parse_scenario(with_events({"at": "2031-04-01T00:00:00Z", "type": "access_check"}))
    scenario.check_future(datetime(2031, 2, 1, tzinfo=UTC))
    with pytest.raises(ScenarioError, match=r"^enrollment\.start: 2031-03-01T00:00:00Z is not in the future"):
        scenario.check_future(datetime(2031, 3, 1, tzinfo=UTC))
    unanchored = scenario.model_copy(update={"enrollment": scenario.enrollment.model_copy(update={"start": None})})
    unanchored.check_future(datetime(2031, 3, 15, tzinfo=UTC))
    with pytest.raises(ScenarioError, match=r"^events\[0\]\.at: 2031-04-01T00:00:00Z is not in the future"):
        unanchored.check_future(datetime(2031, 4, 1, tzinfo=UTC))
    with pytest.raises(ScenarioError, match=r"^until: 2031-06-01T00:00:00Z is not in the future"):
        parse_scenario({**BASE, "enrollment": {"user_id": "u"}}).check_future(datetime(2031, 7, 1, tzinfo=UTC))
    with pytest.raises(ScenarioError, match=r"^until: 2031-06-01T00:00:00Z is too far ahead"):
        scenario.check_future(datetime(2021, 6, 1, tzinfo=UTC))


async def test_a_prorated_upgrade_and_its_dry_run_give_the_same_order() -> None:
    document = await simulate("upgrade_prorated")
    (preview,) = document["previews"]
    adjustment = next(order for order in document["orders"] if order["period_start"] == "2031-01-16T00:00:00Z")
    figures = [(line["product_id"], line["unit_amount"], line["amount"]) for line in adjustment["positions"]]
    assert figures == [("basic-monthly", 3000, -1548), ("pro-monthly", 6200, 3200)]
    assert (adjustment["currency"], adjustment["total"]) == ("CHF", 1652)
    previewed = preview["outcome"]["order"]
    assert previewed["order_position_templates"] == [
        {key: line[key] for key in previewed["order_position_templates"][0]} for line in adjustment["positions"]
    ]
    assert preview["outcome"]["total"] == adjustment["total"]
    assert [order["total"] for order in document["orders"]] == [3000, 1652, 6200], "February is on the new plan"


async def test_the_documented_dunning_scenario_goes_remind_retry_pause_payment_active() -> None:
    result = await run_scenario(load_scenario(REPO_ROOT / "docs" / "examples" / "dunning-scenario.json"))
    document: dict[str, Any] = json.loads(result.to_json())
    (order,) = document["orders"]
    assert (order["status"], order["total"], order["currency"]) == ("CONFIRMED", 3000, "CHF")
    steps = [entry["info"] for entry in document["log"] if entry["info"].startswith("dunning step")]
    assert [step.split(": ")[1] for step in steps] == [
        "remind (open 3000 CHF)",
        "retry_payment (open 3000 CHF)",
        ("pause (open 2000 CHF)"),
    ]
    infos = [entry["info"] for entry in document["log"]]
    assert infos[infos.index(steps[-1]) + 1 :] == [
        "payment overdue",
        f"payment of 2000 CHF for order {order['number']}: 0 CHF open",
        "payment received",
    ]
    assert document["enrollment"]["status"] == "ACTIVE"
    assert [check["valid"] for check in document["access_checks"]] == [False, True], "blocked while paused"
    types = [event["type"] for event in document["events"]]
    assert types[5:] == [
        "dunning.step",
        "dunning.reminder_due",
        "order.payment_failed",
        "dunning.step",
        "dunning.payment_retry_due",
        "order.payment_received",
        "dunning.step",
        "enrollment.status_changed",
        "order.payment_received",
        "order.status_changed",
        "enrollment.status_changed",
    ]
    assert [event["sequence"] for event in document["events"]] == list(range(1, len(types) + 1))
    failed = next(event for event in document["events"] if event["type"] == "order.payment_failed")
    assert (failed["occurred_at"], failed["data"]["decline"]) == ("2031-01-02T12:00:00Z", "soft"), "at its time"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "payment", "amount": 0}, "events[0].amount: must be at least 1"),
        ({"type": "payment", "amount": "10"}, "events[0].amount: input should be a valid integer"),
        ({"type": "payment_failed", "decline": "maybe"}, "events[0].decline: must be one of 'soft' or 'hard'"),
        ({"type": "payment_failed", "decline": "soft", "order": -1}, 'events[0].order: must be "latest" or'),
    ],
)
def test_payment_events_name_the_field(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(with_events({"at": "2031-04-01T00:00:00Z", **event}))
    assert str(raised.value).startswith(message), str(raised.value)
