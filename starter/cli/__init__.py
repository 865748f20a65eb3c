"""The ``enrollments`` command line: one module per command group, each registered on one app."""

from __future__ import annotations

import typer

from starter.cli import (
    changes,
    dev,
    doctor,
    enrollments,
    events,
    generator,
    products,
    reading,
    security,
    system,
    usage,
    webhooks,
)
from starter.cli.app import new_app

COMMAND_GROUPS = (
    system,
    products,
    enrollments,
    changes,
    reading,
    generator,
    doctor,
    usage,
    events,
    webhooks,
    security,
    dev,
)
"""Every command module, in the order ``enrollments --help`` lists their commands."""


def build_app() -> typer.Typer:
    """The ``enrollments`` app with every command group registered."""
    app = new_app()
    for group in COMMAND_GROUPS:
        group.register(app)
    return app


app = build_app()


def main() -> None:
    """Entry point of the ``enrollments`` console script."""
    app(prog_name="enrollments")


__all__ = ["app", "build_app", "main"]
