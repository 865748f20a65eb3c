"""A plan's dunning policy: what happens, and when, while an order stays unpaid.

``{"steps": [{"after": "P1D", "action": "remind"}, {"after": "P7D", "action": "pause"}]}``: each step runs
``after`` (an ISO 8601 duration) once the order is due, in order. Offsets strictly increase; at most one step
terminates. The plan (:mod:`adapters.domain`) holds a policy; the per-order state and its rules are in
:mod:`adapters.dunning`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

from pydantic import Field, field_validator

from adapters.values import DomainModel

MAX_STEPS = 20
MAX_OFFSET = timedelta(days=3_660)
"""The latest a step may run after the order is due (ten years)."""

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (``P3D``, ``PT12H``, ``P1DT6H``).

    Years and months are refused: they are not a fixed length, and a step's time must not depend on the month.
    """
    upper = text.strip().upper()
    match = _DURATION.fullmatch(upper)
    if match is None or not any(match.groupdict().values()) or upper.endswith("T"):
        if re.search(r"\d+[YM]", upper.split("T")[0]):
            raise ValueError(f"{text!r}: years and months are not a fixed duration; use days (e.g. P30D)")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P3D, PT12H or P1DT6H")
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    offset = timedelta(**parts)
    if offset > MAX_OFFSET:
        raise ValueError(f"{text!r} is more than {MAX_OFFSET.days} days")
    return offset


class DunningAction(StrEnum):
    """What a step does: tell the mail service, tell the payment service, block access, or give up."""

    REMIND = "remind"
    RETRY_PAYMENT = "retry_payment"
    PAUSE = "pause"
    TERMINATE = "terminate"


class DunningStep(DomainModel):
    """One step: ``action`` runs ``after`` the order is due."""

    after: str = Field(description="ISO 8601 duration after the order is due, e.g. P3D")
    action: DunningAction

    @field_validator("after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip().upper()

    @property
    def offset(self) -> timedelta:
        return parse_duration(self.after)


class DunningPolicy(DomainModel):
    """The steps an unpaid order goes through, offsets strictly increasing, at most one ``terminate``."""

    steps: list[DunningStep] = Field(min_length=1, max_length=MAX_STEPS)

    @field_validator("steps")
    @classmethod
    def _in_order(cls, steps: list[DunningStep]) -> list[DunningStep]:
        for index in range(1, len(steps)):
            earlier, later = steps[index - 1], steps[index]
            if later.offset <= earlier.offset:
                raise ValueError(
                    f"offsets must strictly increase: steps[{index}] ({later.after}) is not after "
                    f"steps[{index - 1}] ({earlier.after})"
                )
        terminates = [str(index) for index, step in enumerate(steps) if step.action is DunningAction.TERMINATE]
        if len(terminates) > 1:
            raise ValueError(f"at most one step may terminate, got steps[{'], steps['.join(terminates)}]")
        return steps
