"""Live coverage in the terminal: each post as a line, and the latest posts as a panel.

Posts are desks' plain text. The service refuses control characters in them; the ticker
replaces any that reach it all the same, since a terminal would act on an escape sequence
(clear the screen, move the cursor) where a page shows it as text.
"""

from __future__ import annotations

import re

from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clients.clock import NightClock
from clients.session import State

__all__ = ["byline", "post_line", "render_coverage", "terminal_safe"]

_UNSAFE = re.compile(
    "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]"
)
_KINDS = {"post": "Post", "replacement": "Post updated", "withdrawal": "Post withdrawn"}


def terminal_safe(text: object) -> str:
    """The text with anything a terminal would act on replaced by U+FFFD."""
    return _UNSAFE.sub("\ufffd", str(text))


def _one_line(text: object) -> str:
    return " ".join(terminal_safe(text).split())


def byline(post: State) -> str:
    """``Ana Ruiz, Political correspondent`` (either may be absent)."""
    return ", ".join(_one_line(post[key]) for key in ("author", "role") if post.get(key))


def post_line(event: State, night: NightClock) -> str:
    """One line for a posts event: ``23:21 Post: Title (Ana Ruiz, Political correspondent)``."""
    post = event.get("post", {})
    kind = str(event.get("kind", "post"))
    line = f"{_KINDS.get(kind, 'Post')}: {_one_line(post.get('title', ''))}"
    if kind == "withdrawal":
        return line
    who = byline(post)
    line += f" ({who})" if who else ""
    when = night.format(post.get("published_at"))
    return f"{when} {line}" if when else line


def render_coverage(posts: list[State], night: NightClock, rows: int) -> Panel:
    """The newest ``rows`` posts (``posts`` oldest first), each its title and first words."""
    table = Table(box=None, expand=True, pad_edge=False, show_header=False)
    table.add_column("Time", width=9, no_wrap=True)
    table.add_column("Post", ratio=1, no_wrap=True, overflow="ellipsis")
    for post in reversed(posts[-rows:]):
        title = Text(_one_line(post.get("title", "")), style="bold")
        who = byline(post)
        if who:
            title.append(f"  {who}", style="dim")
        table.add_row(night.format(post.get("published_at")), title)
        table.add_row("", Text(_one_line(post.get("body", "")), style="dim"))
    return Panel(table, title="Live coverage", title_align="left", box=box.ROUNDED)
