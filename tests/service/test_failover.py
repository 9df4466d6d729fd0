"""Redis failover as production runs it: a primary, a replica and a Sentinel, real processes.

The service and the feeder take a Sentinel URL and follow a failover without a restart. A
failover can lose the old primary's last entries; an instance that applied them notices that
its last applied entry is gone, rebuilds, and ends equal to a fresh instance.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import json_merge_patch
import orjson
import pytest

from service.settings import Settings
from tests.clients.commands import ROOT
from tests.conftest import TIMEOUT
from tests.replies import entries
from tests.service.conftest import NIGHT_2024, Client, RunningService, connect, run_service, xadd
from tests.service.redis_processes import RedisProcess, running, sentinelled

pytestmark = pytest.mark.slow

PATHS = ("/api/national", "/api/declarations", "/api/regions/london", "/api/constituencies")


async def applied(service: RunningService, seq: str) -> None:
    """Until the instance is ready at ``seq``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            ready = await service.get("/readyz")
            if ready.status_code == 200 and ready.json()["seq"] == seq:
                return
            await asyncio.sleep(0.02)


async def states(service: RunningService) -> list[Any]:
    return [(await service.get(path)).json() for path in PATHS]


class Follower:
    """A client of ``national`` and ``declarations`` that checks every chain as it goes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.national: dict[str, Any] = {}
        self.seqs: dict[str, str] = {}
        self.hellos = 0
        self.declarations = 0

    async def take(self) -> dict[str, Any]:
        message = await self.client.receive()
        kind, channel = message["type"], message.get("channel")
        if kind == "hello":
            self.hellos += 1
        elif kind == "snapshot":
            assert channel is not None
            self.seqs[channel] = message["seq"]
            if channel == "national":
                self.national = message["data"]
        elif kind in ("delta", "event"):
            assert channel is not None
            assert message["prev"] == self.seqs[channel], f"a gap on {channel}"
            self.seqs[channel] = message["seq"]
            if kind == "delta":
                self.national = json_merge_patch.merge(self.national, message["patch"])
            else:
                self.declarations += 1
        return message

    async def until(self, done: Callable[[dict[str, Any]], bool]) -> None:
        while not done(await self.take()):
            pass


async def feeder(url: str, stream: str, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "clients.feeder", "--redis-url", url, "--stream", stream),
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 4 * TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_the_service_and_the_feeder_follow_a_sentinel_failover_in_mid_night(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with sentinelled(tmp_path) as group:
        settings = make_settings(redis_url=group.url)
        async with run_service(settings) as service, connect(service) as client:
            follower = Follower(client)
            await follower.take()
            await client.subscribe("national", "declarations")
            await follower.take()
            await follower.take()
            night = asyncio.create_task(
                feeder(
                    group.url,
                    settings.stream,
                    "--speed",
                    "240",
                    "--max-gap",
                    "0.05",
                    "--limit",
                    "200",
                )
            )
            await follower.until(lambda m: follower.declarations >= 20)
            sentinel = group.sentinel.client()
            await sentinel.execute_command("SENTINEL", "FAILOVER", group.service)
            await sentinel.aclose()
            await group.wait_for_primary(group.replica)
            code, err = await night
            assert code == 0, err
            new_primary = group.replica.client()
            [(last, _)] = entries(await new_primary.xrevrange(settings.stream, count=1))
            await new_primary.aclose()
            await applied(service, last.decode())
            rest = (await service.get("/api/national")).json()
            async with asyncio.timeout(TIMEOUT):
                while follower.national != rest["data"]:
                    await follower.take()
            before = await states(service)
        async with run_service(settings) as fresh:
            assert await states(fresh) == before
    # The feeder followed the failover: its last write is the new primary's last entry.
    assert f"last {last.decode()})" in err
    # Writes that reached the old primary after the promotion, before Sentinel named the new
    # one, are lost with it (as Redis warns): the service ends with what survived.
    assert 0 < before[0]["data"]["declared"] <= 200


async def test_an_instance_whose_last_entries_a_failover_lost_rebuilds_and_equals_a_fresh_one(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with sentinelled(tmp_path) as group:
        settings = make_settings(redis_url=group.url)
        primary = group.primary.client()
        replica = group.replica.client()
        try:
            async with run_service(settings) as service, connect(service) as client:
                follower = Follower(client)
                await follower.take()
                await client.subscribe("national", "declarations")
                await follower.take()
                await follower.take()
                embargoed = {
                    "type": "exit_poll",
                    "seats": {"LAB": 410},
                    "embargo_until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                }
                # (after the night's own exit poll, which has none)
                kept = await xadd(primary, settings.stream, *NIGHT_2024[:40], embargoed)
                assert await primary.wait(1, int(TIMEOUT * 1000)) == 1
                await applied(service, kept[-1])

                # The replica stops replicating; the primary takes ten more entries, the
                # instance applies them and its clients see them; then the primary dies.
                await replica.execute_command("REPLICAOF", "NO", "ONE")
                lost = await xadd(primary, settings.stream, *NIGHT_2024[40:50])
                await applied(service, lost[-1])
                await follower.until(lambda m: m.get("seq") == lost[-1])
                await group.primary.stop(kill=True)
                await group.wait_for_primary(group.replica)

                # The instance notices, rebuilds, and its clients start again from snapshots.
                await applied(service, kept[-1])
                await follower.until(lambda m: m["type"] == "hello")
                await follower.until(lambda m: m["type"] == "snapshot")
                await follower.until(lambda m: m["type"] == "snapshot")
                assert follower.seqs["national"] == kept[-1]
                assert "exit_poll" not in follower.national  # the embargo holds through it
                assert "rebuilding" in caplog.text
                follower.declarations = 0

                # The night goes on, on the new primary.
                after = await xadd(replica, settings.stream, *NIGHT_2024[50:80])
                await applied(service, after[-1])
                rest = (await service.get("/api/national")).json()
                async with asyncio.timeout(TIMEOUT):
                    while follower.national != rest["data"] or follower.declarations < 30:
                        await follower.take()
                assert follower.declarations == 30
                before = await states(service)
                # A client that left holding a lost entry's seq cannot resume from it.
                async with connect(service) as late:
                    hello = await late.receive()
                    await late.subscribe(
                        "national", since={"national": lost[-1]}, epoch=hello["epoch"]
                    )
                    answer = await late.receive()
                    assert (answer["type"], answer["seq"]) == ("snapshot", rest["seq"])
            async with run_service(settings) as fresh:
                assert await states(fresh) == before
            assert "exit_poll" not in before[0]["data"]
            survived = [orjson.loads(line) for line in NIGHT_2024[:40] + NIGHT_2024[50:80]]
            declared = {e["constituency"] for e in survived if e["type"] == "declaration"}
            assert before[0]["data"]["declared"] == len(declared)
        finally:
            await primary.aclose()
            await replica.aclose()


async def test_wait_replicas_makes_each_write_reach_a_replica_or_fails_clearly(
    redis_url: str, stream_key: str, tmp_path: Path
) -> None:
    primary = RedisProcess(tmp_path / "primary")
    replica = RedisProcess(tmp_path / "replica")
    replica.extra = ("--replicaof", "127.0.0.1", str(primary.port))
    async with running(primary, replica):
        client = replica.client()
        try:
            code, err = await feeder(
                primary.url, stream_key, "--speed", "0", "--limit", "20", "--wait-replicas", "1"
            )
            assert code == 0, err
            # Every write was on the replica before the next was made.
            assert await client.xlen(stream_key) == 21

            code, err = await feeder(
                primary.url, stream_key, "--speed", "0", "--limit", "5", "--append",
                "--wait-replicas", "2", "--replica-timeout", "0.2",
            )  # fmt: skip
            assert code == 1
            assert "only 1 of 2 replicas (--wait-replicas) had it after 0.2s" in err
            assert "Traceback" not in err
        finally:
            await client.aclose()


async def test_a_sentinel_url_carries_the_password_of_redis_and_that_of_the_sentinel(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with sentinelled(
        tmp_path, password="redis-secret", sentinel_password="sentinel-secret"
    ) as group:
        assert "redis-secret@" in group.url and "sentinel_password=" in group.url
        settings = make_settings(redis_url=group.url)
        async with run_service(settings) as service:
            code, err = await feeder(group.url, settings.stream, "--speed", "0", "--limit", "5")
            assert code == 0, err
            assert "secret" not in err
            primary = group.primary.client()
            [(last, _)] = entries(await primary.xrevrange(settings.stream, count=1))
            await primary.aclose()
            await applied(service, last.decode())
