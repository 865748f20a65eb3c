"""What callers type never renders as markup or control sequences: ids refused, text escaped where shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from adapters.domain import EnrollmentTerms, ScheduledAction
from adapters.lifecycle import EnrollmentView, PauseCommand
from adapters.text import escape_markdown, printable
from starter.cli.output import echo_lines, table
from workflows.details import render_details

NOW = datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        ("alice\x1b[31m", r"must not contain control characters \(\\x1b\)"),
        ("alice\nTERMINATED", r"must not contain control characters \(\\n\)"),
        (" alice", "must not start or end with white space"),
        ("alice ", "must not start or end with white space"),
        ("   ", "must not be blank"),
        ("al\u202eice", r"must not contain control characters \(\\u202e\)"),
    ],
)
def test_ids_with_control_characters_or_outer_spaces_are_refused(user_id: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        EnrollmentTerms(user_id=user_id, product_id="gym")


def test_reasons_are_one_line() -> None:
    with pytest.raises(ValidationError, match="must be one line of text"):
        PauseCommand(reason="holiday\n2031-01-01 TERMINATED  forged")
    with pytest.raises(ValidationError, match="must be one line of text"):
        ScheduledAction(kind="pause", at=NOW, reason="a\rb")
    assert PauseCommand(reason="holiday — back in May").reason == "holiday — back in May"


def test_printable_escapes_control_and_format_characters() -> None:
    assert printable("a\nb\x1b[31mc\u202ed\x00") == "a\\nb\\x1b[31mc\\u202ed\\x00"
    assert printable("Zürich · 10 €") == "Zürich · 10 €"


def test_markdown_is_shown_as_typed() -> None:
    escaped = escape_markdown("[click](https://evil.example) ![x](https://evil.example/x.png) <img src=x> *b*")
    assert re.search(r"(?<!\\)[<>\[\]()*!]", escaped) is None, "every markup character is escaped"
    assert escaped.replace("\\", "") == "[click](https://evil.example) ![x](https://evil.example/x.png) <img src=x> *b*"


def test_details_escape_what_callers_typed() -> None:
    view = EnrollmentView(
        id="e-1",
        user_id="[me](https://evil.example)",
        product_id="<img src=https://evil.example/x.png>",
        anchor=NOW,
        log=[{"at": NOW, "status": "ACTIVE", "info": "paused: see ![x](https://evil.example/x.png)"}],
        attention="product '<b>x</b>' has an invalid plan",
    )
    details = render_details(view)
    for typed in (view.user_id, view.product_id, "see ![x](https://evil.example/x.png)", "'<b>x</b>'"):
        assert escape_markdown(typed) in details
        assert typed not in details


def test_cli_output_escapes_what_callers_typed(capsys: pytest.CaptureFixture[str]) -> None:
    CliRunner()  # the CLI's own modules are importable without a server
    echo_lines(["reason: holiday\n2031-01-01  TERMINATED  forged", "id \x1b[2J"])
    shown = capsys.readouterr().out.splitlines()
    assert shown == ["reason: holiday\\n2031-01-01  TERMINATED  forged", "id \\x1b[2J"]
    assert table(["ID"], [["a\nb"]]).splitlines() == ["ID", "a\\nb"]
