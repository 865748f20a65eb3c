"""What an enrollment's workflow carries over continue-as-new (``carried_over``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.domain import Enrollment, EnrollmentLogEntry, EnrollmentStatus, Order, OrderStatus, Period
from adapters.lifecycle import KEPT_LOG_ENTRIES, KEPT_PERIODS
from workflows.enrollment_state import EnrollmentWorkflowState, carried_over

T0 = datetime(2031, 1, 1, tzinfo=UTC)


def _period(index: int, *, order: bool = True, billed: bool = False) -> Period:
    start = T0 + timedelta(hours=index)
    return Period(
        start=start,
        end=start + timedelta(hours=1),
        order_id=f"o-{index}" if order else None,
        order_status=OrderStatus.PENDING if order else None,
        billed_at=start + timedelta(hours=1) if billed else None,
    )


def _order(index: int) -> Order:
    start = T0 + timedelta(hours=index)
    return Order(id=f"o-{index}", number=f"O-{index}", period_start=start, period_end=start + timedelta(hours=1))


def _state(periods: list[Period], orders: list[Order], log_entries: int) -> EnrollmentWorkflowState:
    log = [EnrollmentLogEntry(at=T0, status=EnrollmentStatus.ACTIVE, info=f"entry {n}") for n in range(log_entries)]
    enrollment = Enrollment(
        id="e", user_id="u", product_id="p", anchor=T0, status=EnrollmentStatus.ACTIVE, periods=periods, log=log
    )
    return EnrollmentWorkflowState(enrollment=enrollment, orders=orders)


def test_a_young_enrollment_is_carried_whole() -> None:
    state = _state([_period(n) for n in range(KEPT_PERIODS)], [_order(n) for n in range(KEPT_PERIODS)], 3)
    assert carried_over(state) == state


def test_old_history_is_left_to_the_database() -> None:
    total = KEPT_PERIODS + 40
    # Period 0 is a trial (no order, never billed); period 5 is billed in arrears without an order.
    periods = [_period(n, order=n not in (0, 5), billed=n == 5) for n in range(total)]
    # A checkout order names no period of its own: it is kept as well.
    orders = [_order(n) for n in range(total) if n not in (0, 5)] + [Order(id="checkout", number="O-C")]
    state = _state(periods, orders, KEPT_LOG_ENTRIES + 7)

    carried = carried_over(state)

    assert carried.history_trimmed and not state.history_trimmed
    assert carried.enrollment is not None and state.enrollment is not None
    kept = carried.enrollment.periods
    assert kept == [periods[0], *periods[-KEPT_PERIODS:]], "the latest periods and the one never billed"
    assert [order.id for order in carried.orders] == [f"o-{n}" for n in range(40, total)] + ["checkout"]
    assert carried.enrollment.log == state.enrollment.log[-KEPT_LOG_ENTRIES:]
    assert carried_over(carried) == carried, "carrying again changes nothing"


def test_a_long_log_is_trimmed_alone() -> None:
    for periods in ([], [_period(0)]):  # e.g. a scheduled start that was changed many times: no period yet
        state = _state(periods, [_order(0)] if periods else [], KEPT_LOG_ENTRIES + 1)
        carried = carried_over(state)
        assert carried.enrollment is not None and state.enrollment is not None
        assert carried.enrollment.periods == periods and carried.orders == state.orders
        assert carried.enrollment.log == state.enrollment.log[1:] and carried.history_trimmed
