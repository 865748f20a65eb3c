"""Parsing of command-line values: each error names the option and exits 2 (invalid input)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from adapters.domain import Configuration, ConfigurationEntry, ProductPlan, TimezoneName
from adapters.validation import describe_validation_error
from starter.cli.errors import CliError

E = TypeVar("E", bound=StrEnum)


def choice(enum: type[E]) -> Callable[[str], E]:
    """A parser for a member of ``enum``, given in any case; the error lists the members as they are written."""

    def parse(text: str | E) -> E:
        if isinstance(text, enum):
            return text
        wanted = str(text).strip().casefold()
        for member in enum:
            if member.value.casefold() == wanted:
                return member
        raise ValueError(f"{text!r} is not one of {', '.join(member.value for member in enum)}")

    return parse


def reference(text: str) -> str:
    """An id or number argument: surrounding spaces dropped, empty refused."""
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


EnrollmentArgument = Annotated[
    str,
    typer.Argument(
        help="The enrollment id or number (E-…).", parser=reference, metavar="ENROLLMENT", show_default=False
    ),
]
OrderArgument = Annotated[
    str, typer.Argument(help="The order id or number (O-…).", parser=reference, metavar="ORDER", show_default=False)
]


def not_blank(option: str, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise CliError(f"{option}: must not be empty")
    return None if value is None else value.strip()


def parse_plan(text: str, option: str = "plan") -> ProductPlan:
    """A plan from its JSON; errors name the field, e.g. ``plan.billing_interval``."""
    try:
        return ProductPlan.model_validate_json(text)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix=option)) from error


def parse_aware_datetime(option: str, text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset or ``Z``; a naive one is an error naming ``option``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(f"{option}: {text!r} is not an ISO 8601 date-time such as 2031-01-31T00:00:00Z") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise CliError(f"{option}: {text!r} has no UTC offset; add Z or an offset such as +01:00")
    return value


def parse_timezone(option: str, text: str) -> str:
    """An IANA time zone name, checked like the domain checks it."""
    try:
        return TypeAdapter(TimezoneName).validate_python(text)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix=option)) from error


def parse_configuration(text: str) -> list[ConfigurationEntry]:
    """``--configuration``: a JSON object ``{"size": "L"}`` or a list ``[{"key": "size", "value": "L"}]``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"--configuration: is not valid JSON ({error.msg})") from None
    if isinstance(raw, dict):
        raw = [{"key": str(key), "value": value} for key, value in raw.items()]
    try:
        return TypeAdapter(Configuration).validate_python(raw)
    except ValidationError as error:
        raise CliError(describe_validation_error(error, prefix="--configuration")) from None
