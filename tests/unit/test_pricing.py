"""Prices and proration in integer minor units: the price an enrollment pays, lines, rounding, fractions."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from pydantic import ValidationError

from adapters.domain import (
    BillingInterval,
    OrderConfiguration,
    OrderPosition,
    PeriodWindow,
    Price,
    Product,
    ProductPlan,
    Proration,
)
from adapters.pricing import (
    PricingError,
    line_amount,
    order_total,
    period_fraction,
    plan_price,
    price_problem,
    priced_order,
    round_half_even,
)

CHF = Price(currency="CHF", amount=3000)
EUR = Price(currency="EUR", amount=2800)


def plan(*prices: Price, proration: Proration = Proration.SECONDS) -> ProductPlan:
    return ProductPlan(billing_interval=BillingInterval.MONTHS, prices=list(prices), proration=proration)


def test_the_enrollments_currency_picks_the_price_and_one_price_needs_none() -> None:
    assert plan_price("p", plan(CHF, EUR), "EUR") == EUR
    assert plan_price("p", plan(CHF, EUR), "chf") == CHF
    assert plan_price("p", plan(CHF), None) == CHF
    assert plan_price("p", plan(), "CHF") is None


def test_a_missing_price_is_named() -> None:
    with pytest.raises(PricingError, match=r"product 'p' has no price in USD \(it has CHF, EUR\)"):
        plan_price("p", plan(CHF, EUR), "USD")
    with pytest.raises(PricingError, match="has prices in CHF, EUR: the enrollment needs a currency_code"):
        plan_price("p", plan(CHF, EUR), None)
    assert price_problem(Product(id="p", plan=plan(CHF)), "USD") == "product 'p' has no price in USD (it has CHF)"
    assert price_problem(Product(id="p", plan=plan()), "USD") is None


def test_prices_are_validated() -> None:
    with pytest.raises(ValidationError, match="one price per currency, got several in CHF"):
        plan(CHF, Price(currency="CHF", amount=1))
    with pytest.raises(ValidationError, match="currency"):
        Price(currency="chf", amount=1)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Price(currency="CHF", amount=-1)
    with pytest.raises(ValidationError, match="Input should be a valid integer"):
        Price.model_validate({"currency": "CHF", "amount": 12.5})


@pytest.mark.parametrize(
    ("value", "rounded"),
    [(Fraction(5, 2), 2), (Fraction(7, 2), 4), (Fraction(-5, 2), -2), (Fraction(-7, 2), -4), (Fraction(26, 10), 3)],
)
def test_rounding_is_half_to_even(value: Fraction, rounded: int) -> None:
    assert round_half_even(value) == rounded


def test_a_line_is_rounded_once() -> None:
    assert line_amount(3, 1000) == 3000
    assert line_amount(1, 3000, Fraction(1, 3)) == 1000
    assert line_amount(3, 1, Fraction(1, 2)) == 2  # 1.5 → 2, not 3 × round(0.5) = 0
    assert line_amount(1, 1, Fraction(5, 2)) == 2


def test_an_order_is_priced_on_its_plans_lines_only() -> None:
    window = PeriodWindow(start=datetime(2031, 1, 1, tzinfo=UTC), end=datetime(2031, 2, 1, tzinfo=UTC))
    own = OrderPosition(product_id="p", original_product_id="p", quantity=2)
    other = OrderPosition(product_id="q", original_product_id="q", quantity=1)
    order = OrderConfiguration(period=window, order_position_templates=[own, other])
    priced = priced_order(order, Product(id="p", plan=plan(CHF)), None)
    assert priced.currency == "CHF"
    assert [(line.unit_amount, line.amount) for line in priced.order_position_templates] == [(3000, 6000), (None, None)]
    assert order_total(priced.order_position_templates) is None, "an unpriced line leaves the total open"
    assert order_total(priced.order_position_templates[:1]) == 6000
    assert priced_order(order, Product(id="p", plan=plan()), "CHF") == order


def test_seconds_proration_is_exact() -> None:
    start, end = datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 2, 1, tzinfo=UTC)
    change = datetime(2031, 1, 16, tzinfo=UTC)
    assert period_fraction(Proration.SECONDS, start, end, change, end, "UTC") == Fraction(16, 31)
    assert period_fraction(Proration.SECONDS, start, end, start, change, "UTC") == Fraction(15, 31)


def test_day_proration_counts_calendar_days_in_the_zone() -> None:
    # 1 Mar to 1 Apr in Zurich (the DST change makes the period an hour short of 31 days: still 31 days).
    start, end = datetime(2031, 2, 28, 23, tzinfo=UTC), datetime(2031, 3, 31, 22, tzinfo=UTC)
    change = datetime(2031, 3, 16, 22, 30, tzinfo=UTC)  # 16 Mar 23:30 in Zurich: that day counts from the change
    assert period_fraction(Proration.DAYS, start, end, change, end, "Europe/Zurich") == Fraction(16, 31)
    assert period_fraction(Proration.SECONDS, start, end, change, end, "Europe/Zurich") != Fraction(16, 31)
    with pytest.raises(ValueError, match="is not within the period"):
        period_fraction(Proration.DAYS, start, end, end, end + (end - start), "UTC")
