"""The terminal ticker: its words and board as plain functions, and the real command run as a
subprocess against a real service in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from rich.console import Console

from clients.board import Board, national_line
from clients.session import ConnectionState, Update
from clients.ticker import (
    UsageError,
    http_base,
    resolve_area,
    resolve_constituency,
    stream_url,
)
from tests.clients.commands import ROOT, Run, run_module
from tests.conftest import TIMEOUT
from tests.service import conftest as service_fixtures
from tests.service.conftest import NIGHT_2024, RunningService, xadd

make_settings = service_fixtures.make_settings
service = service_fixtures.service

PETERBOROUGH = "E14001425"


# --- words and the board, without a service ------------------------------------------------


@pytest.mark.parametrize(
    ("ws", "http"),
    [
        ("ws://127.0.0.1:8000/ws", "http://127.0.0.1:8000"),
        ("wss://results.example/seatcast/ws", "https://results.example/seatcast"),
        ("ws://host:1/ws/", "http://host:1"),
        ("http://host:1/sse", "http://host:1"),
    ],
)
def test_the_http_root_sits_beside_the_websocket(ws: str, http: str) -> None:
    assert http_base(ws) == http


@pytest.mark.parametrize(
    ("given", "followed"),
    [
        ("ws://h:1/ws", "http://h:1/sse"),
        (
            "wss://results.example/seatcast/ws?token=t",
            "https://results.example/seatcast/sse?token=t",
        ),
        ("http://h:1", "http://h:1/sse"),
        ("http://h:1/sse", "http://h:1/sse"),
    ],
)
def test_over_sse_the_ticker_follows_the_sse_url_beside_any_url_given(
    given: str, followed: str
) -> None:
    assert stream_url(given, "sse") == followed
    assert stream_url(given, "websocket") == given


SEATS = {
    "E14001425": {"name": "Peterborough"},
    "E14001426": {"name": "Plymouth Moor View"},
    "E14000001": {"name": "North West Cambridgeshire"},
}


@pytest.mark.parametrize("query", ["Peterborough", "PETERBOROUGH", " peterborough", "e14001425"])
def test_a_constituency_is_found_by_name_or_id_in_any_case(query: str) -> None:
    assert resolve_constituency(query, SEATS) == "E14001425"


def test_a_wrong_constituency_suggests_close_names() -> None:
    with pytest.raises(UsageError, match=r"did you mean: Peterborough\?"):
        resolve_constituency("Peterboro", SEATS)
    with pytest.raises(UsageError) as caught:
        resolve_constituency("Atlantis", SEATS)
    assert str(caught.value) == "no constituency 'Atlantis'"


def test_a_region_or_nation_by_slug_or_name() -> None:
    regions = {"east-of-england": {"name": "East of England"}, "scotland": {"name": "Scotland"}}
    nations = {"scotland": {"name": "Scotland"}, "wales": {"name": "Wales"}}
    assert resolve_area("East of England", regions, nations) == "region:east-of-england"
    assert resolve_area("scotland", regions, nations) == "region:scotland"
    assert resolve_area("WALES", regions, nations) == "nation:wales"
    with pytest.raises(UsageError, match="did you mean: East of England"):
        resolve_area("east of englnd", regions, nations)


def national(**extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "election": "uk-2024",
        "total_seats": 650,
        "majority": 326,
        "declared": 649,
        "seats_to_declare": 1,
        "leader": "LAB",
        "seats_to_majority": 0,
        "parties": {
            "LAB": {"name": "Labour", "seats": 411, "net": 211, "votes": 9, "share": 33.7},
            "CON": {"name": "Conservative", "seats": 121, "net": -251, "votes": 6, "share": 23.7},
            "GRN": {"name": "Green", "seats": 0, "net": 0, "votes": 0, "share": 0.0},
        },
    }
    state.update(extra)
    return state


@pytest.mark.parametrize(
    ("state", "line"),
    [
        (
            national(majority_party="LAB"),
            "649 of 650 declared, 1 to declare | Labour 411 (+211), Conservative 121 (-251) "
            "| Labour majority (326 for a majority)",
        ),
        (
            national(seats_to_majority=12),
            "649 of 650 declared, 1 to declare | Labour 411 (+211), Conservative 121 (-251) "
            "| Labour lead, 12 short of a majority (326 for a majority)",
        ),
    ],
)
def test_the_national_summary_line(state: dict[str, Any], line: str) -> None:
    assert national_line(state) == line


def declaration(seq: str, name: str) -> dict[str, Any]:
    seat = {
        "name": name,
        "status": "declared",
        "winner": {"name": "A", "party": "LAB"},
        "result": "gain",
        "gain_from": "CON",
        "majority": 1234,
        "declared_at": "2024-07-05T01:02:00+01:00",
    }
    return {
        "seq": seq,
        "kind": "declaration",
        "headline": f"Labour gain {name}",
        "constituency": seat,
    }


def update(channel: str, kind: Any, seq: str, state: dict[str, Any]) -> Update:
    return Update(channel, kind, seq, state, {})


def test_after_a_fresh_snapshot_only_declarations_not_yet_printed_are_printed() -> None:
    board = Board(focus=None)
    first = [declaration("1-0", "A"), declaration("2-0", "B")]
    assert board.apply(update("declarations", "snapshot", "2-0", {"recent": first})) == []
    assert board.apply(update("declarations", "event", "3-0", declaration("3-0", "C"))) == [
        "01:02 Labour gain C"
    ]
    recent = [*first, declaration("3-0", "C"), declaration("4-0", "D"), declaration("10-0", "E")]
    lines = board.apply(update("declarations", "snapshot", "10-0", {"recent": recent}))
    assert lines == ["01:02 Labour gain D", "01:02 Labour gain E"]


def test_a_seq_missing_its_second_part_is_not_read_as_its_first_part_and_0() -> None:
    board = Board(focus=None)
    board.apply(update("declarations", "event", "5-0", declaration("5-0", "A")))
    recent = [declaration("5-0", "A"), declaration("7", "Malformed"), declaration("6-0", "B")]
    lines = board.apply(update("declarations", "snapshot", "6-0", {"recent": recent}))
    assert len(lines) == 1 and "B" in lines[0]


def test_the_board_draws_the_banner_declarations_and_connection_state() -> None:
    board = Board(focus=None)
    board.apply(ConnectionState("live", "2 channels"))
    board.apply(update("national", "snapshot", "5-0", national(majority_party="LAB")))
    board.apply(update("declarations", "event", "5-0", declaration("5-0", "Peterborough")))
    console = Console(record=True, width=100, height=30, color_system=None)
    console.print(board.render(console))
    text = console.export_text()
    for expected in (
        "seatcast · uk-2024",
        "Labour 411 (+211)",
        "Conservative 121 (-251)",
        "326 seats for a majority",
        "1 seats to declare",
        "Labour majority",
        "Latest: Labour gain Peterborough",
        "GAIN from Conservative",
        "1,234",
        "● live",
    ):
        assert expected in text, expected
    board.apply(ConnectionState("reconnecting", "connection closed (1012)", 0.4))
    console.print(board.render(console))
    assert "◌ reconnecting  connection closed (1012)" in console.export_text()


# --- the real command against a real service --------------------------------------------------


def ticker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEATCAST_URL", "COLUMNS", "LINES")}
    env.update(extra)
    return env


async def run_ticker(*args: str, env: dict[str, str] | None = None) -> Run:
    return await run_module("clients.ticker", *args, env=env or ticker_env(), seconds=TIMEOUT)


async def caught_up(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


async def test_once_prints_the_current_state_as_plain_lines(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:100])
    await caught_up(service, ids[-1])
    # The URL from the environment, the constituency by name in another case.
    run = await run_ticker(
        "--once", "--constituency", "peterborough", env=ticker_env(SEATCAST_URL=service.ws)
    )
    assert run.code == 0, run.stderr
    assert "\x1b" not in run.stdout
    rest = (await service.get("/api/national")).json()["data"]
    lines = run.stdout.splitlines()
    assert lines[0] == national_line(rest)
    assert lines[0].startswith("99 of 650 declared, 551 to declare | Labour ")
    assert lines[1] == "Latest declarations:"
    recent = (await service.get("/api/declarations")).json()["data"]["recent"]
    headlines = [line.split(" ", 1)[1] for line in lines[2:12]]
    assert headlines == [entry["headline"] for entry in recent[-10:]]
    assert lines[12] == "Peterborough: AWAITING"


async def test_json_once_prints_raw_snapshots_for_jq(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:20])
    await caught_up(service, ids[-1])
    run = await run_ticker(
        "--url", service.ws, "--json", "--once", "--constituency", PETERBOROUGH.lower()
    )
    assert run.code == 0, run.stderr
    messages = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert [(m["type"], m["channel"]) for m in messages] == [
        ("snapshot", "national"),
        ("snapshot", "declarations"),
        ("snapshot", "posts"),
        ("snapshot", f"constituency:{PETERBOROUGH}"),
    ]
    rest = (await service.get("/api/national")).json()
    assert {"seq": messages[0]["seq"], "data": messages[0]["data"]} == rest
    region = await run_ticker("--url", service.ws, "--json", "--once", "--region", "Scotland")
    assert orjson.loads(region.stdout.splitlines()[-1])["channel"] == "region:scotland"


@contextlib.asynccontextmanager
async def ticker_process(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.ticker",
        *args,
        cwd=ROOT,
        env=ticker_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    line = await asyncio.wait_for(stream.readline(), TIMEOUT)
    assert line, "the ticker closed its output"
    return line.decode().rstrip("\n")


async def test_piped_it_prints_a_line_per_declaration_and_per_national_change(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with ticker_process("--url", service.ws) as proc:
        assert (await read_line(proc.stderr)).startswith("seatcast-ticker: live")
        first = await read_line(proc.stdout)
        assert (
            first == "0 of 650 declared, 650 to declare | no seats declared yet "
            "(326 for a majority, 324 for a working majority)"
        )
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:5])
        await caught_up(service, ids[-1])
        recent = (await service.get("/api/declarations")).json()["data"]["recent"]
        rest = (await service.get("/api/national")).json()["data"]
        lines: list[str] = []
        while national_line(rest) not in lines or len(lines) < 9:
            lines.append(await read_line(proc.stdout))
        assert lines[0].startswith("0 of 650 declared, 650 to declare | Exit poll: Labour 410, ")
        headlines = [line for line in lines if " declared, " not in line]
        assert [h.split(" ", 1)[1] for h in headlines] == [e["headline"] for e in recent]
        summaries = [line for line in lines if " declared, " in line]
        assert [s.split(" ", 1)[0] for s in summaries] == ["0", "1", "2", "3", "4"]
        assert "\x1b" not in "".join(lines)
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), TIMEOUT)
        assert proc.stderr is not None
        stderr = (await proc.stderr.read()).decode()
        assert code in (0, 130)
        assert "Traceback" not in stderr


async def test_over_sse_once_and_json_print_what_the_websocket_does(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:20])
    await caught_up(service, ids[-1])
    run = await run_ticker("--transport", "sse", "--url", service.http, "--once")
    assert run.code == 0, run.stderr
    rest = (await service.get("/api/national")).json()
    assert run.stdout.splitlines()[0] == national_line(rest["data"])
    run = await run_ticker("--transport", "sse", "--url", service.ws, "--json", "--once")
    assert run.code == 0, run.stderr
    messages = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert [(m["type"], m["channel"]) for m in messages] == [
        ("snapshot", "national"),
        ("snapshot", "declarations"),
        ("snapshot", "posts"),
    ]
    assert {"seq": messages[0]["seq"], "data": messages[0]["data"]} == rest


async def test_over_sse_piped_it_prints_each_declaration_as_it_comes(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with ticker_process("--transport", "sse", "--url", service.http) as proc:
        assert (await read_line(proc.stderr)).startswith("seatcast-ticker: live")
        assert (await read_line(proc.stdout)).startswith("0 of 650 declared")
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:3])
        await caught_up(service, ids[-1])
        recent = (await service.get("/api/declarations")).json()["data"]["recent"]
        lines = [await read_line(proc.stdout) for _ in range(5)]
        headlines = [line.split(" ", 1)[1] for line in lines if " declared, " not in line]
        assert headlines == [entry["headline"] for entry in recent]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) in (0, 130)


async def test_on_a_terminal_it_draws_the_live_board(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:30])
    await caught_up(service, ids[-1])
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.ticker",
        "--url",
        service.ws,
        cwd=ROOT,
        env=ticker_env(TERM="xterm-256color"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    screen = bytearray()

    def read_to_the_end() -> None:
        # Read all along: the board redraws four times a second, and a terminal nobody
        # reads fills up and blocks it, its exit included.
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
            while chunk := os.read(controller, 65536):
                screen.extend(chunk)

    reading = asyncio.ensure_future(asyncio.to_thread(read_to_the_end))
    try:
        async with asyncio.timeout(TIMEOUT):
            while b"Latest declarations" not in screen or "● live".encode() not in screen:
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reading, TIMEOUT)
        os.close(controller)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text, "no terminal control codes: the live board was not drawn"
    assert "326 seats for a majority" in text
    assert "seats short of a majority" in text
    assert "Traceback" not in text


async def test_a_wrong_constituency_exits_2_and_suggests_close_names(
    service: RunningService,
) -> None:
    run = await run_ticker("--url", service.ws, "--constituency", "Peterboro")
    assert run.code == 2
    assert "no constituency 'Peterboro'" in run.stderr
    assert "Peterborough" in run.stderr
    assert run.stdout == ""
    run = await run_ticker("--url", service.ws, "--region", "Atlantis")
    assert run.code == 2
    assert "no region or nation 'Atlantis'" in run.stderr


async def test_a_service_that_is_not_there() -> None:
    # Nothing listens on port 1.
    run = await run_ticker("--url", "ws://127.0.0.1:1/ws", "--once")
    assert run.code == 1
    assert "cannot connect" in run.stderr
    assert "Traceback" not in run.stderr
    run = await run_ticker("--url", "ws://127.0.0.1:1/ws", "--constituency", "Peterborough")
    assert run.code == 1
    assert "cannot read http://127.0.0.1:1/api/constituencies" in run.stderr


async def test_help_and_bad_options() -> None:
    run = await run_ticker("--help")
    assert run.code == 0
    for option in (
        "--url",
        "SEATCAST_URL",
        "--constituency",
        "--region",
        "--json",
        "--once",
        "--transport",
    ):
        assert option in run.stdout
    run = await run_ticker("--url", "http://127.0.0.1:8000/ws")
    assert run.code == 2
    assert "ws://" in run.stderr
    run = await run_ticker("--constituency", "A", "--region", "B")
    assert run.code == 2
    run = await run_ticker("--transport", "sse", "--url", "ftp://127.0.0.1:8000/")
    assert run.code == 2
    assert "http://" in run.stderr
    run = await run_ticker("--transport", "pigeon")
    assert run.code == 2


# --- the feed's totals as a check ------------------------------------------------------------

DISAGREEING_CHECK = {
    "source": "PA",
    "results": 649,
    "agrees": False,
    "differences": {"LAB": {"seats": [410, 411]}, "CON": {"gains": [1, 0], "losses": [3, 2]}},
}


@pytest.mark.parametrize(
    ("check", "words"),
    [
        (
            {"source": "PA", "results": 1, "agrees": True, "differences": {}},
            "| PA's totals over 1 result agree",
        ),
        (
            DISAGREEING_CHECK,
            "| PA's totals over 649 results differ: Labour seats 410 (ours 411); "
            "Conservative gains 1 (ours 0); Conservative losses 3 (ours 2)",
        ),
    ],
)
def test_the_national_line_ends_with_the_feeds_check(check: dict[str, Any], words: str) -> None:
    assert national_line(national(majority_party="LAB", feed_check=check)).endswith(words)


def test_the_board_shows_a_disagreeing_feed_under_the_banner() -> None:
    board = Board(focus=None)
    board.apply(update("national", "snapshot", "5-0", national(feed_check=DISAGREEING_CHECK)))
    console = Console(record=True, width=160, height=30, color_system=None)

    console.print(board.render(console))

    assert "PA's totals over 649 results differ: Labour seats 410 (ours 411)" in (
        console.export_text()
    )


async def test_once_prints_a_state_of_parties_that_disagrees(
    service: RunningService, redis: aioredis.Redis
) -> None:
    declaration = next(line for line in NIGHT_2024 if PETERBOROUGH in line)
    wrong = {
        "type": "state_of_parties",
        "source": "PA",
        "constituencies": [PETERBOROUGH],
        "parties": {"CON": {"seats": 1, "gains": 0, "losses": 0}},
    }
    ids = await xadd(redis, service.settings.stream, declaration, wrong)
    await caught_up(service, ids[-1])

    run = await run_ticker("--url", service.ws, "--once")

    assert run.code == 0, run.stderr
    assert run.stdout.splitlines()[0].endswith(
        "| PA's totals over 1 result differ: Labour seats 0 (ours 1); Labour gains 0 (ours 1); "
        "Conservative seats 1 (ours 0); Conservative losses 0 (ours 1)"
    )
