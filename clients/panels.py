"""The ticker board's tables: the latest declarations, and the followed seat or area."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clients.clock import NightClock
from clients.session import State

__all__ = ["party_name", "ranked", "render_declarations", "render_focus", "result_text"]


def party_name(national: State | None, code: str) -> str:
    parties = (national or {}).get("parties", {})
    return str(parties.get(code, {}).get("name", code))


def ranked(parties: State) -> list[tuple[str, State]]:
    """Parties with seats or votes, by seats, then votes, then code."""
    shown = [(c, p) for c, p in parties.items() if p.get("seats") or p.get("votes")]
    return sorted(shown, key=lambda cp: (-cp[1].get("seats", 0), -cp[1].get("votes", 0), cp[0]))


def result_text(seat: State, national: State | None) -> str:
    """``GAIN from Conservative``, ``HOLD``, ``FLASH``, or the seat's status."""
    if "result" not in seat:
        return str(seat.get("status", "awaiting")).upper()
    if seat.get("status") == "flash":
        return "FLASH"
    if seat["result"] == "gain":
        return f"GAIN from {party_name(national, seat['gain_from'])}"
    return "HOLD"


def render_declarations(
    recent: list[State], national: State | None, night: NightClock, wide: bool
) -> Panel:
    """The declarations (oldest first) as a table, newest at the top; ``wide`` adds each
    headline."""
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("Time", width=9, no_wrap=True)
    table.add_column("Constituency", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("Winner", ratio=2, no_wrap=True, overflow="ellipsis")
    table.add_column("Result", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("Majority", justify="right", width=8, no_wrap=True)
    if wide:
        table.add_column("Headline", ratio=6, no_wrap=True, overflow="ellipsis")
    for event in reversed(recent):
        seat = event.get("constituency", {})
        if event.get("kind") == "retraction":
            winner, result, style = "", "WITHDRAWN", "bold red"
        else:
            winner = party_name(national, seat.get("winner", {}).get("party", ""))
            result = result_text(seat, national)
            style = "bold magenta" if result.startswith("GAIN") else "dim"
            if event.get("kind") == "correction":
                result, style = f"CORRECTED {result}", "bold yellow"
        majority = f"{seat['majority']:,}" if "majority" in seat else ""
        cells: list[RenderableType] = [
            night.format(seat.get("declared_at")),
            seat.get("name", ""),
            winner,
            Text(result, style=style),
            majority,
        ]
        table.add_row(*cells, *([event.get("headline", "")] if wide else []))
    if not recent:
        table.add_row("", Text("no declarations yet", style="dim"))
    return Panel(table, title="Latest declarations", title_align="left", box=box.ROUNDED)


def render_focus(focus: str, state: State | None, national: State | None) -> Panel:
    """The followed seat's result, or the followed region's (or nation's) totals."""
    if state is None:
        return Panel(Text("waiting…", style="dim"), title=focus, title_align="left")
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
