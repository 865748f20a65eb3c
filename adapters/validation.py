"""Pydantic validation errors as one line that names each field: how every entry point reports bad input."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def problem(detail: ErrorDetails) -> str:
    """One pydantic error as a short phrase that follows the field name, e.g. ``must be at least 1``."""
    kind, context = detail["type"], detail.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "greater_than":
        return f"must be greater than {context['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "less_than":
        return f"must be less than {context['lt']}"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "enum":
        return f"must be one of {context['expected']}, got {detail['input']!r}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "json_invalid":
        return f"is not valid JSON ({context['error']})"
    if kind == "value_error":
        return str(context["error"])
    message = detail["msg"]
    return message[:1].lower() + message[1:]


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """A pydantic error as one line naming each field, e.g. ``plan.billing_interval_count: must be at least 1``."""
    parts = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in (prefix, *detail["loc"]) if part != "")
        phrase = problem(detail)
        parts.append(f"{location}: {phrase}" if location else phrase)
    return " ".join("; ".join(parts).split())
