"""Prices and proration: what an order line bills, in integer minor units, never a float.

A plan's price is per unit of quantity per period. A full line bills ``quantity × unit_amount``; a prorated
line bills that times the fraction of the period it covers, computed exactly (:class:`fractions.Fraction`)
and rounded once, half to even, to the minor unit. Pure functions, safe in the workflow sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from adapters.domain import (
    MAX_STORED_INTEGER,
    OrderConfiguration,
    OrderPosition,
    Price,
    Product,
    ProductPlan,
    Proration,
)


class PricingError(ValueError):
    """The plan has no price the enrollment can be billed in (or none at all where one is needed)."""


def plan_price(product_id: str, plan: ProductPlan, currency_code: str | None) -> Price | None:
    """The price an enrollment in ``currency_code`` pays on ``plan``; None when the plan has no prices.

    Without a currency the plan's only price is taken; a plan with several needs the enrollment to name one.
    """
    if not plan.prices:
        return None
    if currency_code is None:
        if len(plan.prices) == 1:
            return plan.prices[0]
        currencies = ", ".join(price.currency for price in plan.prices)
        raise PricingError(f"product {product_id!r} has prices in {currencies}: the enrollment needs a currency_code")
    for price in plan.prices:
        if price.currency == currency_code.upper():
            return price
    currencies = ", ".join(price.currency for price in plan.prices)
    raise PricingError(f"product {product_id!r} has no price in {currency_code.upper()} (it has {currencies})")


def price_problem(product: Product, currency_code: str | None) -> str | None:
    """Why an enrollment in ``currency_code`` cannot be billed on ``product``, or None when it can."""
    if product.plan is None:
        return None
    try:
        plan_price(product.id, product.plan, currency_code)
    except PricingError as error:
        return str(error)
    return None


def round_half_even(value: Fraction) -> int:
    """``value`` rounded to an integer, a half to the even neighbour (``Fraction.__round__``)."""
    return round(value)


def checked_amount(value: int) -> int:
    if abs(value) > MAX_STORED_INTEGER:
        raise PricingError(f"amount {value} does not fit in 64 bits")
    return value


def line_amount(quantity: int, unit_amount: int, fraction: Fraction = Fraction(1)) -> int:
    """What a line of ``quantity`` units at ``unit_amount`` bills for ``fraction`` of a period (rounded once)."""
    return checked_amount(round_half_even(quantity * unit_amount * fraction))


def order_total(positions: Sequence[OrderPosition]) -> int | None:
    """The sum of the lines' amounts; None when a line has no amount (an unpriced order)."""
    amounts = [position.amount for position in positions]
    if not amounts or any(amount is None for amount in amounts):
        return None
    return checked_amount(sum(amount for amount in amounts if amount is not None))


def priced_order(order: OrderConfiguration, product: Product, currency_code: str | None) -> OrderConfiguration:
    """``order`` with the enrollment's price on its lines of ``product`` that have no amount yet.

    Lines an adapter priced itself keep their amounts; an order on a plan without prices comes back as it is.
    """
    price = plan_price(product.id, product.require_plan(), currency_code)
    if price is None:
        return order
    positions = [
        position
        if position.amount is not None or position.product_id != product.id
        else position.model_copy(
            update={"unit_amount": price.amount, "amount": line_amount(position.quantity, price.amount)}
        )
        for position in order.order_position_templates
    ]
    return order.model_copy(update={"order_position_templates": positions, "currency": price.currency})


def period_fraction(
    proration: Proration, start: datetime, end: datetime, since: datetime, until: datetime, timezone: str
) -> Fraction:
    """The part of the period ``[start, end)`` that ``[since, until)`` covers, exactly.

    ``seconds`` counts elapsed time (to the microsecond); ``days`` counts calendar days in ``timezone``:
    a day belongs to the part in which it begins, so the day of a change counts for the part from it.
    """
    if not start <= since <= until <= end or start >= end:
        raise ValueError(f"[{since}, {until}) is not within the period [{start}, {end})")
    if proration is Proration.SECONDS:
        return Fraction(_microseconds(until - since), _microseconds(end - start))
    zone = ZoneInfo(timezone)

    def day(moment: datetime) -> int:
        return moment.astimezone(zone).date().toordinal()

    total = day(end) - day(start)
    if total <= 0:  # a period shorter than a calendar day: days cannot split it, seconds do
        return Fraction(_microseconds(until - since), _microseconds(end - start))
    return Fraction(day(until) - day(since), total)


def _microseconds(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
"""ISO 4217 currencies without a minor unit: their amounts print as they are."""


def format_money(amount: int | None, currency: str | None) -> str:
    """``1652, "CHF"`` as ``16.52 CHF`` (``—`` without an amount): how people read minor units."""
    if amount is None:
        return "—"
    if currency is None:
        return str(amount)
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency}"
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{sign}{units}.{cents:02d} {currency}"
