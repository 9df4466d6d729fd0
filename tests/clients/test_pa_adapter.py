"""The PA adapter as a real process: PA files -> adapter -> real Redis -> the real service."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from clients.pa.writer import PaWriter, seat_numbers
from service import data
from tests.clients.commands import run_module
from tests.clients.pa_support import (
    AT,
    PETERBOROUGH,
    bundled,
    declaration,
    pa_env,
    pa_stream,
    result_file,
    run_pa,
    service_settings,
    summary,
    write_night,
)
from tests.conftest import TIMEOUT
from tests.replies import entries
from tests.service.conftest import run_service

__all__ = ["pa_stream"]  # the fixture, used by name

SUNDERLAND_CENTRAL = "E14001531"


def comparable(seats: dict[str, Any]) -> dict[str, Any]:
    """Constituency states less what says how the result arrived (a flash first, revisions)."""
    return {
        seat: {k: v for k, v in state.items() if k != "revision"} for seat, state in seats.items()
    }


async def test_the_whole_night_as_pa_files_gives_exactly_what_the_json_replay_gives(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str
) -> None:
    drop = tmp_path / "drop"
    await write_night(drop, "--flashes", "--recounts")
    files = sorted(p.name for p in drop.iterdir())
    assert sum("_result_" in f for f in files) == 650 == sum("_rush_" in f for f in files)
    assert sum("_stateofparties_" in f for f in files) == 14
    json_stream = f"{pa_stream}:json"
    feeder_env = pa_env(redis_url, json_stream)
    replay = await run_module("clients.feeder", "--speed", "0", env=feeder_env, seconds=4 * TIMEOUT)
    assert replay.code == 0, replay.stderr

    try:
        run = await run_pa("--dir", str(drop), "--once", env=pa_env(redis_url, pa_stream))

        assert run.code == 0, run.stderr
        assert summary(run.stderr).__dict__ == {
            "read": len(files),
            "written": len(files),
            "quarantined": 0,
            "skipped": 0,
        }
        assert "party 'Oth' is not in uk-2024: counted as OTH" in run.stderr
        async with (
            run_service(service_settings(redis_url, pa_stream)) as from_pa,
            run_service(service_settings(redis_url, json_stream)) as from_json,
        ):
            national = (await from_pa.get("/api/national")).json()["data"]
            expected = (await from_json.get("/api/national")).json()["data"]
            seats = {"LAB": 411, "CON": 121, "LD": 72, "SNP": 9, "SF": 7}
            assert {p: national["parties"][p]["seats"] for p in seats} == seats
            assert national["parties"] == expected["parties"]
            assert national["declared"] == 650
            assert national["feed_check"] == {
                "source": "PA",
                "results": 650,
                "agrees": True,
                "differences": {},
            }
            peterborough = (await from_pa.get(f"/api/constituencies/{PETERBOROUGH}")).json()
            assert peterborough["data"]["result"] == "gain"
            assert peterborough["data"]["winner"]["party"] == "LAB"
            assert peterborough["data"]["majority"] == 118
            ours = (await from_pa.get("/api/constituencies")).json()["data"]
            theirs = (await from_json.get("/api/constituencies")).json()["data"]
            assert comparable(ours) == comparable(theirs)
        assert await redis.xlen(f"{pa_stream}:rejected") == 0
        length = await redis.xlen(pa_stream)

        again = await run_pa("--dir", str(drop), "--once", env=pa_env(redis_url, pa_stream))

        assert again.code == 0, again.stderr
        assert summary(again.stderr).__dict__ == {
            "read": len(files),
            "written": 0,
            "quarantined": 0,
            "skipped": len(files),
        }
        assert await redis.xlen(pa_stream) == length
    finally:
        await redis.delete(json_stream, f"{json_stream}:rejected")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<Recount><Election><Constituency number="1" name="&d;"/></Election></Recount>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<Recount><Election><Constituency number="1" name="&secret;"/></Election></Recount>
"""


async def test_every_kind_of_bad_file_is_quarantined_with_its_reason_and_the_service_carries_on(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str
) -> None:
    # A definition that names no other party: a party it does not list cannot be placed.
    document = orjson.loads(data.election_path("uk-2024").read_bytes())
    del document["other_party"]
    definition = tmp_path / "no-other.election.json"
    definition.write_bytes(orjson.dumps(document))
    election = bundled()
    good_name, good = result_file(election, SUNDERLAND_CENTRAL)  # no small parties
    _, other = result_file(election, "E14001327")  # Leicester South
    drop = tmp_path / "drop"
    drop.mkdir()
    bad = {
        "truncated.xml": (good[: len(good) // 2], "malformed XML"),
        "unknown-seat.xml": (
            re.sub(rb'(<Constituency [^>]*?)name="[^"]*"', rb'\1name="Atlantis"', good),
            "no constituency of uk-2024 by that name",
        ),
        "unknown-party.xml": (
            other.replace(b'abbreviation="Green"', b'abbreviation="WPB"'),
            "party 'WPB' is not in uk-2024 and it names no other_party",
        ),
        "unknown-root.xml": (
            good.replace(b"FirstPastThePostResult", b"EuroParliamentResult"),
            "unknown root element <EuroParliamentResult>",
        ),
        "billion-laughs.xml": (BILLION_LAUGHS, "hostile XML refused: EntitiesForbidden"),
        "external-entity.xml": (EXTERNAL_ENTITY, "hostile XML refused: EntitiesForbidden"),
        "candidate-twice.xml": (  # what the stream reader would reject is not written
            re.sub(
                rb"(<Candidate (?:(?!<Candidate).)*?</Candidate>\s*)(</Constituency>)",
                rb"\1\1\2",
                good,
                flags=re.S,
            ),
            "candidate 6 (Rachel Featherstone, GRN) is listed twice",
        ),
    }
    for name, (content, _) in bad.items():
        (drop / name).write_bytes(content)
    (drop / good_name).write_bytes(good)
    settings = service_settings(redis_url, pa_stream, election=definition)
    env = pa_env(redis_url, pa_stream, SEATCAST_ELECTION=str(definition))

    async with run_service(settings) as service:
        run = await run_pa("--dir", str(drop), "--once", env=env)

        assert run.code == 0, run.stderr
        assert summary(run.stderr).__dict__ == {
            "read": 8,
            "written": 1,
            "quarantined": 7,
            "skipped": 0,
        }
        quarantine = drop / "quarantine"
        for name, (content, words) in bad.items():
            assert (quarantine / name).read_bytes() == content
            reason = (quarantine / f"{name}.reason").read_text()
            assert words in reason and reason.count("\n") == 1, reason
            assert f"quarantined {name}: " in run.stderr
        assert sorted(p.name for p in drop.iterdir()) == sorted([good_name, "quarantine"])
        assert (await service.get("/readyz")).status_code == 200
        async with asyncio.timeout(TIMEOUT):
            while (await service.get("/api/national")).json()["data"]["declared"] != 1:
                await asyncio.sleep(0.02)
        seat = (await service.get(f"/api/constituencies/{SUNDERLAND_CENTRAL}")).json()["data"]
        assert seat["majority"] == 6073
    assert await redis.xlen(pa_stream) == 1
    assert await redis.xlen(f"{pa_stream}:rejected") == 0


async def test_a_state_of_parties_file_that_agrees_says_so_and_a_wrong_figure_is_named(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str
) -> None:
    election = bundled()
    writer = PaWriter(election)
    declared = {PETERBOROUGH: declaration(PETERBOROUGH)}
    drop = tmp_path / "drop"
    drop.mkdir()
    name, content = result_file(election, PETERBOROUGH)
    (drop / name).write_bytes(content)
    agreeing = writer.state_of_parties(declared, AT)
    (drop / "sop_1.xml").write_bytes(agreeing)
    env = pa_env(redis_url, pa_stream)

    async with run_service(service_settings(redis_url, pa_stream)) as service:
        assert (await run_pa("--dir", str(drop), "--once", env=env)).code == 0
        check = await _feed_check(service, lambda c: c.get("results") == 1)
        assert check == {"source": "PA", "results": 1, "agrees": True, "differences": {}}

        (drop / "sop_1_wrong.xml").write_bytes(agreeing.replace(b'gains="1"', b'gains="0"', 1))
        assert (await run_pa("--dir", str(drop), "--once", env=env)).code == 0

        check = await _feed_check(service, lambda c: not c["agrees"])
        assert check["differences"] == {"LAB": {"gains": [0, 1]}}


async def _feed_check(service: Any, done: Any) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            national = (await service.get("/api/national")).json()["data"]
            if "feed_check" in national and done(national["feed_check"]):
                check: dict[str, Any] = national["feed_check"]
                return check
            await asyncio.sleep(0.02)


async def test_a_map_file_places_seats_by_pa_number_whatever_the_name(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str
) -> None:
    election = bundled()
    number = seat_numbers(election)[PETERBOROUGH]
    name, content = result_file(election, PETERBOROUGH)
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / name).write_bytes(content.replace(b'name="Peterborough"', b'name="Peterboro"'))
    seat_map = tmp_path / "seats.csv"
    seat_map.write_text(f"number,id\n{number},{PETERBOROUGH}\n")

    run = await run_pa(
        "--dir", str(drop), "--once", "--map", str(seat_map), env=pa_env(redis_url, pa_stream)
    )

    assert run.code == 0, run.stderr
    assert summary(run.stderr).written == 1
    [(_, fields)] = entries(await redis.xrange(pa_stream))
    assert orjson.loads(fields[b"event"])["constituency"] == PETERBOROUGH


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "give --dir DIR"),
        (("--dir", "/nonexistent/pa"), "--dir /nonexistent/pa is not a folder"),
        (("--dir", ".", "--map", "/nonexistent.csv"), "/nonexistent.csv: cannot read"),
        (("--ftp", "http://example.invalid/"), "expected ftp://"),
    ],
)
async def test_bad_usage_exits_2_with_a_one_line_reason(
    redis_url: str, pa_stream: str, args: tuple[str, ...], words: str
) -> None:
    run = await run_pa(*args, env=pa_env(redis_url, pa_stream))

    assert run.code == 2
    assert words in run.stderr


async def test_within_a_seat_the_rush_goes_first_and_results_in_revision_order(
    tmp_path: Path, redis: aioredis.Redis, redis_url: str, pa_stream: str
) -> None:
    election = bundled()
    writer = PaWriter(election)
    result = declaration(PETERBOROUGH)
    drop = tmp_path / "drop"
    drop.mkdir()
    # Landed in the worst order: the correction, then the first result, then the rush.
    files = [
        ("uk2024_result_peterborough_2.xml", writer.result(result, 2, AT)),
        ("uk2024_result_peterborough_1.xml", writer.result(result, 1, AT)),
        (
            "uk2024_rush_peterborough.xml",
            writer.rush(
                {"constituency": PETERBOROUGH, "winner": {"name": "Andrew Pakes", "party": "LAB"}},
                result,
                AT,
            ),
        ),
    ]
    for landed, (name, content) in enumerate(files):
        (drop / name).write_bytes(content)
        os.utime(drop / name, ns=(landed * 10**9, landed * 10**9))

    run = await run_pa("--dir", str(drop), "--once", env=pa_env(redis_url, pa_stream))

    assert run.code == 0, run.stderr
    events = [
        orjson.loads(fields[b"event"]) for _, fields in entries(await redis.xrange(pa_stream))
    ]
    assert [(e["type"], e.get("revision")) for e in events] == [
        ("flash", None),
        ("declaration", 1),
        ("declaration", 2),
    ]
