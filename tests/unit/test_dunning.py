"""Dunning policies (validation, durations) and the pure schedule rules the workflow and the store share."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from adapters.domain import BillingInterval, Order, OrderStatus, ProductPlan
from adapters.dunning import (
    StepStatus,
    due_step,
    dunning_summary,
    holds_pause,
    next_step_at,
    payment_problem,
    start_dunning,
)
from adapters.dunning_policy import DunningAction, DunningPolicy, parse_duration
from adapters.lifecycle import EnrollmentView
from adapters.validation import describe_validation_error
from starter.cli import app
from workflows.details import render_details

T0 = datetime(2031, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
FULL = {
    "steps": [
        {"after": "P1D", "action": "remind"},
        {"after": "P3D", "action": "retry_payment"},
        {"after": "P7D", "action": "pause"},
        {"after": "P30D", "action": "terminate"},
    ]
}


DAILY_REMIND = {"steps": [{"after": "P1D", "action": "remind"}]}


def _plan_problem(dunning: object) -> str:
    with pytest.raises(ValidationError) as error:
        ProductPlan.model_validate({"billing_interval": "MONTHS", "dunning": dunning})
    return describe_validation_error(error.value, "plan")


def _order(order_id: str = "o-1", status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(id=order_id, number=f"O-{order_id.upper()}", status=status, currency="CHF", total=3000)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("P1D", DAY),
        ("PT12H", timedelta(hours=12)),
        ("P1DT6H30M", timedelta(days=1, hours=6, minutes=30)),
        ("P2W", 14 * DAY),
        ("p0d", timedelta(0)),
        ("PT90S", timedelta(seconds=90)),
    ],
)
def test_durations_of_weeks_days_and_time(text: str, offset: timedelta) -> None:
    assert parse_duration(text) == offset


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P1M", "years and months are not a fixed duration; use days"),
        ("P1Y", "years and months are not a fixed duration"),
        ("3 days", "is not an ISO 8601 duration"),
        ("P", "is not an ISO 8601 duration"),
        ("P1DT", "is not an ISO 8601 duration"),
        ("P4000D", "is more than 3660 days"),
    ],
)
def test_durations_that_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_a_plan_carries_a_policy_and_plans_without_one_stay_as_they_were() -> None:
    plan = ProductPlan.model_validate({"billing_interval": "MONTHS", "dunning": FULL})
    assert plan.dunning is not None and [step.action for step in plan.dunning.steps] == list(DunningAction)
    assert ProductPlan(billing_interval=BillingInterval.MONTHS).dunning is None
    # Terminate before pause is a choice a shop may make.
    DunningPolicy.model_validate(
        {"steps": [{"after": "P5D", "action": "terminate"}, {"after": "P6D", "action": "pause"}]}
    )


@pytest.mark.parametrize(
    ("dunning", "message"),
    [
        (
            {"steps": [{"after": "P3D", "action": "remind"}, {"after": "P3D", "action": "pause"}]},
            "plan.dunning.steps: offsets must strictly increase: steps[1] (P3D) is not after steps[0] (P3D)",
        ),
        (
            {"steps": [{"after": "P3D", "action": "remind"}, {"after": "PT1H", "action": "pause"}]},
            "steps[1] (PT1H) is not after steps[0] (P3D)",
        ),
        ({"steps": [{"after": "P1D", "action": "email"}]}, "plan.dunning.steps.0.action: must be one of"),
        (
            {"steps": [{"after": "P1D", "action": "terminate"}, {"after": "P2D", "action": "terminate"}]},
            "plan.dunning.steps: at most one step may terminate, got steps[0], steps[1]",
        ),
        ({"steps": [{"after": "P1M", "action": "pause"}]}, "plan.dunning.steps.0.after: 'P1M': years and months"),
        ({"steps": []}, "plan.dunning.steps: list should have at least 1 item"),
        ({"steps": [{"after": "P1D"}]}, "plan.dunning.steps.0.action: is required"),
    ],
)
def test_bad_policies_name_the_field(dunning: object, message: str) -> None:
    assert message in _plan_problem(dunning)


def test_a_schedule_runs_each_order_in_order_and_the_earliest_step_first() -> None:
    policy = DunningPolicy.model_validate(FULL)
    first = start_dunning(policy, _order("a"), T0, open_balance=3000, currency="CHF")
    second = start_dunning(policy, _order("b"), T0 + 2 * DAY, open_balance=3000, currency="CHF")
    assert [step.at for step in first.steps] == [T0 + DAY, T0 + 3 * DAY, T0 + 7 * DAY, T0 + 30 * DAY]
    assert due_step([first, second], T0) is None and next_step_at([first, second]) == T0 + DAY
    found = due_step([second, first], T0 + 10 * DAY)
    assert found is not None and (found[0].order_id, found[1].index) == ("a", 0), "earliest due, in its order"
    paused = first.with_step_done(0, T0 + DAY).with_step_done(1, T0 + 3 * DAY).with_step_done(2, T0 + 7 * DAY)
    assert paused.paused and paused.steps_done == 3 and holds_pause([second, paused]) and not holds_pause([second])
    assert paused.next_step == paused.steps[3] and next_step_at([paused]) == T0 + 30 * DAY
    assert dunning_summary(paused) == (
        "order O-A: open 3000 CHF, 3 of 4 steps done, next terminate at 2031-01-31T00:00:00Z, holds the pause"
    )


def test_a_hard_decline_skips_the_remaining_retries_only() -> None:
    policy = DunningPolicy.model_validate(
        {
            "steps": [
                {"after": "P1D", "action": "retry_payment"},
                {"after": "P2D", "action": "remind"},
                {"after": "P3D", "action": "retry_payment"},
                {"after": "P4D", "action": "pause"},
            ]
        }
    )
    schedule = start_dunning(policy, _order(), T0, open_balance=None, currency=None).with_step_done(0, T0 + DAY)
    declined = schedule.after_hard_decline()
    assert [step.status for step in declined.steps] == [
        StepStatus.DONE,
        StepStatus.PENDING,
        StepStatus.SKIPPED,
        StepStatus.PENDING,
    ]
    assert [step.at for step in declined.steps] == [step.at for step in schedule.steps], "the others keep their times"
    assert dunning_summary(declined).startswith("order O-O-1: no amount, 1 of 4 steps done, next remind at")


def test_what_a_payment_may_pay() -> None:
    assert payment_problem(_order(), 3000, 3000) is None
    assert (
        payment_problem(_order(), 2000, 2001) == "payment of 2001 is above the open balance of order O-O-1 (o-1): 2000"
    )
    assert payment_problem(_order(), None, 1) == (
        "order O-O-1 (o-1) has no amount: record its payment with its status (CONFIRMED)"
    )
    assert payment_problem(_order(status=OrderStatus.REJECTED), 3000, 1) == (
        "order O-O-1 (o-1) is REJECTED: it has nothing open to pay"
    )


def test_preview_lists_each_periods_dunning_step_times() -> None:
    plan = json.dumps(
        {
            "billing_interval": "MONTHS",
            "trial_interval": "DAYS",
            "trial_interval_count": 7,
            "dunning": {"steps": [{"after": "P1D", "action": "remind"}, {"after": "PT36H", "action": "pause"}]},
        }
    )
    result = CliRunner().invoke(app, ["preview", "--plan", plan, "--start", "2031-01-31T09:00:00Z", "--periods", "3"])
    assert result.exit_code == 0, result.stderr
    trial, first, second = json.loads(result.stdout)
    assert "dunning" not in trial, "a trial has no order to chase"
    assert first["dunning"] == [
        {"action": "remind", "at": "2031-02-08T09:00:00Z"},
        {"action": "pause", "at": "2031-02-08T21:00:00Z"},
    ]
    assert [step["at"] for step in second["dunning"]] == ["2031-03-08T09:00:00Z", "2031-03-08T21:00:00Z"]
    metered = json.dumps({"usage_calculation_type": "METERED", "billing_interval": "DAYS", "dunning": DAILY_REMIND})
    billed = CliRunner().invoke(
        app, ["preview", "--plan", metered, "--start", "2031-01-31T00:00:00Z", "--periods", "1"]
    )
    (period,) = json.loads(billed.stdout)
    assert period["dunning"] == [{"action": "remind", "at": "2031-02-02T00:00:00Z"}], "due when billed, at its end"


def test_the_web_ui_details_show_each_order_in_dunning() -> None:
    policy = DunningPolicy.model_validate(FULL)
    entry = start_dunning(policy, _order("a"), T0, open_balance=3000, currency="CHF").with_step_done(0, T0 + DAY)
    view = EnrollmentView(id="e-1", user_id="u", product_id="p", anchor=T0, timezone="Europe/Zurich", dunning=[entry])
    (line,) = [line for line in render_details(view).splitlines() if line.startswith("**Dunning:**")]
    shown = line.replace("\\", "")  # markdown escapes
    expected = "order O-A: open 3000 CHF, 1 of 4 steps done, next retry_payment at 2031-01-04 01:00:00\u00a0+01:00"
    assert shown == f"**Dunning:** {expected}  ", "in the enrollment's zone, as the rest of the details"
