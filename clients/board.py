"""What the terminal ticker shows: the words for a night's states and the live board.

Pure functions of the channels' states (plain one-line summaries for pipes and ``--once``),
and :class:`Board`, which takes the client's items and renders itself with rich.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from clients.clock import NightClock
from clients.coverage import post_line, render_coverage
from clients.panels import (
    party_name,
    ranked,
    render_declarations,
    render_focus,
    result_text,
)
from clients.session import ConnectionState, Item, State, Update, follow_posts
from service.core.seq import ZERO, Seq

__all__ = [
    "Board",
    "declaration_line",
    "describe",
    "feed_check_text",
    "focus_lines",
    "national_line",
    "party_name",
]

WIDE = 150
"""Terminal width from which each declaration's headline gets a column of its own."""
MAX_ROWS = 20
"""Declarations shown on the board at most."""
RESYNC_SHOWN = 10.0
"""Seconds the board shows 'resynced' and its detail before going back to 'live'."""
ONCE_RECENT = 10
"""Declarations listed by ``--once``."""
POSTS_SHOWN = 3
"""Posts on the board's live coverage panel at most."""
ONCE_POSTS = 5
"""Posts listed by ``--once``."""
STATUS_STYLE = {
    "connecting": ("…", "dim"),
    "live": ("●", "bold green"),
    "reconnecting": ("◌", "bold yellow"),
    "resynced": ("●", "bold cyan"),
}


# --- words ---------------------------------------------------------------------------------


def seats_text(national: State | None, code: str, party: State) -> str:
    """``Labour 411 (+211)``: seats and the net change against the previous election."""
    return f"{party_name(national, code)} {party['seats']} ({party['net']:+d})"


def leader_text(national: State) -> str:
    if "majority_party" in national:
        code = national["majority_party"]
        overall = national["parties"].get(code, {}).get("overall_majority")
        text = f"{party_name(national, code)} majority"
        return text if overall is None else f"{text} of {overall}"
    if "leader" in national:
        name = party_name(national, national["leader"])
        return f"{name} lead, {national['seats_to_majority']} short of a majority"
    return "no seats declared yet"


def exit_poll_text(national: State) -> str:
    seats = national.get("exit_poll", {}).get("seats", {})
    ordered = sorted(seats.items(), key=lambda cs: -cs[1])
    return "Exit poll: " + ", ".join(f"{party_name(national, c)} {n}" for c, n in ordered)


def feed_check_text(national: State) -> str | None:
    """Whether a feed's own totals agree with ours, and each figure that does not."""
    check = national.get("feed_check")
    if check is None:
        return None
    results = check["results"]
    over = f"{check['source']}'s totals over {results} result{'' if results == 1 else 's'}"
    if check["agrees"]:
        return f"{over} agree"
    differences = "; ".join(
        f"{party_name(national, code)} {figure} {feeds} (ours {ours})"
        for code, figures in check["differences"].items()
        for figure, (feeds, ours) in figures.items()
    )
    return f"{over} differ: {differences}"


def national_line(national: State) -> str:
    """One line: progress, parties by seats with net change, the majority position."""
    declared, total = national["declared"], national["total_seats"]
    parts = [f"{declared} of {total} declared, {national['seats_to_declare']} to declare"]
    parties = [seats_text(national, c, p) for c, p in ranked(national["parties"]) if p["seats"]]
    if parties:
        parts.append(", ".join(parties))
    elif "exit_poll" in national:
        parts.append(exit_poll_text(national))
    needed = f"{national['majority']} for a majority"
    if "working_majority" in national:
        needed += f", {national['working_majority']} for a working majority"
    parts.append(f"{leader_text(national)} ({needed})")
    if (check := feed_check_text(national)) is not None:
        parts.append(check)
    return " | ".join(parts)


def declaration_line(event: State, night: NightClock | None = None) -> str:
    """``01:02 Labour gain ...``; the time with its day when it is past the ``night``
    (by default the night this declaration begins)."""
    declared_at = event.get("constituency", {}).get("declared_at")
    if night is None:
        night = NightClock()
        night.begin(declared_at)
    time = night.format(declared_at)
    return f"{time} {event['headline']}" if time else str(event["headline"])


def focus_lines(state: State, national: State | None) -> list[str]:
    if "slug" in state:  # a region or nation
        line = f"{state['name']}: {state['declared']} of {state['total_seats']} declared"
        parties = [seats_text(national, c, p) for c, p in ranked(state["parties"]) if p["seats"]]
        return [line + (" | " + ", ".join(parties) if parties else "")]
    line = f"{state['name']}: {result_text(state, national)}"
    if "winner" in state:
        winner = state["winner"]
        line += f", {winner['name']} ({party_name(national, winner['party'])})"
    if "majority" in state:
        line += f", majority {state['majority']:,}, turnout {state['turnout']}%"
    lines = [line]
    for candidate in state.get("candidates", []):
        lines.append(
            f"  {candidate['name']} ({party_name(national, candidate['party'])}) "
            f"{candidate['votes']:,} {candidate['share']}%"
        )
    return lines


def describe(state: ConnectionState) -> str:
    """The connection state's detail, with the wait before the next attempt if there is one."""
    if state.retry_in is None:
        return state.detail
    return f"{state.detail}; retrying in {state.retry_in:.1f}s"


# --- the board -------------------------------------------------------------------------------


def _exit_poll_entries(national: State) -> list[Text]:
    """``Exit poll:`` and each party's projection, as whole entries."""
    seats = national.get("exit_poll", {}).get("seats", {})
    if not seats:
        return []
    ordered = sorted(seats.items(), key=lambda cs: -cs[1])
    entries = [Text(f"{party_name(national, c)} {n}", style="italic") for c, n in ordered]
    return [Text("Exit poll:", style="italic"), *entries]


def _seats_entry(party: State) -> Text:
    """``Labour 411 (+211)``, the change coloured, as one unbreakable piece."""
    net = party["net"]
    entry = Text(f"{party['name']} {party['seats']}", style="bold", no_wrap=True)
    entry.append(f" ({net:+d})", style="green" if net > 0 else "red" if net else "dim")
    return entry


def _seq_key(seq: object) -> Seq:
    """A log entry's seq; a malformed one (no server sends it) sorts first, never crashes."""
    try:
        return Seq.parse(seq) if isinstance(seq, str) else ZERO
    except ValueError:
        return ZERO


@dataclass
class Board:
    """What the ticker shows, fed with the client's items; renders plain lines or rich."""

    focus: str | None
    national: State | None = None
    focus_state: State | None = None
    status: ConnectionState = field(default_factory=lambda: ConnectionState("connecting"))
    printed_seq: Seq | None = None
    """The newest declaration already printed (plain mode), so a fresh snapshot after a
    reconnect prints only what came after it."""
    last_national_line: str = ""
    last_focus_lines: tuple[str, ...] = ()
    status_at: float = 0.0
    status_clock: datetime = field(default_factory=datetime.now)
    night: NightClock = field(default_factory=NightClock)
    posts: list[State] = field(default_factory=list)
    """The live coverage posts, oldest first."""
    printed_post_seq: Seq | None = None

    def __post_init__(self) -> None:
        self.recent: deque[State] = deque(maxlen=50)

    def apply(self, item: Item) -> list[str]:
        """Take one item; returns the plain lines it calls for (possibly none)."""
        if isinstance(item, ConnectionState):
            self.status = item
            self.status_at, self.status_clock = time.monotonic(), datetime.now()
            return []
        if not isinstance(item, Update):
            return []
        if item.channel == "national" and item.kind != "resumed":
            self.national = item.state
            self.night.begin(item.state.get("exit_poll", {}).get("published_at"))
            line = national_line(item.state)
            if line != self.last_national_line:
                self.last_national_line = line
                return [line]
        elif item.channel == "declarations":
            return self._declarations(item)
        elif item.channel == "posts":
            return self._posts(item)
        elif item.channel == self.focus and item.kind != "resumed":
            self.focus_state = item.state
            lines = tuple(focus_lines(item.state, self.national))
            if lines != self.last_focus_lines:
                self.last_focus_lines = lines
                return list(lines)
        return []

    def _declarations(self, item: Update) -> list[str]:
        if item.kind == "event":
            self.night.begin(item.state.get("constituency", {}).get("declared_at"))
            self.recent.append(item.state)
            self.printed_seq = _seq_key(item.seq)
            return [declaration_line(item.state, self.night)]
        if item.kind != "snapshot":
            return []
        entries = item.state.get("recent", [])
        for entry in entries:
            self.night.begin(entry.get("constituency", {}).get("declared_at"))
        self.recent.clear()
        self.recent.extend(entries)
        if self.printed_seq is None:
            self.printed_seq = _seq_key(item.seq)
            return []
        after = self.printed_seq
        self.printed_seq = max(after, _seq_key(item.seq))
        return [declaration_line(e, self.night) for e in entries if _seq_key(e.get("seq")) > after]

    def _posts(self, item: Update) -> list[str]:
        """Like the declarations: a line per event; after a fresh snapshot, one per post
        not printed yet."""
        if item.kind == "event":
            self.posts = follow_posts(self.posts, item.state)
            self.printed_post_seq = _seq_key(item.seq)
            return [post_line(item.state, self.night)]
        if item.kind != "snapshot":
            return []
        self.posts = list(item.state.get("recent", []))
        after = self.printed_post_seq
        self.printed_post_seq = max(after or ZERO, _seq_key(item.seq))
        if after is None:
            return []
        fresh = [p for p in self.posts if _seq_key(p.get("seq")) > after]
        return [post_line({"kind": "post", "post": p}, self.night) for p in fresh]

    def summary(self, count: int = ONCE_RECENT) -> list[str]:
        """The current state as plain lines, for ``--once``."""
        lines = [national_line(self.national)] if self.national else []
        if self.recent:
            lines.append("Latest declarations:")
            lines += [declaration_line(e, self.night) for e in list(self.recent)[-count:]]
        if self.posts:
            lines.append("Live coverage:")
            lines += [
                post_line({"kind": "post", "post": p}, self.night) for p in self.posts[-ONCE_POSTS:]
            ]
        if self.focus_state is not None:
            lines += focus_lines(self.focus_state, self.national)
        return lines

    # --- rich --------------------------------------------------------------------------------

    def render(self, console: Console) -> RenderableType:
        """The whole board, with as many declarations as fit the terminal's height."""
        banner = self._render_banner()
        focus = (
            None
            if self.focus is None
            else render_focus(self.focus, self.focus_state, self.national)
        )
        coverage = render_coverage(self.posts, self.night, POSTS_SHOWN) if self.posts else None
        used = sum(len(console.render_lines(part)) for part in (banner, coverage, focus) if part)
        # The declarations panel's borders, padding and header take 6 lines.
        rows = max(3, min(MAX_ROWS, console.size.height - used - 7))
        declarations = list(self.recent)[-rows:]
        wide = console.size.width >= WIDE
        parts = [banner, render_declarations(declarations, self.national, self.night, wide)]
        return Group(*parts, *(part for part in (coverage, focus) if part))

    def _status_text(self) -> Text:
        status = self.status.status
        if status == "resynced" and time.monotonic() - self.status_at > RESYNC_SHOWN:
            # Whole again for a while: live, with a note of the last resync.
            mark, style = STATUS_STYLE["live"]
            text = Text(f"{mark} live", style=style)
            return text.append(f" (resynced at {self.status_clock:%H:%M:%S})", style="dim")
        mark, style = STATUS_STYLE[status]
        text = Text(f"{mark} {status}", style=style)
        if status != "live" and self.status.detail:
            text.append(f"  {describe(self.status)}", style="dim")
        return text

    def _render_banner(self) -> Panel:
        national = self.national
        title = f"seatcast · {national['election']}" if national else "seatcast"
        body = Text()
        parts: list[RenderableType] = []
        if national is None:
            body.append("waiting for the national snapshot…", style="dim")
        else:
            # Whole entries side by side: a party's name, seats and change (or a figure and
            # its words) never break across lines.
            parties = [(c, p) for c, p in ranked(national["parties"]) if p["seats"]]
            if parties:
                parts.append(Columns([_seats_entry(p) for _, p in parties], padding=(0, 2)))
            else:
                parts.append(Text("no seats declared yet", style="dim"))
            figures = [Text(f"{national['majority']} seats for a majority", style="bold")]
            if "working_majority" in national:
                figures.append(Text(f"{national['working_majority']} for a working majority"))
            figures.append(Text(f"{national['seats_to_declare']} seats to declare"))
            figures.append(Text(f"{national['declared']} of {national['total_seats']} declared"))
            parts.append(Columns(figures, padding=(0, 3)))
            if "majority_party" in national:
                body.append(leader_text(national), style="bold green")
            elif "leader" in national:
                name = party_name(national, national["leader"])
                body.append(f"{name} lead", style="bold")
                body.append(f" · {national['seats_to_majority']} seats short of a majority")
            else:
                body.append("no leader yet", style="dim")
        parts.append(body)
        poll = [] if national is None else _exit_poll_entries(national)
        if poll:
            parts.append(Columns(poll, padding=(0, 2)))
        check = None if national is None else feed_check_text(national)
        if national is not None and check is not None:
            agrees = national["feed_check"]["agrees"]
            parts.append(Text(check, style="green" if agrees else "bold red"))
        if self.recent:
            latest = Text("Latest: ", style="bold")
            parts.append(latest.append(str(self.recent[-1].get("headline", ""))))
        return Panel(
            Group(*parts),
            title=title,
            title_align="left",
            subtitle=self._status_text(),
            subtitle_align="right",
            box=box.ROUNDED,
        )
