"""docs/events.md lists every event type with the JSON schema of its data, as the models generate it.

After changing an event's data model, rewrite the schemas: ``python -m tests.unit.test_events_doc``.
"""

from __future__ import annotations

import json
import re
import sys

from adapters.events import EventType, event_schemas
from tests.support.paths import REPO_ROOT

DOC = REPO_ROOT / "docs" / "events.md"
SCHEMA_BLOCK = re.compile(r"<!-- schema: (?P<type>[a-z._]+) -->\n```json\n(?P<schema>.*?)\n```", re.DOTALL)


def with_current_schemas(text: str) -> str:
    """``text`` with each schema block replaced by the schema the models generate now."""
    schemas = event_schemas()

    def current(match: re.Match[str]) -> str:
        schema = json.dumps(schemas[match["type"]], indent=2, ensure_ascii=False)
        return f"<!-- schema: {match['type']} -->\n```json\n{schema}\n```"

    return SCHEMA_BLOCK.sub(current, text)


def test_every_event_type_is_documented_once_with_its_current_schema() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = [match["type"] for match in SCHEMA_BLOCK.finditer(text)]
    assert sorted(documented) == sorted(event_type.value for event_type in EventType)
    assert text == with_current_schemas(text), "stale schemas: run python -m tests.unit.test_events_doc"
    for event_type in EventType:
        assert f"### `{event_type.value}`" in text


def test_the_check_sees_a_stale_schema() -> None:
    text = DOC.read_text(encoding="utf-8")
    stale = text.replace('"title": "Reason"', '"title": "Why"', 1)
    assert stale != text and with_current_schemas(stale) == text


if __name__ == "__main__":
    DOC.write_text(with_current_schemas(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    sys.exit(0)
