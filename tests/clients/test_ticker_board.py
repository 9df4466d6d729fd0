"""The ticker as a new user saw it: whole entries on the party line, the day of a time past
the night, the working and overall majorities, and the live coverage posts."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from clients.board import Board, declaration_line, national_line
from clients.clock import NightClock
from clients.coverage import post_line, terminal_safe
from tests.clients.test_ticker import (
    caught_up,
    declaration,
    national,
    read_line,
    ticker_process,
    update,
)
from tests.service import conftest as service_fixtures
from tests.service.conftest import NIGHT_2024, RunningService, xadd

make_settings = service_fixtures.make_settings
service = service_fixtures.service

EARLY_2024: dict[str, Any] = {
    "election": "uk-2024",
    "total_seats": 650,
    "majority": 326,
    "working_majority": 324,
    "declared": 128,
    "seats_to_declare": 522,
    "leader": "LAB",
    "seats_to_majority": 224,
    "parties": {
        code: {"name": name, "seats": seats, "net": net, "votes": seats * 1000, "share": 1.0}
        for code, name, seats, net in [
            ("LAB", "Labour", 102, 51),
            ("CON", "Conservative", 10, -40),
            ("LD", "Liberal Democrat", 7, 6),
            ("SNP", "Scottish National Party", 4, -31),
            ("RUK", "Reform UK", 2, 2),
            ("DUP", "Democratic Unionist Party", 1, -1),
            ("SDLP", "Social Democratic and Labour Party", 1, 0),
            ("SF", "Sinn Féin", 1, 0),
        ]
    },
}
ENTRIES = [
    "Labour 102 (+51)",
    "Conservative 10 (-40)",
    "Liberal Democrat 7 (+6)",
    "Scottish National Party 4 (-31)",
    "Reform UK 2 (+2)",
    "Democratic Unionist Party 1 (-1)",
    "Social Democratic and Labour Party 1 (+0)",
    "Sinn Féin 1 (+0)",
    "326 seats for a majority",
    "324 for a working majority",
    "522 seats to declare",
    "128 of 650 declared",
]


def drawn(board: Board, width: int, height: int = 60) -> str:
    console = Console(record=True, width=width, height=height, color_system=None)
    console.print(board.render(console))
    return console.export_text()


@pytest.mark.parametrize("width", [50, 60, 72, 80, 90, 100, 120, 160])
def test_the_party_line_never_breaks_inside_an_entry(width: int) -> None:
    board = Board(focus=None)
    board.apply(update("national", "snapshot", "5-0", EARLY_2024))

    text = drawn(board, width)

    lines = [line.strip("│ ") for line in text.splitlines()]
    for entry in ENTRIES:
        assert any(entry in line for line in lines), f"{entry!r} is broken at width {width}"


def test_the_working_and_overall_majorities_on_the_board_and_the_summary_line() -> None:
    final = national(majority_party="LAB", working_majority=320)
    final["parties"]["LAB"]["overall_majority"] = 172
    board = Board(focus=None)
    board.apply(update("national", "snapshot", "5-0", final))

    text = drawn(board, 100)

    assert "320 for a working majority" in text
    assert "Labour majority of 172" in text
    assert national_line(final).endswith(
        "| Labour majority of 172 (326 for a majority, 320 for a working majority)"
    )


INVERNESS_EVENT = {
    "seq": "9-0",
    "kind": "declaration",
    "headline": "Liberal Democrat gain Inverness, Skye and West Ross-shire from SNP",
    "constituency": {
        "name": "Inverness, Skye and West Ross-shire",
        "status": "declared",
        "winner": {"name": "Angus MacDonald", "party": "LD"},
        "result": "gain",
        "gain_from": "SNP",
        "majority": 2160,
        "declared_at": "2024-07-06T17:50:00+01:00",
    },
}


def test_a_declaration_after_the_night_carries_its_day_in_lines_and_on_the_board() -> None:
    board = Board(focus=None)
    exit_poll = {"seats": {"LAB": 410}, "published_at": "2024-07-04T22:00:00+01:00"}
    board.apply(update("national", "snapshot", "1-0", national(exit_poll=exit_poll)))
    board.apply(update("declarations", "snapshot", "2-0", {"recent": [declaration("2-0", "A")]}))

    lines = board.apply(update("declarations", "event", "9-0", INVERNESS_EVENT))

    assert lines == [f"Sat 17:50 {INVERNESS_EVENT['headline']}"]
    assert board.summary()[-2:] == ["01:02 Labour gain A", lines[0]]
    text = drawn(board, 120)
    assert re.search(r"│  Sat 17:50 +Inverness", text)
    assert re.search(r"│  01:02 +A ", text)
    # Alone, a declaration begins its own night: its time is bare.
    assert declaration_line(INVERNESS_EVENT) == f"17:50 {INVERNESS_EVENT['headline']}"


def test_the_night_clock_reads_times_as_the_feed_wrote_them() -> None:
    night = NightClock()
    assert night.format("2024-07-05T04:12:00+01:00") == "Fri 04:12"  # no night begun
    night.begin("2024-07-04T22:00:00+01:00")
    night.begin("not a time")
    assert [
        night.format(text)
        for text in (
            "2024-07-04T23:17:00+01:00",
            "2024-07-05T21:59:00+01:00",
            "2024-07-05T22:00:00+01:00",
            "2024-07-06T17:50:00+01:00",
            "2024-07-05T03:12:00+00:00",
            "2024-07-05T03:12:00",
            None,
        )
    ] == ["23:17", "21:59", "Fri 22:00", "Sat 17:50", "03:12", "03:12", ""]


# --- posts -------------------------------------------------------------------------------------


def post(post_id: str, seq: str, title: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": post_id,
        "seq": seq,
        "title": title,
        "body": "Housing.\nAnd the cost of living.",
        "published_at": "2024-07-04T23:21:00+01:00",
        **fields,
    }


def test_posts_are_lines_and_a_live_coverage_panel() -> None:
    board = Board(focus=None)
    exit_poll = {"seats": {"LAB": 410}, "published_at": "2024-07-04T22:00:00+01:00"}
    board.apply(update("national", "snapshot", "1-0", national(exit_poll=exit_poll)))
    first = post("p1", "2-0", "Key issues", author="Ana Ruiz", role="Political correspondent")
    assert board.apply(update("posts", "snapshot", "2-0", {"recent": [first]})) == []

    lines = [
        *board.apply(
            update("posts", "event", "3-0", {"kind": "post", "post": post("p2", "3-0", "Turnout")})
        ),
        *board.apply(
            update(
                "posts",
                "event",
                "4-0",
                {"kind": "replacement", "post": post("p1", "4-0", "Key issues, updated")},
            )
        ),
        *board.apply(
            update("posts", "event", "5-0", {"kind": "withdrawal", "post": post("p2", "3-0", "T")})
        ),
    ]

    assert lines == [
        "23:21 Post: Turnout",
        "23:21 Post updated: Key issues, updated",
        "Post withdrawn: T",
    ]
    assert [p["title"] for p in board.posts] == ["Key issues, updated"]
    text = drawn(board, 100)
    assert "Live coverage" in text
    assert re.search(r"│ 23:21 +Key issues, updated", text)
    assert "Housing. And the cost of living." in text
    assert board.summary()[-2:] == ["Live coverage:", "23:21 Post: Key issues, updated"]
    # After a reconnect's fresh snapshot, only the posts not printed yet are printed.
    recent = [board.posts[0], post("p3", "7-0", "Exit poll reaction")]
    assert board.apply(update("posts", "snapshot", "7-0", {"recent": recent})) == [
        "23:21 Post: Exit poll reaction"
    ]


def test_a_terminal_never_gets_a_control_sequence_from_a_post() -> None:
    hostile = post(
        "p1", "2-0", "Clear\x1b[2J the \u202escreen", author="\x07Ana", body="a\x1b]0;owned\x07b"
    )
    line = post_line({"kind": "post", "post": hostile}, NightClock())

    assert line == "Thu 23:21 Post: Clear\ufffd[2J the \ufffdscreen (\ufffdAna)"
    assert terminal_safe("tab\tand\nline") == "tab\tand\nline"
    board = Board(focus=None)
    board.apply(update("posts", "snapshot", "2-0", {"recent": [hostile]}))
    text = drawn(board, 100)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "a\ufffd]0;owned\ufffdb" in text


async def test_piped_it_prints_a_line_per_post(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with ticker_process("--url", service.ws) as proc:
        assert (await read_line(proc.stderr)).startswith("seatcast-ticker: live")
        await read_line(proc.stdout)  # the national summary
        ids = await xadd(
            redis,
            service.settings.stream,
            NIGHT_2024[0],
            {
                "type": "post",
                "id": "p1",
                "title": "What were the key issues in Peterborough?",
                "body": "Housing.",
                "author": "Ana Ruiz",
                "published_at": "2024-07-04T23:21:00+01:00",
            },
            {"type": "post", "id": "p1", "withdrawn": True},
        )
        await caught_up(service, ids[-1])
        lines = [await read_line(proc.stdout) for _ in range(3)]
        assert lines[1:] == [
            "23:21 Post: What were the key issues in Peterborough? (Ana Ruiz)",
            "Post withdrawn: What were the key issues in Peterborough?",
        ]
        proc.send_signal(signal.SIGINT)
