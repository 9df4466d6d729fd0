"""/graphics/: the flat outputs (JSON, CasparCG XML, CSV) against the REST state, and the
caching headers of every GET /api/... and /graphics/... answer."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd
from tests.service.test_access import SECRET, token

PETERBOROUGH = "E14001425"
PARTY_FIELDS = ("seats", "gains", "losses", "net", "votes", "share", "seats_to_majority")
HOSTILE_NAME = 'Jo "Rock" O\'Neil, <b>MP</b> & co;\nline two =1+1'


async def applied(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


async def replay(service: RunningService, redis: aioredis.Redis, count: int) -> list[str]:
    ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:count])
    await applied(service, ids[-1])
    return ids


def party_name(election: dict[str, Any], code: str) -> str:
    return election["parties"][code]["name"] if code else ""


def colour(election: dict[str, Any], code: str) -> str:
    return election["parties"].get(code, {}).get("colour", "") if code else ""


def expected_national(rest: dict[str, Any], election: dict[str, Any]) -> dict[str, Any]:
    """Every key of /graphics/national, from /api/national and /api/election."""
    state = rest["data"]
    parties = state["parties"]
    poll = state.get("exit_poll", {})
    leading = state.get("majority_party", "")
    expected: dict[str, Any] = {
        "seq": rest["seq"],
        "election": state["election"],
        "election_name": election["name"],
        "total_seats": state["total_seats"],
        "majority": state["majority"],
        "working_majority": state.get("working_majority", ""),
        "declared": state["declared"],
        "seats_to_declare": state["seats_to_declare"],
        "leader": state.get("leader", ""),
        "leader_name": party_name(election, state.get("leader", "")),
        "seats_to_majority": state.get("seats_to_majority", ""),
        "majority_party": leading,
        "majority_party_name": party_name(election, leading),
        "overall_majority": parties[leading]["overall_majority"] if leading else "",
        "exit_poll_published_at": poll.get("published_at", ""),
    }
    for code, entry in parties.items():
        expected[f"{code}_name"] = entry["name"]
        expected[f"{code}_colour"] = colour(election, code)
        for field in PARTY_FIELDS:
            expected[f"{code}_{field}"] = entry[field]
        expected[f"{code}_seats_to_working_majority"] = entry.get("seats_to_working_majority", "")
        expected[f"{code}_exit_poll"] = poll.get("seats", {}).get(code, "")
    ranked = sorted(parties, key=lambda c: (-parties[c]["seats"], -parties[c]["votes"], c))
    for rank, code in enumerate(ranked, start=1):
        entry = parties[code]
        expected |= {
            f"party{rank}_code": code,
            f"party{rank}_name": entry["name"],
            f"party{rank}_colour": colour(election, code),
            f"party{rank}_seats": entry["seats"],
            f"party{rank}_net": entry["net"],
            f"party{rank}_votes": entry["votes"],
            f"party{rank}_share": entry["share"],
        }
    return expected


def expected_seat(state: dict[str, Any], election: dict[str, Any], slots: int) -> dict[str, Any]:
    """The seat keys of /graphics/constituency and /graphics/latest, from a REST seat state."""
    winner = state.get("winner", {})
    expected: dict[str, Any] = {
        "id": state.get("id", ""),
        "name": state.get("name", ""),
        "region": state.get("region", ""),
        "nation": state.get("nation", ""),
        "electorate": state.get("electorate", ""),
        "status": state.get("status", ""),
        "previous": state.get("previous", ""),
        "previous_name": party_name(election, state.get("previous", "")),
        "winner_name": winner.get("name", ""),
        "winner_party": winner.get("party", ""),
        "winner_party_name": party_name(election, winner.get("party", "")),
        "winner_colour": colour(election, winner.get("party", "")),
        "result": state.get("result", ""),
        "gain_from": state.get("gain_from", ""),
        "gain_from_name": party_name(election, state.get("gain_from", "")),
        "majority": state.get("majority", ""),
        "turnout": state.get("turnout", ""),
        "valid_votes": state.get("valid_votes", ""),
        "declared_at": state.get("declared_at", ""),
        "corrections": state.get("corrections", ""),
        "candidates": len(state["candidates"]) if "candidates" in state else "",
    }
    candidates = state.get("candidates", [])
    for number in range(1, max(slots, len(candidates)) + 1):
        c = candidates[number - 1] if number <= len(candidates) else {}
        expected |= {
            f"cand{number}_name": c.get("name", ""),
            f"cand{number}_party": c.get("party", ""),
            f"cand{number}_party_name": party_name(election, c.get("party", "")),
            f"cand{number}_colour": colour(election, c.get("party", "")),
            f"cand{number}_votes": c.get("votes", ""),
            f"cand{number}_share": c.get("share", ""),
        }
    return expected


def as_text(flat: dict[str, Any]) -> dict[str, str]:
    return {key: value if isinstance(value, str) else str(value) for key, value in flat.items()}


def from_xml(body: bytes) -> dict[str, str]:
    """CasparCG template data read back: componentData id -> its text data's value."""
    root = ET.fromstring(body)
    assert root.tag == "templateData"
    values: dict[str, str] = {}
    for component in root:
        assert component.tag == "componentData"
        [data] = list(component)
        assert (data.tag, data.get("id")) == ("data", "text")
        values[component.attrib["id"]] = data.attrib["value"]
    return values


def from_csv(body: str) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[0] == ["key", "value"]
    assert all(len(row) == 2 for row in rows)
    return {key: value for key, value in rows[1:]}


async def all_formats(service: RunningService, path: str) -> dict[str, Any]:
    """The JSON document, after checking that the XML and CSV say the same, in order."""
    as_json = await service.get(f"{path}.json")
    as_xml = await service.get(f"{path}.xml")
    as_csv = await service.get(f"{path}.csv")
    assert [r.status_code for r in (as_json, as_xml, as_csv)] == [200, 200, 200]
    assert as_json.headers["content-type"] == "application/json"
    assert as_xml.headers["content-type"].startswith("application/xml")
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    document: dict[str, Any] = as_json.json()
    text = as_text(document)
    assert list(from_xml(as_xml.content).items()) == list(text.items())
    assert list(from_csv(as_csv.text).items()) == list(text.items())
    return document


async def test_national_gives_every_key_of_the_rest_state_in_each_format(
    service: RunningService, redis: aioredis.Redis
) -> None:
    election = (await service.get("/api/election")).json()["data"]
    empty = await all_formats(service, "/graphics/national")
    assert empty == expected_national((await service.get("/api/national")).json(), election)
    assert (empty["leader"], empty["working_majority"], empty["LAB_seats"]) == ("", 324, 0)

    await replay(service, redis, 200)

    flat = await all_formats(service, "/graphics/national")
    rest = (await service.get("/api/national")).json()
    assert flat == expected_national(rest, election)
    assert list(flat) == list(empty)  # the same keys in the same order, whatever happened
    assert flat["LAB_seats"] == rest["data"]["parties"]["LAB"]["seats"] > 0
    assert flat["party1_code"] == flat["leader"] == "LAB"
    assert flat["LAB_exit_poll"] == 410
    assert flat["LAB_colour"] == "#E4003B"


async def test_a_constituency_gives_every_key_and_ten_candidate_slots_at_least(
    service: RunningService, redis: aioredis.Redis
) -> None:
    election = (await service.get("/api/election")).json()["data"]
    path = f"/graphics/constituency/{PETERBOROUGH}"
    awaiting = await all_formats(service, path)
    rest = (await service.get(f"/api/constituencies/{PETERBOROUGH}")).json()
    assert awaiting == {"seq": rest["seq"], **expected_seat(rest["data"], election, 10)}
    assert awaiting["winner_name"] == awaiting["cand10_name"] == ""

    await replay(service, redis, 651)

    flat = await all_formats(service, path)
    rest = (await service.get(f"/api/constituencies/{PETERBOROUGH}")).json()
    assert flat == {"seq": rest["seq"], **expected_seat(rest["data"], election, 10)}
    assert list(flat) == list(awaiting)
    assert (flat["winner_name"], flat["result"], flat["majority"]) == ("Andrew Pakes", "gain", 118)
    assert flat["cand1_votes"] == 13418
    three = (await service.get(f"{path}.json?candidates=3")).json()
    assert three == {"seq": rest["seq"], **expected_seat(rest["data"], election, 3)}


async def test_latest_is_the_newest_declarations_entry_and_empty_before_one(
    service: RunningService, redis: aioredis.Redis
) -> None:
    election = (await service.get("/api/election")).json()["data"]
    before = await all_formats(service, "/graphics/latest")
    assert before == {
        "seq": "0-0",
        "kind": "",
        "headline": "",
        "reason": "",
        **expected_seat({}, election, 10),
    }

    await replay(service, redis, 30)
    stream = service.settings.stream
    [retracted] = await xadd(redis, stream, {"type": "retraction", "constituency": PETERBOROUGH})
    await applied(service, retracted)
    flat = await all_formats(service, "/graphics/latest")
    rest = (await service.get("/api/declarations")).json()
    newest = rest["data"]["recent"][-1]
    assert flat["kind"] == "declaration"  # nothing was declared there yet: nothing withdrawn

    expected = {
        "seq": rest["seq"],
        "kind": newest["kind"],
        "headline": newest["headline"],
        "reason": newest.get("reason", ""),
        **expected_seat(newest["constituency"], election, 10),
    }
    assert flat == expected
    assert list(flat) == list(before)


async def test_hostile_text_survives_each_format_exactly(
    service: RunningService, redis: aioredis.Redis
) -> None:
    candidates = [
        {"name": HOSTILE_NAME, "party": "LAB", "votes": 200},
        {"name": "Bea\tBell", "party": "CON", "votes": 100},
    ]
    [entry] = await xadd(
        redis,
        service.settings.stream,
        {"type": "declaration", "constituency": PETERBOROUGH, "candidates": candidates},
    )
    await applied(service, entry)

    path = f"/graphics/constituency/{PETERBOROUGH}"
    flat = (await service.get(f"{path}.json")).json()
    rest = (await service.get(f"/api/constituencies/{PETERBOROUGH}")).json()["data"]
    by_xml = from_xml((await service.get(f"{path}.xml")).content)
    by_csv = from_csv((await service.get(f"{path}.csv")).text)

    shown = rest["candidates"][0]["name"]
    assert flat["cand1_name"] == by_csv["cand1_name"] == by_xml["cand1_name"] == shown
    assert "<b>" in by_xml["cand1_name"] and "\n" in by_csv["cand1_name"]
    # A tab, which an XML attribute would read back as a space unless escaped. (A name
    # with a control character such as a bell is refused on the stream: tests/core.)
    second = rest["candidates"][1]["name"]
    assert by_csv["cand2_name"] == flat["cand2_name"] == by_xml["cand2_name"] == second


@pytest.mark.parametrize(
    "path",
    [
        "/graphics/national.txt",
        "/graphics/constituency/E00000000.json",
        "/graphics/constituency/E14001425",
        "/graphics/latest.json?candidates=many",
        "/graphics/latest.json?candidates=51",
        "/graphics/nowhere.json",
    ],
)
async def test_a_bad_graphics_request_gets_a_clear_error_and_changes_nothing(
    service: RunningService, path: str
) -> None:
    before = (await service.get("/api/national")).json()

    response = await service.get(path)

    assert response.status_code in (400, 404)
    if path.startswith(("/graphics/national", "/graphics/constituency/E0", "/graphics/latest")):
        assert response.json()["error"] in ("not_found", "bad_request")
        assert response.json()["message"]
    assert (await service.get("/api/national")).json() == before
    assert (await service.get("/graphics/national.json")).status_code == 200


async def test_the_token_is_taken_from_the_url_and_limits_the_channels(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(token_secret=SECRET, require_token=True)
    async with run_service(settings) as service:
        assert (await service.get("/graphics/national.xml")).status_code == 401
        allowed = await service.get(f"/graphics/national.xml?token={token()}")
        assert allowed.status_code == 200
        regional = token(channels=["constituency:*"])
        assert (await service.get(f"/graphics/national.csv?token={regional}")).status_code == 403
        seat = await service.get(f"/graphics/constituency/{PETERBOROUGH}.csv?token={regional}")
        assert seat.status_code == 200
        assert (await service.get(f"/graphics/latest.json?token={regional}")).status_code == 403


async def test_an_embargoed_exit_poll_is_withheld_from_graphics_and_tagged_apart(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with run_service(make_settings(token_secret=SECRET)) as service:
        until = datetime.now(UTC) + timedelta(seconds=60)
        poll = {"type": "exit_poll", "seats": {"LAB": 410}, "embargo_until": until.isoformat()}
        [entry] = await xadd(redis, service.settings.stream, poll)
        await applied(service, entry)
        epoch = (await service.get("/readyz")).json()["epoch"]

        public = await service.get("/graphics/national.json")
        newsroom = await service.get(f"/graphics/national.json?token={token(embargo=True)}")

        assert public.json()["LAB_exit_poll"] == ""
        assert public.headers["etag"] == f'"{epoch}:{entry}:withheld"'
        assert newsroom.json()["LAB_exit_poll"] == 410
        assert newsroom.headers["etag"] == f'"{epoch}:{entry}"'
        rest = await service.get("/api/national")
        assert rest.headers["etag"] == public.headers["etag"]


CACHED_PATHS = [
    "/api/national",
    "/api/declarations",
    f"/api/constituencies/{PETERBOROUGH}",
    "/api/constituencies",
    "/api/regions/east-of-england",
    "/api/nations/england",
    "/api/regions",
    "/api/nations",
    "/api/election",
    "/graphics/national.json",
    "/graphics/national.xml",
    f"/graphics/constituency/{PETERBOROUGH}.csv",
    "/graphics/latest.xml",
]


def seq_of(response: httpx.Response, path: str) -> str:
    """The seq an answer says it holds, in whichever format it is."""
    if path.endswith(".xml"):
        return from_xml(response.content)["seq"]
    if path.endswith(".csv"):
        return from_csv(response.text)["seq"]
    seq: str = response.json()["seq"]
    return seq


async def test_every_answer_is_tagged_with_the_epoch_and_the_seq_it_holds(
    service: RunningService, redis: aioredis.Redis
) -> None:
    ids = await replay(service, redis, 40)
    epoch = (await service.get("/readyz")).json()["epoch"]
    assert epoch == ids[0]
    for path in CACHED_PATHS:
        response = await service.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"
        assert response.headers["etag"] == f'"{epoch}:{seq_of(response, path)}"', path


@pytest.mark.parametrize(
    "if_none_match",
    ["{tag}", "W/{tag}", '"other", {tag}', '"a:1-0" ,  W/{tag} , "b"', "*"],
)
async def test_if_none_match_with_the_current_tag_gets_304(
    service: RunningService, redis: aioredis.Redis, if_none_match: str
) -> None:
    await replay(service, redis, 5)
    async with httpx.AsyncClient(base_url=service.http, timeout=TIMEOUT) as client:
        for path in CACHED_PATHS:
            first = await client.get(path)
            tag = first.headers["etag"]
            again = await client.get(path, headers={"If-None-Match": if_none_match.format(tag=tag)})
            assert again.status_code == 304, path
            assert again.content == b""
            assert again.headers["etag"] == tag
            assert again.headers["cache-control"] == first.headers["cache-control"]


async def test_a_change_makes_the_old_tag_stale_and_the_new_answer_carries_the_new_tag(
    service: RunningService, redis: aioredis.Redis
) -> None:
    await replay(service, redis, 5)
    async with httpx.AsyncClient(base_url=service.http, timeout=TIMEOUT) as client:
        old = await client.get("/graphics/national.json")
        unchanged = await client.get(
            f"/graphics/constituency/{PETERBOROUGH}.json"
        )  # not declared in the first five
        [entry] = await xadd(redis, service.settings.stream, NIGHT_2024[5])
        await applied(service, entry)

        fresh = await client.get(
            "/graphics/national.json", headers={"If-None-Match": old.headers["etag"]}
        )
        assert fresh.status_code == 200
        assert fresh.headers["etag"].endswith(f':{entry}"')
        assert fresh.json()["declared"] == old.json()["declared"] + 1
        still = await client.get(
            f"/graphics/constituency/{PETERBOROUGH}.json",
            headers={"If-None-Match": unchanged.headers["etag"]},
        )
        assert still.status_code == 304
        weak_old = await client.get(
            "/api/national", headers={"If-None-Match": f"W/{old.headers['etag']}"}
        )
        assert weak_old.status_code == 200


async def test_cache_control_is_configurable_and_private_for_a_bearer_credential(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(token_secret=SECRET, cache_control="public, max-age=3")
    async with run_service(settings) as service:
        plain = await service.get("/graphics/latest.json")
        assert plain.headers["cache-control"] == "public, max-age=3"
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            bearer = await client.get(
                service.http + "/api/national", headers={"Authorization": f"Bearer {token()}"}
            )
        assert bearer.headers["cache-control"] == "private, max-age=3"
        assert bearer.headers["vary"] == "Authorization"
        assert "x-accel-expires" not in bearer.headers  # a shared cache must not keep it


async def test_a_public_answer_names_the_last_second_nginx_may_keep_it(
    make_settings: Callable[..., Settings],
) -> None:
    for cache_control, lifetime in (
        ("public, max-age=1, stale-while-revalidate=5", 1),
        ("public, max-age=3", 3),
        ("public, max-age=10, s-maxage=2", 2),
        ("no-store", None),
        ("public, max-age=0", None),
    ):
        async with run_service(make_settings(cache_control=cache_control)) as service:
            before = int(time.time())
            answer = await service.get("/api/national")
            after = int(time.time())
        expires = answer.headers.get("x-accel-expires")
        if lifetime is None:
            assert expires is None, cache_control
        else:
            # nginx keeps an answer fresh through the second its expiry names: the one
            # before the max-age's last, so it lives max-age seconds at most, not one more.
            assert expires is not None and expires.startswith("@"), cache_control
            assert before + lifetime - 1 <= int(expires[1:]) <= after + lifetime - 1


async def test_errors_are_not_tagged(service: RunningService) -> None:
    response = await service.get("/api/constituencies/E00000000")

    assert response.status_code == 404
    assert "etag" not in response.headers
    assert orjson.loads(response.content)["error"] == "not_found"


async def test_the_templates_are_served_with_an_index(service: RunningService) -> None:
    index = await service.get("/graphics/templates/")
    third = await service.get("/graphics/templates/lower-third.html")
    script = await service.get("/graphics/templates/template.js")

    assert index.status_code == third.status_code == script.status_code == 200
    assert "lower-third.html" in index.text and "seat-bar.html" in index.text
    assert third.headers["content-type"].startswith("text/html")
    assert "javascript" in script.headers["content-type"]
