"""The client library over Server-Sent Events: the pushed session fed with dicts and event
ids, and the whole client against a real service's /sse on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from clients.session import ConnectionState, ErrorMessage, Session, Update
from clients.sse import SeatcastSSEClient, open_client, sse_url
from service.settings import Settings
from tests.clients.test_client import (
    DECLARATION_LINES,
    Follower,
    delta,
    event,
    hello,
    only,
    rest_national,
    seen_declarations,
    snapshot,
)
from tests.conftest import TIMEOUT
from tests.service import conftest as service_fixtures
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd

make_settings = service_fixtures.make_settings
service = service_fixtures.service


# --- the pushed session, fed with plain dicts ---------------------------------------------


def at(seq: str, epoch: str = "1-0") -> str:
    return f"{epoch}:{seq}"


def pushed(channels: list[str]) -> Session:
    """A pushed session that has had its hello and a snapshot of each channel at 2-0."""
    session = Session(channels, pushed=True)
    assert session.next_connection() is None
    assert session.receive(hello()) == []
    items = []
    for channel in channels:
        data: dict[str, Any] = {"recent": []} if channel == "declarations" else {"declared": 0}
        items += session.receive(snapshot(channel, "2-0", data), at("9-0"))
    assert items[-1] == ConnectionState(
        "live", f"{len(channels)} channel{'' if len(channels) == 1 else 's'}"
    )
    assert session.take_requests() == []
    return session


def test_a_pushed_session_sends_nothing_and_is_live_once_every_channel_is_answered() -> None:
    session = Session(["national", "declarations"], pushed=True)
    session.receive(hello())
    assert session.take_requests() == []
    first = session.receive(snapshot("national", "2-0", {"declared": 0}), at("9-0"))
    assert [type(item) for item in first] == [Update]
    second = session.receive(snapshot("declarations", "3-0", {"recent": []}), at("9-0"))
    assert second[-1] == ConnectionState("live", "2 channels")
    assert session.ping() is None
    assert session.position == at("9-0")


def test_one_last_event_id_resumes_every_channel() -> None:
    session = pushed(["national", "declarations"])
    session.receive(delta("national", "2-0", "10-0", {"declared": 1}), at("10-0"))
    session.receive(event("2-0", "11-0", "Labour hold A"), at("11-0"))
    session.connection_lost()
    assert session.next_connection() == at("11-0")
    session.receive(hello(seq="12-0"))
    session.receive({"type": "resumed", "channel": "national", "seq": "10-0"})
    items = session.receive({"type": "resumed", "channel": "declarations", "seq": "11-0"})
    assert items[-1] == ConnectionState("resynced", "reconnected; resumed declarations, national")
    update = only(
        Update, session.receive(delta("national", "10-0", "12-0", {"declared": 2}), at("12-0"))
    )
    assert update.state == {"declared": 2}


def test_an_unknown_channel_error_refuses_the_channels_it_names() -> None:
    session = Session(["national", "region:atlantis", "region:lyonesse"], pushed=True)
    session.receive(hello())
    error = {
        "type": "error",
        "code": "unknown_channel",
        "message": "no such channel: region:atlantis, region:lyonesse",
    }
    [refusal] = session.receive(error)
    assert isinstance(refusal, ErrorMessage)
    items = session.receive(snapshot("national", "2-0", {}), at("2-0"))
    assert items[-1] == ConnectionState(
        "live", "1 channel; refused: region:atlantis, region:lyonesse"
    )
    assert session.channels == ("national",)


def test_a_gap_reconnects_from_the_last_good_seq_and_the_others_pass_over_what_they_hold() -> None:
    session = pushed(["national", "declarations"])
    session.receive(event("2-0", "10-0", "Labour hold A"), at("10-0"))
    session.receive(delta("national", "2-0", "11-0", {"declared": 1}), at("11-0"))
    # 12-0 on declarations went missing.
    assert session.receive(event("12-0", "13-0", "Labour gain C"), at("13-0")) == []
    assert session.take_drop() == "gap on declarations after 10-0"
    session.receive(delta("national", "11-0", "14-0", {"declared": 3}), at("14-0"))
    session.connection_lost()
    assert session.next_connection() == at("10-0")
    session.receive(hello(seq="14-0"))
    # national's last change at or before 10-0 was 2-0: it holds 14-0, and keeps it.
    resumed = only(
        Update, session.receive({"type": "resumed", "channel": "national", "seq": "2-0"})
    )
    assert resumed.seq == "14-0"
    session.receive({"type": "resumed", "channel": "declarations", "seq": "10-0"})
    assert session.receive(delta("national", "2-0", "11-0", {"declared": 1}), at("11-0")) == []
    replayed = session.receive(event("10-0", "12-0", "Reform gain B"), at("12-0"))
    assert [u.seq for u in replayed if isinstance(u, Update)] == ["12-0"]
    session.receive(event("12-0", "13-0", "Labour gain C"), at("13-0"))
    assert session.receive(delta("national", "11-0", "14-0", {"declared": 3}), at("14-0")) == []
    assert session.state("national") == {"declared": 3}
    assert session.take_drop() is None
    log = session.state("declarations")
    assert log is not None
    assert [e["seq"] for e in log["recent"]] == ["10-0", "12-0", "13-0"]
    # Whole again: the next reconnect resumes from the last id.
    session.connection_lost()
    assert session.next_connection() == at("14-0")


def test_adding_a_channel_reconnects_and_starts_every_channel_afresh() -> None:
    session = pushed(["national"])
    session.subscribe(["constituency:E1"])
    assert session.take_drop() == "reconnecting to add constituency:E1"
    session.connection_lost()
    assert session.next_connection() is None
    session.unsubscribe(["constituency:E1"])
    assert session.next_connection() == at("9-0")


def test_a_new_epoch_on_a_live_stream_waits_for_fresh_snapshots() -> None:
    session = pushed(["national"])
    assert session.receive(hello(epoch="50-0", seq="50-0")) == []
    assert session.state("national") is None
    items = session.receive(snapshot("national", "50-0", {"declared": 0}), at("50-0", "50-0"))
    assert items[-1] == ConnectionState("resynced", "new epoch 50-0; fresh snapshot of national")


def test_a_log_resumed_from_a_saved_seq_sends_it_as_the_last_event_id() -> None:
    session = Session(["declarations"], since={"declarations": "4-0"}, epoch="1-0", pushed=True)
    assert session.next_connection() == at("4-0")
    session.receive(hello())
    resumed, state = session.receive({"type": "resumed", "channel": "declarations", "seq": "3-0"})
    assert isinstance(resumed, Update) and resumed.seq == "3-0"
    assert state == ConnectionState("live", "1 channel")
    update = only(Update, session.receive(event("3-0", "5-0", "SNP hold E"), at("5-0")))
    assert update.kind == "event"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:1/sse", "http://h:1/sse?channels=national,declarations"),
        (
            "http://h:1/sse?token=t&channels=x",
            "http://h:1/sse?token=t&channels=national,declarations",
        ),
    ],
)
def test_the_channels_go_in_the_url(url: str, expected: str) -> None:
    assert sse_url(url, ["national", "declarations"]) == expected


def test_bad_arguments_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        SeatcastSSEClient("ws://127.0.0.1:1/ws", ["national"])
    with pytest.raises(ValueError, match="one id resumes all"):
        SeatcastSSEClient(
            "http://127.0.0.1:1/sse",
            ["national", "declarations"],
            since={"declarations": "1-0"},
            epoch="1-0",
        )
    with pytest.raises(ValueError, match="unknown transport"):
        open_client("http://127.0.0.1:1/sse", ["national"], transport="carrier-pigeon")  # type: ignore[arg-type]


# --- the client against a real service ------------------------------------------------------


def sse_endpoint(service: RunningService) -> str:
    return f"{service.http}/sse"


class follow_sse:
    """Iterate an SSE client in a task (a :class:`Follower`), closing both after."""

    def __init__(self, url: str, channels: list[str], **options: Any) -> None:
        self.client = SeatcastSSEClient(
            url, channels, backoff_start=0.05, backoff_cap=0.5, **options
        )

    async def __aenter__(self) -> Follower:
        self.follower = Follower(self.client)  # type: ignore[arg-type]
        return self.follower

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await asyncio.wait_for(self.follower.task, TIMEOUT)


def live(follower: Follower) -> Callable[[], bool]:
    return lambda: any(s.status == "live" for s in follower.statuses())


async def test_over_sse_the_client_ends_with_the_state_rest_shows(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with follow_sse(sse_endpoint(service), ["national", "declarations"]) as follower:
        await follower.until(live(follower))
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:100])
        await follower.until(lambda: follower.client.seq("national") == ids[-1])
        rest = await rest_national(service)
        assert rest == {"seq": ids[-1], "data": follower.client.state("national")}
        await follower.until(lambda: len(follower.updates("declarations", "event")) == 99)
        assert [e.seq for e in follower.updates("declarations", "event")] == ids[1:]
        assert not [i for i in follower.items if isinstance(i, ErrorMessage)]
        assert [s.status for s in follower.statuses()] == ["connecting", "live"]


async def test_over_sse_a_restarted_service_is_resumed_with_no_gap(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    before = await xadd(redis, settings.stream, *NIGHT_2024[:30])
    async with run_service(settings) as first:
        async with follow_sse(sse_endpoint(first), ["national", "declarations"]) as follower:
            await follower.until(lambda: follower.client.seq("national") == before[-1])
            during = await xadd(redis, settings.stream, *NIGHT_2024[30:40])
            await follower.until(lambda: follower.client.seq("declarations") == during[-1])
            port = first.port
            await first.stop()
            await follower.until(lambda: follower.statuses()[-1].status == "reconnecting")
            while_down = await xadd(redis, settings.stream, *NIGHT_2024[40:80])
            async with run_service(settings.model_copy(update={"port": port})) as second:
                await follower.until(lambda: follower.client.seq("national") == while_down[-1])
                await follower.until(lambda: follower.statuses()[-1].status == "resynced")
                assert "resumed declarations" in follower.statuses()[-1].detail
                after = await xadd(redis, settings.stream, *NIGHT_2024[80:90])
                await follower.until(lambda: follower.client.seq("declarations") == after[-1])
                assert (await rest_national(second))["data"] == follower.client.state("national")
    # Every declaration exactly once, in order, across the restart: one id resumed them all.
    assert seen_declarations(follower) == (before + during + while_down + after)[1:]
    assert len(follower.updates("declarations", "snapshot")) == 1


async def test_over_sse_a_slow_client_closed_on_declarations_resumes_and_misses_nothing(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings(queue_bytes=2000, history=5000)
    async with run_service(settings) as running:
        seats = [f"constituency:{orjson.loads(line)['constituency']}" for line in DECLARATION_LINES]
        channels = ["declarations", "national", *seats[:300]]
        async with follow_sse(f"{running.http}/sse", channels) as follower:
            await follower.until(live(follower))
            # Stop reading: the socket's buffers fill, then the server's queue: it closes.
            follower.pause()
            ids = await xadd(redis, settings.stream, *NIGHT_2024)
            async with asyncio.timeout(TIMEOUT):
                while (
                    "seatcast_slow_client_closes_total 1.0"
                    not in (await running.get("/metrics")).text
                ):
                    await asyncio.sleep(0.05)
            follower.resume()
            await follower.until(lambda: follower.client.seq("declarations") == ids[-1])
            await follower.until(lambda: follower.client.seq("national") == ids[-1])
            assert any(s.status == "reconnecting" for s in follower.statuses())
            assert seen_declarations(follower) == ids[1:]
            assert follower.updates("declarations", "resumed")
            assert (await rest_national(running))["data"] == follower.client.state("national")


async def test_over_sse_a_channel_added_while_running_reconnects_with_it(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with follow_sse(sse_endpoint(service), ["national"]) as follower:
        await follower.until(live(follower))
        [entry] = await xadd(redis, service.settings.stream, DECLARATION_LINES[0])
        seat = orjson.loads(DECLARATION_LINES[0])["constituency"]
        await follower.client.subscribe([f"constituency:{seat}"])
        await follower.until(lambda: follower.client.seq(f"constituency:{seat}") == entry)
        await follower.until(lambda: follower.client.seq("national") == entry)
        await follower.client.unsubscribe(["national"])
        await follower.until(lambda: follower.client.channels == (f"constituency:{seat}",))
        assert follower.client.state("national") is None


async def test_over_sse_unknown_channels_are_refused_with_the_servers_reason(
    service: RunningService,
) -> None:
    async with follow_sse(sse_endpoint(service), ["national", "region:atlantis"]) as follower:
        await follower.until(live(follower))
        [error] = [i for i in follower.items if isinstance(i, ErrorMessage)]
        assert error.code == "unknown_channel"
        assert "region:atlantis" in error.text
        assert follower.client.channels == ("national",)
    async with follow_sse(sse_endpoint(service), ["region:atlantis"]) as follower:
        await follower.until(lambda: len(follower.statuses()) >= 2)
        refused = follower.statuses()[1]
        assert refused.status == "connecting"
        assert refused.retry_in is not None
        assert refused.detail.startswith("cannot connect: HTTP 400")
        assert "region:atlantis" in refused.detail


async def test_a_malformed_event_is_an_error_item_and_the_stream_goes_on() -> None:
    """A real server on 127.0.0.1 that writes one event that is not JSON, then a good one."""
    body = (
        b'retry: 1000\nevent: hello\ndata: {"type":"hello","epoch":"1-0","seq":"2-0"}\n\n'
        b"event: snapshot\ndata: {not json\nid: 1-0:2-0\n\n"
        b": a heartbeat\n\n"
        b'event: snapshot\ndata: {"type":"snapshot","channel":"national","seq":"2-0",'
        b'"data":{"declared":0}}\nid: 1-0:2-0\n\n'
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with follow_sse(f"http://127.0.0.1:{port}/sse", ["national"]) as follower:
            await follower.until(live(follower))
            [error] = [i for i in follower.items if isinstance(i, ErrorMessage)]
            assert error.code == "bad_frame"
            assert follower.client.state("national") == {"declared": 0}
    finally:
        server.close()
        await server.wait_closed()


async def test_over_sse_a_refusal_with_retry_after_is_not_tried_again_sooner(
    make_settings: Callable[..., Settings],
) -> None:
    # A tenth of a stream a second from one address: the first open is already refused.
    async with run_service(make_settings(sse_open_rate=0.1)) as running:
        async with follow_sse(f"{running.http}/sse", ["national"]) as follower:
            await follower.until(lambda: len(follower.statuses()) >= 2)
            refused = follower.statuses()[1]
            assert refused.detail.startswith("cannot connect: HTTP 429")
            assert "rate_limited" in refused.detail
            assert refused.retry_in is not None and refused.retry_in >= 1
