"""What text from a feed may hold: the characters refused in posts, names and one-line text,
and the readers of an event's text fields that refuse them (with the length bounds).

Shown as text, these would break lines in a ticker, move a terminal's cursor or reorder the
text around them: control characters (C0, DEL, C1), the Unicode line and paragraph
separators, and the bidirectional embedding, override and isolate controls.
"""

from __future__ import annotations

import re
from typing import Any

from service.core.events import TEXT_MAX, Checker

_CONTROL = r"\x00-\x08\x0b-\x1f\x7f-\x9f"
_SEPARATORS_AND_BIDI = r"\u2028\u2029\u202a-\u202e\u2066-\u2069"
_BIDI = r"\u202a-\u202e\u2066-\u2069"

REFUSED_IN_ONE_LINE = re.compile(rf"[\t\n{_CONTROL}{_SEPARATORS_AND_BIDI}]")
"""In a post's title, id, author and role; in a status note, a retraction reason, a source."""
REFUSED_IN_BODY = re.compile(rf"[{_CONTROL}{_SEPARATORS_AND_BIDI}]")
"""In a post's body, which may hold line breaks and tabs."""
REFUSED_IN_NAME = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")
"""In a candidate's name: the controls but tab, line feed and carriage return, and the
bidirectional ones.

Those three, and Unicode's spaces and separators, stay allowed: they are spacing, which names
are compared without (service.core.identity), so a feed's tab in a name is the same name."""


def refusal(value: str, refused: re.Pattern[str]) -> str | None:
    """Why ``value`` may not be taken (``a control character (U+001B) at character 4``), or
    None when it holds none of ``refused``."""
    found = refused.search(value)
    if found is None:
        return None
    character = found.group()
    if character in "\u2028\u2029":
        kind = "a line or paragraph separator"
    elif character >= "\u202a":
        kind = "a bidirectional control"
    else:
        kind = "a control character"
    return f"{kind} (U+{ord(character):04X}) at character {found.start() + 1}"


def _bounded(
    check: Checker, value: str, label: str, longest: int, refused: re.Pattern[str], why: str = ""
) -> str:
    if len(value) > longest:
        raise check.fail(f"{label} is {len(value):,} characters long, over {longest:,}")
    found = refusal(value, refused)
    if found is not None:
        raise check.fail(f"{label} has {found}{why}")
    return value


def read_plain_text(
    check: Checker, document: dict[str, Any], field: str, longest: int, *, lines: bool = False
) -> str:
    """A post's text field: a non-empty string of at most ``longest`` characters, without
    the characters a post may not hold (REFUSED_IN_BODY); ``lines`` for the body."""
    value = check.text(document, field)
    if lines:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    refused = REFUSED_IN_BODY if lines else REFUSED_IN_ONE_LINE
    return _bounded(check, value, f"'{field}'", longest, refused, ": posts are plain text")


def read_optional_plain_text(
    check: Checker, document: dict[str, Any], field: str, longest: int
) -> str | None:
    return None if document.get(field) is None else read_plain_text(check, document, field, longest)


def read_name(check: Checker, document: dict[str, Any], where: str) -> str:
    """A candidate's or winner's ``name``: bounded, and any spacing but no other control."""
    value = check.text(document, "name", where)
    return _bounded(check, value, f"{where}'name'", TEXT_MAX, REFUSED_IN_NAME)


def read_line(check: Checker, document: dict[str, Any], field: str, value: str = "") -> str:
    """A note, reason or source (``value``, else the required ``field``), shown on one line
    (a reason in a ticker's headline)."""
    value = value or check.text(document, field)
    return _bounded(check, value, f"'{field}'", TEXT_MAX, REFUSED_IN_ONE_LINE)


def read_optional_line(check: Checker, document: dict[str, Any], field: str) -> str | None:
    value = check.optional_text(document, field)
    return value and read_line(check, document, field, value)
