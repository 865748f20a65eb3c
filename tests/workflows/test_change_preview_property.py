"""Preview equals result: drawn plans, prices, zones, anchors, change instants and policies; the preview of each
change, then the change itself on the time-skipping server, must agree on every period, line and total.

A few dozen examples run in CI; ``ENROLLMENTS_PROPERTY_EXAMPLES=500`` runs more. The examples are drawn by
hypothesis up front and run one after another on one server (its clock only moves forward).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.builtin import director_from_names
from adapters.calendar import preview as calendar_preview
from adapters.changes import ChangeOutcome
from adapters.domain import BillingInterval, Price, ProductPlan, Proration, UsageCalculationType
from adapters.lifecycle import ChangeProration, ChangeWhen, EnrollmentView
from starter.client import EnrollmentCommandRejected, EnrollmentsClient
from tests.support.temporal_env import add_product, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
EXAMPLES = int(os.environ.get("ENROLLMENTS_PROPERTY_EXAMPLES", "30"))
ZONES = ["UTC", "Europe/Zurich", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"]
INTERVALS = [BillingInterval.HOURS, BillingInterval.DAYS, BillingInterval.WEEKS, BillingInterval.MONTHS]


@dataclass(frozen=True)
class Case:
    old: ProductPlan
    new: ProductPlan
    zone: str
    quantity: int
    new_quantity: int
    start_offset: timedelta
    change_fraction: float
    when: ChangeWhen
    proration: ChangeProration | None


def plans() -> st.SearchStrategy[ProductPlan]:
    return st.builds(
        lambda usage, interval, count, amount, currency, proration, trial: ProductPlan(
            usage_calculation_type=usage,
            billing_interval=interval,
            billing_interval_count=count,
            prices=[Price(currency=currency, amount=amount)],
            proration=proration,
            trial_interval=BillingInterval.DAYS if trial else None,
            trial_interval_count=trial,
        ),
        st.sampled_from([*[UsageCalculationType.LICENSED] * 4, UsageCalculationType.METERED]),
        st.sampled_from(INTERVALS),
        st.integers(1, 3),
        st.integers(0, 1_000_000),
        st.sampled_from(["CHF", "CHF", "CHF", "CHF", "EUR"]),
        st.sampled_from(list(Proration)),
        st.sampled_from([0, 0, 0, 1, 2]),
    )


def cases() -> st.SearchStrategy[Case]:
    return st.builds(
        Case,
        plans(),
        plans(),
        st.sampled_from(ZONES),
        st.integers(1, 5),
        st.integers(1, 5),
        st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=3)),
        st.floats(min_value=0.001, max_value=1.9, allow_nan=False),
        st.sampled_from(list(ChangeWhen)),
        st.sampled_from([None, *ChangeProration]),
    ).filter(lambda case: case.when is ChangeWhen.NOW or case.proration is None)


def drawn_cases() -> list[Case]:
    drawn: list[Case] = []

    @settings(
        max_examples=EXAMPLES, database=None, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(cases())
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


async def run_case(env: Any, client: EnrollmentsClient, database_url: str, index: int, case: Case) -> tuple[str, str]:
    """Preview, then make, the change of ``case``; returns the enrollment's id and what the change made."""
    old_id, new_id = f"old-{index}", f"new-{index}"
    await add_product(database_url, old_id, case.old)
    await add_product(database_url, new_id, case.new)
    start = (await env.get_current_time()) + case.start_offset
    enrollment_id = await client.create_enrollment(
        product_id=old_id, user_id="u", quantity=case.quantity, timezone=case.zone, start=start
    )
    first = calendar_preview(case.old, start, case.zone, 1)[0]
    at = start + (first.end - first.start) * case.change_fraction
    if case.old.usage_calculation_type is UsageCalculationType.METERED:
        await env.sleep(start - await env.get_current_time() + timedelta(seconds=1))
        await client.record_usage(enrollment_id, case.quantity * 7, "drawn", at=min(at, start + timedelta(seconds=1)))
    await env.sleep(at - await env.get_current_time())
    await boundaries_reached(client, enrollment_id, at)
    arguments: dict[str, Any] = {
        "product_id": new_id,
        "quantity": case.new_quantity,
        "when": case.when,
        "proration": case.proration,
        "at": at,
    }
    try:
        preview = await client.preview_change(enrollment_id, **arguments)
    except EnrollmentCommandRejected as refused:
        with pytest.raises(EnrollmentCommandRejected) as also:
            await client.change_enrollment(enrollment_id, **arguments)
        assert (also.value.error_type, str(also.value)) == (refused.error_type, str(refused))
        return enrollment_id, "refused"
    view = await client.change_enrollment(enrollment_id, **arguments)
    assert_matches(preview, view)
    kind = "pending" if preview.pending is not None else "order" if preview.order is not None else "switch"
    return enrollment_id, kind


async def boundaries_reached(client: EnrollmentsClient, enrollment_id: str, at: datetime) -> None:
    """Wait until the workflow has stored every boundary up to ``at`` (the preview reads the database; the
    server's clock can reach ``at`` a moment before the workflow has made the period starting then)."""
    for _ in range(1_000):
        wake_up = (await client.get_enrollment(enrollment_id)).next_wake_up
        if wake_up is None or wake_up > at:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the workflow did not reach {at}")


def assert_matches(preview: ChangeOutcome, view: EnrollmentView) -> None:
    assert view.log[-1].info == preview.info and view.log[-1].at == preview.at
    if preview.pending is not None:
        assert view.pending_change == preview.pending and view.product_id == preview.from_product_id
        return
    assert (view.product_id, view.quantity) == (preview.product_id, preview.quantity)
    if preview.anchor is not None:
        assert view.anchor == preview.anchor
    windows = {period.start: period for period in view.periods}
    for window in (preview.ended, preview.period):
        if window is not None:
            assert windows[window.start].end == window.end
    if preview.order is None:
        assert not [order for order in view.orders if order.created == preview.at], "no order, as previewed"
        return
    (made,) = [order for order in view.orders if order.period_start == preview.order.period.start]
    assert (made.period_start, made.period_end) == (preview.order.period.start, preview.order.period.end)
    assert made.positions == preview.order.order_position_templates
    assert (made.currency, made.total) == (preview.order.currency, preview.total)
    assert made.context == preview.order.order_context


@SQLITE_ONLY
async def test_every_preview_equals_the_change_it_previews(time_skipping_env, database_url):
    director = director_from_names(["licensed", "metered"])
    async with running_worker(time_skipping_env, database_url, director=director) as (client, _):
        kinds: list[str] = []
        for index, case in enumerate(drawn_cases()):
            enrollment_id, kind = await run_case(time_skipping_env, client, database_url, index, case)
            kinds.append(kind)
            # Ended, so its timers do not slow the server's clock down for the next examples.
            await client.terminate(enrollment_id, immediately=True)
    # The draw reaches every kind of outcome, so the comparison above is not vacuous.
    assert {"refused", "pending", "order", "switch"} <= set(kinds), kinds
