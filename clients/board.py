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
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clients.session import ConnectionState, Item, State, Update
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
STATUS_STYLE = {
    "connecting": ("…", "dim"),
    "live": ("●", "bold green"),
    "reconnecting": ("◌", "bold yellow"),
    "resynced": ("●", "bold cyan"),
}


# --- words ---------------------------------------------------------------------------------


def party_name(national: State | None, code: str) -> str:
    parties = (national or {}).get("parties", {})
    return str(parties.get(code, {}).get("name", code))


def ranked(parties: State) -> list[tuple[str, State]]:
    """Parties with seats or votes, by seats, then votes, then code."""
    shown = [(c, p) for c, p in parties.items() if p.get("seats") or p.get("votes")]
    return sorted(shown, key=lambda cp: (-cp[1].get("seats", 0), -cp[1].get("votes", 0), cp[0]))


def seats_text(national: State | None, code: str, party: State) -> str:
    """``Labour 411 (+211)``: seats and the net change against the previous election."""
    return f"{party_name(national, code)} {party['seats']} ({party['net']:+d})"


def leader_text(national: State) -> str:
    if "majority_party" in national:
        return f"{party_name(national, national['majority_party'])} majority"
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
    parts.append(f"{leader_text(national)} ({national['majority']} for a majority)")
    if (check := feed_check_text(national)) is not None:
        parts.append(check)
    return " | ".join(parts)


def clock(seat: State) -> str:
    try:
        return datetime.fromisoformat(seat["declared_at"]).strftime("%H:%M")
    except (KeyError, TypeError, ValueError):
        return ""


def declaration_line(event: State) -> str:
    time = clock(event.get("constituency", {}))
    return f"{time} {event['headline']}" if time else str(event["headline"])


def result_text(seat: State, national: State | None) -> str:
    """``GAIN from Conservative``, ``HOLD``, ``FLASH``, or the seat's status."""
    if "result" not in seat:
        return str(seat.get("status", "awaiting")).upper()
    if seat.get("status") == "flash":
        return "FLASH"
    if seat["result"] == "gain":
        return f"GAIN from {party_name(national, seat['gain_from'])}"
    return "HOLD"


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
            line = national_line(item.state)
            if line != self.last_national_line:
                self.last_national_line = line
                return [line]
        elif item.channel == "declarations":
            return self._declarations(item)
        elif item.channel == self.focus and item.kind != "resumed":
            self.focus_state = item.state
            lines = tuple(focus_lines(item.state, self.national))
            if lines != self.last_focus_lines:
                self.last_focus_lines = lines
                return list(lines)
        return []

    def _declarations(self, item: Update) -> list[str]:
        if item.kind == "event":
            self.recent.append(item.state)
            self.printed_seq = _seq_key(item.seq)
            return [declaration_line(item.state)]
        if item.kind != "snapshot":
            return []
        entries = item.state.get("recent", [])
        self.recent.clear()
        self.recent.extend(entries)
        if self.printed_seq is None:
            self.printed_seq = _seq_key(item.seq)
            return []
        after = self.printed_seq
        self.printed_seq = max(after, _seq_key(item.seq))
        return [declaration_line(e) for e in entries if _seq_key(e.get("seq")) > after]

    def summary(self, count: int = ONCE_RECENT) -> list[str]:
        """The current state as plain lines, for ``--once``."""
        lines = [national_line(self.national)] if self.national else []
        if self.recent:
            lines.append("Latest declarations:")
            lines += [declaration_line(e) for e in list(self.recent)[-count:]]
        if self.focus_state is not None:
            lines += focus_lines(self.focus_state, self.national)
        return lines

    # --- rich --------------------------------------------------------------------------------

    def render(self, console: Console) -> RenderableType:
        """The whole board, with as many declarations as fit the terminal's height."""
        banner, focus = self._render_banner(), self._render_focus()
        used = sum(len(console.render_lines(part)) for part in (banner, focus) if part)
        # The declarations panel's borders, padding and header take 6 lines.
        rows = max(3, min(MAX_ROWS, console.size.height - used - 7))
        parts = [banner, self._render_declarations(rows, console.size.width >= WIDE)]
        return Group(*parts, *([focus] if focus else []))

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
        if national is None:
            body.append("waiting for the national snapshot…", style="dim")
        else:
            parties = [(c, p) for c, p in ranked(national["parties"]) if p["seats"]]
            for index, (_, party) in enumerate(parties):
                if index:
                    body.append("  ")
                body.append(f"{party['name']} ", style="bold")
                body.append(str(party["seats"]), style="bold")
                net = party["net"]
                body.append(f" ({net:+d})", style="green" if net > 0 else "red" if net else "dim")
            if not parties:
                body.append("no seats declared yet", style="dim")
            body.append("\n")
            body.append(f"{national['majority']} seats for a majority", style="bold")
            body.append(f" · {national['seats_to_declare']} seats to declare")
            body.append(f" · {national['declared']} of {national['total_seats']} declared\n")
            if "majority_party" in national:
                body.append(leader_text(national), style="bold green")
            elif "leader" in national:
                name = party_name(national, national["leader"])
                body.append(f"{name} lead", style="bold")
                body.append(f" · {national['seats_to_majority']} seats short of a majority")
            else:
                body.append("no leader yet", style="dim")
            if "exit_poll" in national:
                body.append("\n" + exit_poll_text(national), style="italic")
            if (check := feed_check_text(national)) is not None:
                agrees = national["feed_check"]["agrees"]
                body.append("\n" + check, style="green" if agrees else "bold red")
            if self.recent:
                body.append("\nLatest: ", style="bold")
                body.append(str(self.recent[-1].get("headline", "")))
        return Panel(
            body,
            title=title,
            title_align="left",
            subtitle=self._status_text(),
            subtitle_align="right",
            box=box.ROUNDED,
        )

    def _render_declarations(self, rows: int, wide: bool) -> Panel:
        table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
        table.add_column("Time", width=5, no_wrap=True)
        table.add_column("Constituency", ratio=3, no_wrap=True, overflow="ellipsis")
        table.add_column("Winner", ratio=2, no_wrap=True, overflow="ellipsis")
        table.add_column("Result", ratio=3, no_wrap=True, overflow="ellipsis")
        table.add_column("Majority", justify="right", width=8, no_wrap=True)
        if wide:
            table.add_column("Headline", ratio=6, no_wrap=True, overflow="ellipsis")
        for event in reversed(list(self.recent)[-rows:]):
            seat = event.get("constituency", {})
            if event.get("kind") == "retraction":
                winner, result, style = "", "WITHDRAWN", "bold red"
            else:
                winner = party_name(self.national, seat.get("winner", {}).get("party", ""))
                result = result_text(seat, self.national)
                style = "bold magenta" if result.startswith("GAIN") else "dim"
                if event.get("kind") == "correction":
                    result, style = f"CORRECTED {result}", "bold yellow"
            majority = f"{seat['majority']:,}" if "majority" in seat else ""
            cells: list[RenderableType] = [
                clock(seat),
                seat.get("name", ""),
                winner,
                Text(result, style=style),
                majority,
            ]
            table.add_row(*cells, *([event.get("headline", "")] if wide else []))
        if not self.recent:
            table.add_row("", Text("no declarations yet", style="dim"))
        return Panel(table, title="Latest declarations", title_align="left", box=box.ROUNDED)

    def _render_focus(self) -> Panel | None:
        state = self.focus_state
        if self.focus is None:
            return None
        if state is None:
            return Panel(Text("waiting…", style="dim"), title=self.focus, title_align="left")
        national = self.national
        if "slug" in state:
            title = f"{state['name']} · {state['declared']} of {state['total_seats']} declared"
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
            for name in ("Party", "Seats", "Net", "Gains", "Losses", "Share"):
                table.add_column(name, justify="left" if name == "Party" else "right")
            for code, party in ranked(state["parties"]):
                table.add_row(
                    party_name(national, code),
                    str(party["seats"]),
                    f"{party['net']:+d}",
                    str(party["gains"]),
                    str(party["losses"]),
                    f"{party['share']:.1f}%",
                )
            if not state["declared"]:
                table.add_row(Text("no seats declared yet", style="dim"))
            return Panel(table, title=title, title_align="left", box=box.ROUNDED)
        title = f"{state['name']} · {state.get('region', '')}"
        head = Text(result_text(state, national), style="bold")
        if "winner" in state:
            winner = state["winner"]
            head.append(f"  {winner['name']} ({party_name(national, winner['party'])})")
        if "majority" in state:
            head.append(f"  majority {state['majority']:,} · turnout {state['turnout']:.1f}%")
            head.append(f" · {state['valid_votes']:,} valid votes")
        if state.get("corrections"):
            head.append(f" · corrected {state['corrections']} times", style="yellow")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("Candidate")
        table.add_column("Party")
        table.add_column("Votes", justify="right")
        table.add_column("Share", justify="right")
        winner = state.get("winner", {})
        for candidate in state.get("candidates", []):
            # By name and party: two candidates may share a name (two Greg Smiths, 2024).
            elected = (candidate["name"], candidate["party"]) == (
                winner.get("name"),
                winner.get("party"),
            )
            style = "bold" if elected else ""
            table.add_row(
                Text(candidate["name"], style=style),
                party_name(national, candidate["party"]),
                f"{candidate['votes']:,}",
                f"{candidate['share']:.1f}%",
            )
        body: RenderableType = Group(head, table) if state.get("candidates") else head
        return Panel(body, title=title, title_align="left", box=box.ROUNDED)
