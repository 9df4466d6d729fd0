"""What text from a feed may hold: the characters refused in posts, names and one-line text.

Shown as text, these would break lines in a ticker, move a terminal's cursor or reorder the
text around them: control characters (C0, DEL, C1), the Unicode line and paragraph
separators, and the bidirectional embedding, override and isolate controls.
"""

from __future__ import annotations

import re

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
