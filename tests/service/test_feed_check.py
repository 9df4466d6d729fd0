"""The feed's totals as a check, in the running service: sent, logged, counted in /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.replies import entries
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd

PETERBOROUGH = "E14001425"
PETERBOROUGH_DECLARATION = next(line for line in NIGHT_2024 if PETERBOROUGH in line)


def state_of_parties(**parties: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "type": "state_of_parties",
        "source": "PA",
        "constituencies": [PETERBOROUGH],
        "parties": {
            code: dict(zip(("seats", "gains", "losses"), figures, strict=True))
            for code, figures in parties.items()
        },
    }


# Peterborough, 2024: a Labour gain from the Conservatives.
AGREEING = state_of_parties(LAB=(1, 1, 0), CON=(0, 0, 1))
DISAGREEING = state_of_parties(LAB=(1, 0, 0), CON=(0, 0, 0))


async def metric(service: RunningService, name: str) -> str:
    for line in (await service.get("/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return line.split(" ", 1)[1]
    raise AssertionError(f"no {name} in /metrics")


async def caught_up(service: RunningService, seq: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != seq:
            await asyncio.sleep(0.02)


async def test_a_disagreeing_feed_is_sent_logged_and_counted_and_an_agreeing_one_clears_it(
    service: RunningService, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="seatcast")
    assert await metric(service, "seatcast_feed_check_agrees") == "NaN"
    async with connect(service) as client:
        await client.subscribe("national")
        await client.receive_until(lambda m: m["type"] == "snapshot")

        await xadd(redis, service.settings.stream, PETERBOROUGH_DECLARATION, DISAGREEING)

        delta = await client.receive_until(lambda m: "feed_check" in m.get("patch", {}))
        assert delta["patch"]["feed_check"] == {
            "source": "PA",
            "results": 1,
            "agrees": False,
            "differences": {"LAB": {"gains": [0, 1]}, "CON": {"losses": [0, 1]}},
        }
        assert await metric(service, "seatcast_feed_check_disagreements_total") == "1.0"
        assert await metric(service, "seatcast_feed_check_agrees") == "0.0"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "PA's totals over 1 result disagree with ours: LAB gains 0 (ours 1); "
            "CON losses 0 (ours 1)" in message
            for message in warnings
        ), warnings

        await xadd(redis, service.settings.stream, AGREEING)

        delta = await client.receive_until(lambda m: "feed_check" in m.get("patch", {}))
        assert delta["patch"]["feed_check"] == {
            "agrees": True,
            "differences": {"LAB": None, "CON": None},
        }
        assert await metric(service, "seatcast_feed_check_agrees") == "1.0"
        assert await metric(service, "seatcast_feed_check_disagreements_total") == "1.0"
        national = (await service.get("/api/national")).json()["data"]
        assert national["feed_check"] == {
            "source": "PA",
            "results": 1,
            "agrees": True,
            "differences": {},
        }


async def test_a_malformed_state_of_parties_is_rejected_and_changes_nothing(
    service: RunningService, redis: aioredis.Redis
) -> None:
    bad = state_of_parties(LAB=(1, 1, 0)) | {"constituencies": [PETERBOROUGH, "E99999999"]}
    ids = await xadd(redis, service.settings.stream, PETERBOROUGH_DECLARATION, bad)
    await caught_up(service, ids[-1])

    rejected = entries(await redis.xrange(f"{service.settings.stream}:rejected"))
    assert [entry[1][b"id"].decode() for entry in rejected] == [ids[1]]
    reason = rejected[0][1][b"reason"].decode()
    assert reason == f"entry {ids[1]}: constituencies: unknown constituency 'E99999999'"
    assert "feed_check" not in (await service.get("/api/national")).json()["data"]
    assert await metric(service, "seatcast_feed_check_agrees") == "NaN"


async def test_a_restarted_instance_rebuilds_the_check_from_the_stream(
    make_settings: Callable[..., Settings], redis: aioredis.Redis, stream_key: str
) -> None:
    await xadd(redis, stream_key, PETERBOROUGH_DECLARATION, DISAGREEING, PETERBOROUGH_DECLARATION)

    async with run_service(make_settings()) as service:
        national = (await service.get("/api/national")).json()["data"]
        assert national["feed_check"]["agrees"] is False
        assert await metric(service, "seatcast_feed_check_disagreements_total") == "1.0"
        assert await metric(service, "seatcast_feed_check_agrees") == "0.0"
