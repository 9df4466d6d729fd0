"""Webhooks: each target gets the flat JSON of its channel on each change, coalesced, retried,
and never in anyone's way. The receivers are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.settings import Settings
from service.webhooks import Target, WebhookError, parse_targets
from tests.conftest import TIMEOUT
from tests.core.builders import bundled_election
from tests.service.conftest import NIGHT_2024, RunningService, connect, run_service, xadd
from tests.service.test_process import free_port

PETERBOROUGH = "E14001425"


@dataclasses.dataclass
class Receiver:
    """An HTTP server that keeps what it is sent; it can fail or hold its answers."""

    failures: int = 0
    """Answer this many requests with 500 first."""
    hold: asyncio.Event | None = None
    """Answer nothing until this is set."""
    requests: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    port: int = 0

    async def endpoint(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append((request.method, request.url.path, body))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.failures > 0:
            self.failures -= 1
            return Response("not now", status_code=500)
        return Response(status_code=204)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for _, p, body in self.requests if p == path]

    async def wait_for(self, what: str, ok: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not ok():
                self.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 0.1)
        assert ok(), what


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = Starlette(routes=[Route("/{path:path}", receiver.endpoint, methods=["PUT", "POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    # A no-op: uvicorn dropped this method (serve() captures signals itself).
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(TIMEOUT):
        while not server.started:
            await asyncio.sleep(0.01)
    receiver.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


def webhook_file(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "webhooks.txt"
    path.write_text("# targets\n" + "\n".join(lines) + "\n")
    return f"@{path}"


async def metric(service: RunningService, name: str, target: str) -> float:
    text = (await service.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'{name}_total{{target="{target}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def metric_reaches(
    service: RunningService, name: str, target: str, ok: Callable[[float], bool]
) -> float:
    """The counter once ``ok`` holds of it: a request is counted when its answer is in."""
    async with asyncio.timeout(TIMEOUT):
        while not ok(value := await metric(service, name, target)):
            await asyncio.sleep(0.02)
    return value


async def replay(service: RunningService, redis: aioredis.Redis, lines: list[str]) -> str:
    ids = await xadd(redis, service.settings.stream, *lines)
    async with asyncio.timeout(TIMEOUT):
        while (await service.get("/readyz")).json()["seq"] != ids[-1]:
            await asyncio.sleep(0.02)
    return ids[-1]


async def test_each_target_receives_the_flat_json_of_its_channel_by_its_method(
    make_settings: Callable[..., Settings], redis: aioredis.Redis, tmp_path: Path
) -> None:
    async with receiving(Receiver()) as receiver:
        targets = webhook_file(
            tmp_path,
            receiver.url("/national"),
            f"{receiver.url('/latest')} latest POST",
            f"{receiver.url('/seat')}  constituency:{PETERBOROUGH}  put  # one seat",
        )
        settings = make_settings(webhooks=targets, webhook_interval=0.05)
        async with run_service(settings) as service:
            # At start each target gets its channel as it stands.
            await receiver.wait_for("three first pushes", lambda: len(receiver.requests) >= 3)
            night = [line for line in NIGHT_2024[:40] if PETERBOROUGH not in line]
            peterborough = next(line for line in NIGHT_2024 if PETERBOROUGH in line)
            await replay(service, redis, [*night, peterborough])
            expected = {
                "/national": (await service.get("/graphics/national.json")).json(),
                "/latest": (await service.get("/graphics/latest.json")).json(),
                "/seat": (await service.get(f"/graphics/constituency/{PETERBOROUGH}.json")).json(),
            }
            for path, document in expected.items():

                def latest(path: str = path, document: Any = document) -> bool:
                    return receiver.bodies(path)[-1:] == [document]

                await receiver.wait_for(f"{path} to get the latest state", latest)
            received = len(receiver.bodies("/national"))
            national = receiver.url("/national")
            await metric_reaches(
                service, "seatcast_webhook_sent", national, lambda n: n == received
            )
        methods = {path: method for method, path, _ in receiver.requests}
        assert methods == {"/national": "PUT", "/latest": "POST", "/seat": "PUT"}
        assert expected["/latest"]["id"] == PETERBOROUGH


async def test_changes_are_coalesced_and_the_latest_state_always_arrives(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with receiving(Receiver()) as receiver:
        url = receiver.url("/national")
        settings = make_settings(webhooks=url, webhook_interval=0.5)
        async with run_service(settings) as service:
            started = time.monotonic()
            await replay(service, redis, NIGHT_2024[:300])
            final = (await service.get("/graphics/national.json")).json()
            await receiver.wait_for(
                "the final state", lambda: receiver.bodies("/national")[-1:] == [final]
            )
            elapsed = time.monotonic() - started
            coalesced = await metric(service, "seatcast_webhook_coalesced", url)
        requests = len(receiver.bodies("/national"))
        # 300 changes; at most one request per half second (and the first, at start).
        assert requests <= 2 + elapsed / 0.5
        assert requests < 300
        assert coalesced > 0
        declared = [body["declared"] for body in receiver.bodies("/national")]
        assert declared == sorted(declared)  # never an older state after a newer one


async def test_a_slow_target_holds_up_neither_the_fan_out_nor_the_other_targets(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    release = asyncio.Event()
    async with receiving(Receiver(hold=release)) as slow, receiving(Receiver()) as quick:
        targets = f"{slow.url('/slow')},{quick.url('/quick')}"
        settings = make_settings(webhooks=targets, webhook_interval=0.05, webhook_timeout=60)
        async with run_service(settings) as service, connect(service) as client:
            await slow.wait_for("the slow target's first request", lambda: len(slow.requests) == 1)
            await client.receive()  # hello
            await client.subscribe("national")
            await client.receive()  # snapshot
            last = await replay(service, redis, NIGHT_2024[:100])

            # Every delta reaches the websocket client while the slow target still waits.
            await client.receive_until(lambda message: message.get("seq") == last)
            final = (await service.get("/graphics/national.json")).json()
            await quick.wait_for("the quick target", lambda: quick.bodies("/quick")[-1] == final)
            assert len(slow.requests) == 1

            release.set()
            # Then the slow one gets the latest state next, not each change it missed.
            await slow.wait_for("the slow target to catch up", lambda: len(slow.requests) >= 2)
            assert slow.bodies("/slow")[1] == final


async def test_a_failing_target_is_retried_and_counted_while_the_others_go_on(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens there
    async with receiving(Receiver(failures=3)) as failing, receiving(Receiver()) as quick:
        targets = f"{failing.url('/failing')},{refused},{quick.url('/quick')}"
        settings = make_settings(webhooks=targets, webhook_interval=0.05)
        async with run_service(settings) as service:
            await replay(service, redis, NIGHT_2024[:30])
            final = (await service.get("/graphics/national.json")).json()
            await quick.wait_for("the quick target", lambda: quick.bodies("/quick")[-1:] == [final])
            # 500, 500, 500, then a success; the latest state goes with each try.
            await failing.wait_for(
                "the failing target to get the final state",
                lambda: len(failing.requests) >= 4 and failing.bodies("/failing")[-1] == final,
            )
            label = failing.url("/failing")
            await metric_reaches(service, "seatcast_webhook_sent", label, lambda n: n >= 1)
            assert await metric(service, "seatcast_webhook_failed", label) == 3
            await metric_reaches(service, "seatcast_webhook_failed", refused, lambda n: n >= 1)
            assert await metric(service, "seatcast_webhook_sent", refused) == 0
            assert (await service.get("/readyz")).status_code == 200


async def test_targets_get_the_public_view_and_the_exit_poll_when_its_embargo_lifts(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    async with receiving(Receiver()) as receiver:
        settings = make_settings(webhooks=receiver.url("/national"), webhook_interval=0.05)
        async with run_service(settings) as service:
            until = datetime.now(UTC) + timedelta(seconds=1)
            poll = {"type": "exit_poll", "seats": {"LAB": 410}, "embargo_until": until.isoformat()}
            await replay(service, redis, [orjson.dumps(poll).decode(), *NIGHT_2024[1:4]])
            await receiver.wait_for(
                "three seats declared",
                lambda: receiver.bodies("/national")[-1]["declared"] == 3,
            )
            if datetime.now(UTC) < until:  # all sent before the embargo's time: none has it
                assert {body["LAB_exit_poll"] for body in receiver.bodies("/national")} == {""}

            # At the embargo's time the target is sent national again, exit poll and all.
            await receiver.wait_for(
                "the exit poll", lambda: receiver.bodies("/national")[-1]["LAB_exit_poll"] == 410
            )
            assert datetime.now(UTC) >= until


def test_a_webhook_list_is_read_from_a_comma_list_or_a_file(tmp_path: Path) -> None:
    election = bundled_election()
    listed = parse_targets("http://a.example/x, https://b.example/y?key=secret", election)
    spec = webhook_file(
        tmp_path,
        "",
        "https://c.example/latest latest post",
        f"http://d.example/ constituency:{PETERBOROUGH}",
    )

    assert listed == (
        Target("http://a.example/x"),
        Target("https://b.example/y?key=secret"),
    )
    assert listed[1].label == "https://b.example/y"  # no query (a token may be in it)
    assert parse_targets(spec, election) == (
        Target("https://c.example/latest", "declarations", "POST"),
        Target("http://d.example/", f"constituency:{PETERBOROUGH}", "PUT"),
    )
    assert parse_targets(None, election) == parse_targets("", election) == ()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("ftp://a.example/x", ["line 2", "'ftp://a.example/x'", "http"]),
        ("http:///nohost", ["line 2", "not an http"]),
        ("http://a.example/ region:london", ["line 2", "'region:london'"]),
        ("http://a.example/ constituency:E00000000", ["no such channel"]),
        ("http://a.example/ national DELETE", ["'DELETE'", "PUT or POST"]),
        ("http://a.example/ national PUT extra", ["4 words"]),
    ],
)
def test_a_bad_webhook_line_is_refused_naming_the_file_and_line(
    tmp_path: Path, line: str, words: list[str]
) -> None:
    with pytest.raises(WebhookError) as raised:
        parse_targets(webhook_file(tmp_path, line), bundled_election())

    for word in words:
        assert word in str(raised.value)


def test_the_service_will_not_start_with_a_bad_webhook_list(tmp_path: Path) -> None:
    missing = tmp_path / "absent.txt"
    result = subprocess.run(
        [sys.executable, "-m", "service", "--webhooks", f"@{missing}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 2
    assert f"seatcast: {missing}: cannot read the webhook list" in result.stderr
