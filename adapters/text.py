"""Text shown to operators, made safe to show: what customers and callers typed never renders as markup.

User ids, product ids, reasons and error messages travel into the Web UI's markdown details and the CLI's
terminal output. Markdown or HTML in them must show as typed (no links, no images), and control characters
must show as escapes (no forged lines, no terminal escape sequences). Plain regular expressions, no
``unicodedata``: this runs inside the workflow sandbox, on every update of the details.
"""

from __future__ import annotations

import re

CONTROL_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]"
)
"""Control, format and line/paragraph separator characters: invisible, or they move the text around."""

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return repr(char)[1:-1] if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def control_characters(text: str) -> list[str]:
    """The control and format characters in ``text``, each once, as escapes (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return sorted({_escape(match) for match in CONTROL_CHARACTERS.finditer(text)})


def printable(text: str) -> str:
    """``text`` with every control or format character written as an escape (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return CONTROL_CHARACTERS.sub(_escape, text)


def escape_markdown(text: str) -> str:
    """``text`` for a markdown document: one line, every markdown and HTML character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))
