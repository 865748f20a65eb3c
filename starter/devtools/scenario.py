"""Scenarios of ``enrollments simulate``: a product, an enrollment, timed events and an end time, validated.

A scenario (JSON) names a product with its plan, the enrollment's terms (``start`` is the schedule anchor,
default the simulation's start; ``id`` is optional), the time to stop (``until``) and events: ``pause``,
``resume``, ``terminate``, ``change`` (each the command's own fields; ``change`` with ``"dry_run": true``
only previews), ``order_status``, ``payment_failed``, ``payment``, ``usage`` and ``access_check``. ``products``
adds the plans a change may move to. Invalid scenarios raise :class:`ScenarioError` with one line naming the
problem (``events[2].at: ...``). How a scenario runs: :mod:`starter.devtools.simulation`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from activities.persistence.models import KEY_LENGTH
from adapters.builtin import director_from_names
from adapters.director import EnrollmentDirector, NoAdapterForPlanError
from adapters.domain import (
    MAX_QUANTITY,
    MAX_STORED_INTEGER,
    Configuration,
    EnrollmentTerms,
    OrderStatus,
    Product,
    ProductPlan,
    TimezoneName,
    UtcDatetime,
    isoformat_utc,
)
from adapters.dunning import Decline
from adapters.lifecycle import ChangeCommand, Command, PauseCommand, ResumeCommand, TerminateCommand
from adapters.validation import problem
from starter.connection import Settings

TEST_SERVER_WORKFLOW_TIMEOUT = timedelta(days=3650)
"""The time-skipping server's default execution timeout: it ends every enrollment workflow 10 years after it
started (a real server has none), so a simulation cannot go further."""


# --- the scenario ---------------------------------------------------------------------------------


class ScenarioError(ValueError):
    """An invalid scenario; the one-line message names the field or event and the problem."""


def _scenario_error(message: str) -> PydanticCustomError:
    # The message already carries its path; "{message}" keeps braces in it (plan JSON) literal.
    return PydanticCustomError("scenario", "{message}", {"message": message})


class _ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioProduct(_ScenarioModel):
    """The plan product the enrollment is for (created, or replaced, in the database)."""

    id: str = Field(min_length=1, max_length=128)
    plan: ProductPlan
    title: str | None = Field(default=None, max_length=256)

    def to_product(self) -> Product:
        return Product(id=self.id, plan=self.plan, title=self.title)


class ScenarioEnrollment(_ScenarioModel):
    """The enrollment's terms; ``start`` is the schedule anchor (default: the simulation's start time)."""

    id: str | None = Field(default=None, min_length=1, max_length=128, description="default: a random id")
    user_id: str = Field(min_length=1, max_length=128)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    configuration: Configuration = Field(default_factory=list)
    timezone: TimezoneName = "UTC"
    currency_code: str | None = Field(default=None, min_length=3, max_length=3)
    start: UtcDatetime | None = None

    def terms(self, product_id: str) -> EnrollmentTerms:
        return EnrollmentTerms(
            product_id=product_id,
            user_id=self.user_id,
            quantity=self.quantity,
            configuration=self.configuration,
            timezone=self.timezone,
            currency_code=self.currency_code,
        )


class _Event(_ScenarioModel):
    at: UtcDatetime
    type: str


class CommandEvent(_Event):
    """An event that is one of the workflow's commands, with that command's own fields and rules."""

    COMMAND: ClassVar[type[Command]]

    def command(self) -> Command:
        return self.COMMAND.model_validate(self.model_dump(include=set(self.COMMAND.model_fields) - {"kind"}))


class PauseEvent(CommandEvent, PauseCommand):
    COMMAND = PauseCommand
    type: Literal["pause"]


class ResumeEvent(CommandEvent, ResumeCommand):
    COMMAND = ResumeCommand
    type: Literal["resume"]


class TerminateEvent(CommandEvent, TerminateCommand):
    """``at_period_end`` and ``immediately`` exclude each other, as in the command."""

    COMMAND = TerminateCommand
    type: Literal["terminate"]


class ChangeEvent(CommandEvent, ChangeCommand):
    """A change of plan, quantity or terms; with ``dry_run`` its preview is listed and nothing changes."""

    COMMAND = ChangeCommand
    type: Literal["change"]
    dry_run: bool = False


def _order_reference(value: object) -> Literal["latest"] | int:
    if value == "latest":
        return "latest"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f'must be "latest" or a 0-based order index, got {value!r}')


OrderReference = Annotated[Literal["latest"] | int, PlainValidator(_order_reference)]


class OrderStatusEvent(_Event):
    type: Literal["order_status"]
    order: OrderReference = "latest"
    status: OrderStatus


class PaymentFailedEvent(_Event):
    """A failed payment attempt for an order: a soft or a hard decline."""

    type: Literal["payment_failed"]
    order: OrderReference = "latest"
    decline: Decline
    code: str | None = Field(default=None, min_length=1, max_length=100)


class PaymentEvent(_Event):
    """A payment received for an order, in minor units."""

    type: Literal["payment"]
    order: OrderReference = "latest"
    amount: StrictInt = Field(ge=1, le=MAX_STORED_INTEGER)


class UsageEvent(_Event):
    type: Literal["usage"]
    units: StrictInt = Field(ge=0)
    key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class AccessCheckEvent(_Event):
    type: Literal["access_check"]


ScenarioEvent = Annotated[
    PauseEvent
    | ResumeEvent
    | TerminateEvent
    | ChangeEvent
    | OrderStatusEvent
    | PaymentFailedEvent
    | PaymentEvent
    | UsageEvent
    | AccessCheckEvent,
    Field(discriminator="type"),
]
EVENT_TYPES = (
    "pause",
    "resume",
    "terminate",
    "change",
    "order_status",
    "payment_failed",
    "payment",
    "usage",
    "access_check",
)


class Scenario(_ScenarioModel):
    """A scripted scenario: product, enrollment, events (applied in ``at`` order) and the end time."""

    adapters: list[str] | None = Field(
        default=None, description="built-in adapter names in registration order; default ENROLLMENT_ADAPTERS"
    )
    product: ScenarioProduct
    products: list[ScenarioProduct] = Field(default_factory=list, description="more plans a change may move to")
    enrollment: ScenarioEnrollment
    until: UtcDatetime
    events: list[ScenarioEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _times_in_order(self) -> Self:
        start = self.enrollment.start
        if start is not None and self.until <= start:
            raise _scenario_error(
                f"until: {isoformat_utc(self.until)} must be after enrollment.start {isoformat_utc(start)}"
            )
        for index, event in enumerate(self.events):
            if event.at > self.until:
                raise _scenario_error(
                    f"events[{index}].at: {isoformat_utc(event.at)} is after until {isoformat_utc(self.until)}"
                )
        for index, name in enumerate(self.adapters or []):
            try:
                director_from_names([name])
            except ValueError as error:
                raise _scenario_error(f"adapters[{index}]: {error}") from None
        return self

    def ordered_events(self) -> list[tuple[int, ScenarioEvent]]:
        """The events with their index in the file, by ``at`` (stable: ties keep file order)."""
        return sorted(enumerate(self.events), key=lambda item: item[1].at)

    def director(self) -> EnrollmentDirector:
        """The director of the named adapters (default: settings); raises :class:`ScenarioError` when none
        of them is activated for the plan."""
        names = self.adapters if self.adapters is not None else Settings().adapter_names
        try:
            director = director_from_names(names)
        except ValueError as error:
            raise ScenarioError(f"adapters: {error}") from None
        try:
            director.resolve(self.product.plan)
        except NoAdapterForPlanError as error:
            raise ScenarioError(f"product.plan: {error}") from None
        return director

    def check_future(self, now: datetime) -> None:
        """Raise :class:`ScenarioError` naming the first time that is not after ``now`` (the simulation's
        start), or an ``until`` beyond what the test server lets a workflow run."""
        times: list[tuple[str, datetime | None]] = [("enrollment.start", self.enrollment.start)]
        times += [(f"events[{index}].at", event.at) for index, event in enumerate(self.events)]
        times.append(("until", self.until))
        for path, value in times:
            if value is not None and value <= now:
                raise ScenarioError(
                    f"{path}: {isoformat_utc(value)} is not in the future of the simulation clock "
                    f"({isoformat_utc(now)}); the time-skipping server starts at the real current time and only "
                    "moves forward"
                )
        latest = now + TEST_SERVER_WORKFLOW_TIMEOUT - timedelta(days=1)
        if self.until > latest:
            raise ScenarioError(
                f"until: {isoformat_utc(self.until)} is too far ahead; the time-skipping server times a workflow "
                f"out {TEST_SERVER_WORKFLOW_TIMEOUT.days} days after it starts, so until must be before "
                f"{isoformat_utc(latest)}"
            )


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for position, item in enumerate(loc):
        if isinstance(item, int):
            text += f"[{item}]"
        elif position == 2 and loc[0] == "events" and item in EVENT_TYPES:
            continue  # the discriminated union's tag, not a field
        else:
            text += f".{item}" if text else item
    return text


def _describe_error(error: ErrorDetails) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "scenario":
        return error["msg"]
    path = _path(loc) or "scenario"
    context = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        tag = value.get("type") if isinstance(value, dict) else context.get("tag")
        return f"{path}.type: unknown event type {tag!r}; expected one of {', '.join(EVENT_TYPES)}"
    if kind == "union_tag_not_found":
        return f"{path}.type: is required (one of {', '.join(EVENT_TYPES)})"
    if kind == "timezone_aware":
        return f"{path}: must include a UTC offset (e.g. 2031-01-31T00:00:00Z), got {value!r}"
    if kind.startswith(("datetime", "date")):
        return f"{path}: {error['msg']}, got {value!r}"
    return f"{path}: {problem(error)}"


def parse_scenario(data: Any) -> Scenario:
    """Validate a decoded scenario; raises :class:`ScenarioError` naming every problem on one line."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        message = "; ".join(_describe_error(detail) for detail in error.errors())
        raise ScenarioError(" ".join(message.split())) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises :class:`ScenarioError` (unreadable, not JSON, invalid)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            f"{path}: not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    return parse_scenario(data)
