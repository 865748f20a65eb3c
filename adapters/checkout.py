"""A shop's checkout order, the input from which enrollments are made once it is paid."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from adapters.domain import (
    MAX_CONFIGURATION_ENTRIES,
    MAX_QUANTITY,
    Address,
    Configuration,
    Contact,
    DomainModel,
    Identifier,
    OrderStatus,
    ProviderRef,
    TimezoneName,
)


class CheckoutPosition(DomainModel):
    """One position of a checkout order: what the customer bought."""

    product_id: Identifier = Field(min_length=1, max_length=128)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    configuration: Configuration = Field(default_factory=list)


class CheckoutOrder(DomainModel):
    """A shop's checkout order; once CONFIRMED or FULFILLED, each of its plan positions becomes an enrollment.

    The enrollments copy the order's user, billing address, contact, country/currency, payment and
    delivery providers; ``timezone`` (default UTC) is the customer's, for calendar periods.
    """

    id: Identifier = Field(min_length=1, max_length=128)
    number: str | None = Field(default=None, max_length=64)
    user_id: Identifier = Field(min_length=1, max_length=128)
    status: OrderStatus
    positions: list[CheckoutPosition] = Field(min_length=1, max_length=MAX_CONFIGURATION_ENTRIES)
    billing_address: Address | None = None
    contact: Contact | None = None
    country_code: str | None = Field(default=None, min_length=2, max_length=2)
    currency_code: str | None = Field(default=None, min_length=3, max_length=3)
    payment: ProviderRef | None = None
    delivery: ProviderRef | None = None
    timezone: TimezoneName = "UTC"
    context: dict[str, Any] = Field(default_factory=dict)
