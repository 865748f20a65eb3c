"""What ``enrollments simulate`` prints: the enrollment at ``until`` and what happened on the way.

Datetimes print in UTC with a ``Z`` suffix; amounts in integer minor units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

from adapters.changes import ChangeOutcome
from adapters.domain import ConfigurationEntry, EnrollmentStatus, OrderStatus, PauseReason, isoformat_utc

UtcText = Annotated[datetime, PlainSerializer(isoformat_utc, return_type=str)]
"""A datetime printed as ``2031-01-31T00:00:00Z``."""


class SimulatedPeriod(BaseModel):
    start: UtcText
    end: UtcText
    is_trial: bool
    order_id: str | None
    order_status: OrderStatus | None


class SimulatedEnrollment(BaseModel):
    id: str
    number: str | None
    status: EnrollmentStatus
    pause_reason: PauseReason | None
    expires: UtcText | None
    anchor: UtcText
    timezone: str
    adapter_key: str | None
    periods: list[SimulatedPeriod]


class SimulatedPosition(BaseModel):
    product_id: str
    original_product_id: str
    quantity: int
    configuration: list[ConfigurationEntry]
    unit_amount: int | None = None
    amount: int | None = None
    description: str | None = None


class SimulatedOrder(BaseModel):
    id: str
    number: str
    period_start: UtcText | None
    period_end: UtcText | None
    status: OrderStatus
    positions: list[SimulatedPosition]
    currency: str | None = None
    total: int | None = None


class SimulatedAccessCheck(BaseModel):
    at: UtcText
    valid: bool


class SimulatedLogEntry(BaseModel):
    at: UtcText
    status: EnrollmentStatus
    info: str


class SimulatedRejection(BaseModel):
    at: UtcText
    type: str
    error: str


class SimulatedUsage(BaseModel):
    at: UtcText
    units: int
    key: str
    recorded: bool = Field(description="False when the key was already recorded with these units")


class SimulatedPreview(BaseModel):
    """A ``change`` event with ``dry_run``: what the change would do at ``at`` (nothing was changed)."""

    at: UtcText
    outcome: ChangeOutcome


class SimulatedEvent(BaseModel):
    """One of the enrollment's events, as services receive it (without its id)."""

    sequence: int
    type: str
    occurred_at: UtcText
    data: dict[str, Any]


class SimulationResult(BaseModel):
    """What ``enrollments simulate`` prints: the enrollment at ``until`` and what happened on the way."""

    enrollment: SimulatedEnrollment
    orders: list[SimulatedOrder]
    access_checks: list[SimulatedAccessCheck]
    log: list[SimulatedLogEntry]
    rejected: list[SimulatedRejection]
    usage: list[SimulatedUsage]
    previews: list[SimulatedPreview] = Field(default_factory=list)
    events: list[SimulatedEvent] = Field(default_factory=list, description="the enrollment's events, in order")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
