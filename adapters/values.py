"""Value types every domain model is built from: the validated base model, ids, one-line text, zones, UTC times.

Pure pydantic v2 (no I/O), safe in the workflow sandbox. :mod:`adapters.domain` re-exports them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, ValidationError

from adapters.text import control_characters


def _check_timezone(name: str) -> str:
    if name in ("", "localtime") or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"unknown IANA time zone {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error
    return name


TimezoneName = Annotated[str, AfterValidator(_check_timezone)]


def _check_identifier(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if value != value.strip():
        raise ValueError(f"must not start or end with white space, got {value!r}")
    controls = control_characters(value)
    if controls:
        raise ValueError(f"must not contain control characters ({', '.join(controls)})")
    return value


def _check_line(value: str) -> str:
    controls = control_characters(value)
    if controls:
        raise ValueError(f"must be one line of text without control characters ({', '.join(controls)})")
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
"""An id people type and read (enrollment, user, product, order): no control characters, no blank, no outer spaces."""

Line = Annotated[str, AfterValidator(_check_line)]
"""Free text shown on one line (a reason): no line breaks or other control characters."""
"""An IANA time zone name such as ``Europe/Zurich``; rejected with a clear error when unknown."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC (naive datetimes are rejected)."""


def isoformat_utc(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 with a ``Z`` suffix, e.g. ``2031-01-31T00:00:00Z`` (naive is an error).

    The one format the project prints and exchanges datetimes in (CLI output, messages, summaries).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"cannot format naive datetime {value.isoformat()} as UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def known_timezones() -> frozenset[str]:
    """All IANA zone names the interpreter knows (for fuzzing and CLI completion)."""
    return frozenset(available_timezones())


_UNSET: Any = object()


class DomainModel(BaseModel):
    """Base of every domain model: unknown fields are errors, values are validated on assignment.

    A rejected assignment leaves the model as it was (pydantic alone keeps the new value when a model
    validator rejects it, which would leave e.g. a period ending before it starts).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self).model_fields:
            super().__setattr__(name, value)
            return
        previous = self.__dict__.get(name, _UNSET)
        was_set = name in self.model_fields_set
        try:
            super().__setattr__(name, value)
        except ValidationError:
            if previous is not _UNSET:
                self.__dict__[name] = previous
            if not was_set:
                self.model_fields_set.discard(name)
            raise
