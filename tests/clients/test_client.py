"""The client library: its pure session fed with dicts, and the whole client against a real
service on a real Redis (stopped, restarted and slow-closed under it)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
import pytest
import redis.asyncio as aioredis

from clients.client import SeatcastClient
from clients.session import ConnectionState, ErrorMessage, Item, Pong, Session, Update
from service.settings import Settings
from tests.conftest import TIMEOUT
from tests.service import conftest as service_fixtures
from tests.service.conftest import NIGHT_2024, RunningService, run_service, xadd

# The service's fixtures, shared rather than copied.
make_settings = service_fixtures.make_settings
service = service_fixtures.service

DECLARATION_LINES = [line for line in NIGHT_2024 if '"type": "declaration"' in line]


# --- the session, fed with plain dicts -----------------------------------------------------

T = TypeVar("T")


def only(kind: type[T], items: list[Item]) -> T:
    """The one item a message produced, checked to be of ``kind``."""
    [item] = items
    assert isinstance(item, kind), item
    return item


def hello(epoch: str = "1-0", seq: str = "9-0") -> dict[str, Any]:
    return {"type": "hello", "election": "uk-2024", "epoch": epoch, "seq": seq}


def snapshot(channel: str, seq: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "snapshot", "channel": channel, "seq": seq, "data": data}


def delta(channel: str, prev: str, seq: str, patch: dict[str, Any]) -> dict[str, Any]:
    return {"type": "delta", "channel": channel, "seq": seq, "prev": prev, "patch": patch}


def event(prev: str, seq: str, headline: str) -> dict[str, Any]:
    data = {"seq": seq, "kind": "declaration", "headline": headline}
    return {"type": "event", "channel": "declarations", "seq": seq, "prev": prev, "data": data}


def pong_for_barrier(session: Session) -> dict[str, Any]:
    """The server's answer to the last barrier ping the session queued."""
    pings = [r for r in session.take_requests() if r["op"] == "ping"]
    return {"type": "pong", "id": pings[-1]["id"]}


def synced(channels: list[str], national: dict[str, Any] | None = None) -> Session:
    """A session that has had its hello, its snapshots (at 2-0) and its barrier pong."""
    session = Session(channels)
    session.receive(hello())
    requests = session.take_requests()
    assert requests[0] == {"op": "subscribe", "channels": channels}
    for channel in channels:
        data = {"recent": []} if channel == "declarations" else (national or {"declared": 0})
        session.receive(snapshot(channel, "2-0", data))
    assert session.receive({"type": "pong", "id": requests[-1]["id"]}) == [
        ConnectionState("live", f"{len(channels)} channel{'' if len(channels) == 1 else 's'}")
    ]
    return session


def test_hello_subscribes_and_the_barrier_pong_means_live() -> None:
    session = Session(["national"])
    assert session.take_requests() == []
    assert session.receive(hello()) == []
    subscribe, barrier = session.take_requests()
    assert subscribe == {"op": "subscribe", "channels": ["national"]}
    assert barrier["op"] == "ping"
    update = only(Update, session.receive(snapshot("national", "2-0", {"declared": 0})))
    assert update == Update("national", "snapshot", "2-0", {"declared": 0}, update.message)
    state = only(ConnectionState, session.receive({"type": "pong", "id": barrier["id"]}))
    assert state == ConnectionState("live", "1 channel")
    assert session.epoch == "1-0"


def test_deltas_apply_as_merge_patches_and_leave_earlier_states_alone() -> None:
    session = synced(["national"], {"declared": 0, "parties": {"LAB": {"seats": 0}}})
    first = session.state("national")
    update = only(
        Update, session.receive(delta("national", "2-0", "3-0", {"declared": 1, "leader": "LAB"}))
    )
    assert update.state == {"declared": 1, "leader": "LAB", "parties": {"LAB": {"seats": 0}}}
    kept = copy.deepcopy(update.state)
    patch = {"leader": None, "parties": {"LAB": {"seats": 1}}}
    later = only(Update, session.receive(delta("national", "3-0", "4-0", patch)))
    assert later.state == {"declared": 1, "parties": {"LAB": {"seats": 1}}}
    assert update.state == kept, "a state handed out was changed by a later delta"
    assert first == {"declared": 0, "parties": {"LAB": {"seats": 0}}}
    assert session.seq("national") == "4-0"
    assert session.state("national") is later.state


def test_a_gapped_delta_is_never_applied_and_the_channel_resumes_from_the_last_good_seq() -> None:
    session = synced(["national"])
    session.receive(delta("national", "2-0", "3-0", {"declared": 1}))
    # 4-0 went missing: 5-0's prev is not what the client holds.
    assert session.receive(delta("national", "4-0", "5-0", {"declared": 3})) == []
    assert session.state("national") == {"declared": 1}
    assert session.seq("national") == "3-0"
    subscribe, barrier = session.take_requests()
    assert subscribe == {
        "op": "subscribe",
        "channels": ["national"],
        "since": {"national": "3-0"},
        "epoch": "1-0",
    }
    # Until the answer comes, nothing more is applied (it would build on the gap).
    assert session.receive(delta("national", "5-0", "6-0", {"declared": 4})) == []
    resumed = only(
        Update, session.receive({"type": "resumed", "channel": "national", "seq": "3-0"})
    )
    assert resumed.kind == "resumed"
    assert resumed.state == {"declared": 1}
    for prev, seq, declared in (("3-0", "4-0", 2), ("4-0", "5-0", 3), ("5-0", "6-0", 4)):
        update = only(Update, session.receive(delta("national", prev, seq, {"declared": declared})))
        assert update.state == {"declared": declared}
    state = only(ConnectionState, session.receive({"type": "pong", "id": barrier["id"]}))
    assert state.status == "resynced"
    assert "gap on national after 3-0" in state.detail
    assert "resumed national" in state.detail


def test_a_gap_on_the_declarations_log_resumes_it_too() -> None:
    session = synced(["declarations"])
    first = only(Update, session.receive(event("2-0", "3-0", "Labour hold A")))
    assert first.kind == "event"
    assert first.state["headline"] == "Labour hold A"
    assert session.receive(event("4-0", "5-0", "Labour gain C")) == []
    subscribe, _ = session.take_requests()
    assert subscribe["since"] == {"declarations": "3-0"}
    # When the server no longer holds the backlog it sends a snapshot: that is taken whole.
    recent = [{"headline": "Labour hold A"}, {"headline": "x"}, {"headline": "Labour gain C"}]
    update = only(Update, session.receive(snapshot("declarations", "5-0", {"recent": recent})))
    assert update.kind == "snapshot"
    after = only(Update, session.receive(event("5-0", "6-0", "Reform gain D")))
    assert after.state["headline"] == "Reform gain D"
    log = session.state("declarations")
    assert log is not None
    assert [e["headline"] for e in log["recent"]][-2:] == ["Labour gain C", "Reform gain D"]


def test_a_repeated_message_is_ignored_without_a_resubscribe() -> None:
    session = synced(["national"])
    session.receive(delta("national", "2-0", "3-0", {"declared": 1}))
    assert session.receive(delta("national", "2-0", "3-0", {"declared": 1})) == []
    assert session.take_requests() == []
    # Seqs order as numbers, not text: 10-0 comes after 9-0.
    session.receive(delta("national", "3-0", "9-0", {"declared": 2}))
    update = only(Update, session.receive(delta("national", "9-0", "10-0", {"declared": 3})))
    assert update.seq == "10-0"


def test_a_reconnect_resubscribes_every_channel_with_since_and_epoch() -> None:
    session = synced(["national", "declarations"])
    session.receive(delta("national", "2-0", "3-0", {"declared": 1}))
    session.connection_lost()
    assert session.ping() is None
    assert session.receive(hello(seq="7-0")) == []
    subscribe, barrier = session.take_requests()
    assert subscribe == {
        "op": "subscribe",
        "channels": ["national", "declarations"],
        "since": {"national": "3-0", "declarations": "2-0"},
        "epoch": "1-0",
    }
    session.receive({"type": "resumed", "channel": "national", "seq": "3-0"})
    session.receive(snapshot("declarations", "7-0", {"recent": []}))
    state = only(ConnectionState, session.receive({"type": "pong", "id": barrier["id"]}))
    assert state == ConnectionState(
        "resynced", "reconnected; resumed national; fresh snapshot of declarations"
    )


def test_an_instance_that_has_not_read_the_stream_yet_is_left_for_later() -> None:
    session = synced(["national"], {"declared": 5})
    session.receive(delta("national", "2-0", "3-0", {"declared": 6}))
    session.connection_lost()
    # A restarted instance says epoch 0-0 until it reads the stream: its state is older.
    assert session.receive(hello(epoch="0-0", seq="0-0")) == []
    assert session.take_requests() == []
    assert session.take_drop() == "the service has not read the stream yet"
    assert session.take_drop() is None
    assert session.epoch == "1-0"
    assert session.state("national") == {"declared": 6}
    session.connection_lost()
    session.receive(hello())
    subscribe, _ = session.take_requests()
    assert subscribe["since"] == {"national": "3-0"}


def test_a_client_told_epoch_0_0_resumes_in_the_epoch_the_stream_took() -> None:
    session = Session(["national"])
    session.receive(hello(epoch="0-0", seq="0-0"))
    _, barrier = session.take_requests()
    session.receive(snapshot("national", "0-0", {"declared": 0}))
    session.receive({"type": "pong", "id": barrier["id"]})
    # The first entry arrives; the service takes it as its epoch without a new hello.
    session.receive(delta("national", "0-0", "7-0", {"declared": 1}))
    session.connection_lost()
    session.receive(hello(epoch="7-0", seq="8-0"))
    subscribe, _ = session.take_requests()
    assert subscribe["since"] == {"national": "7-0"}
    assert subscribe["epoch"] == "7-0"
    assert session.state("national") == {"declared": 1}


def test_a_new_epoch_throws_the_old_state_away() -> None:
    session = synced(["national"], {"declared": 5})
    session.connection_lost()
    session.receive(hello(epoch="50-0"))
    [subscribe, _] = session.take_requests()
    assert subscribe == {"op": "subscribe", "channels": ["national"]}
    assert session.state("national") is None
    assert session.epoch == "50-0"
    # On a live connection, a new hello is followed by fresh snapshots unasked.
    session.receive(snapshot("national", "50-0", {"declared": 1}))
    assert session.receive(hello(epoch="60-0")) == []
    assert session.state("national") is None
    assert session.receive(delta("national", "50-0", "61-0", {"declared": 2})) == []
    update = only(Update, session.receive(snapshot("national", "60-0", {"declared": 0})))
    assert update.state == {"declared": 0}
    state = only(ConnectionState, session.receive(pong_for_barrier(session)))
    assert state.status == "resynced"
    assert "new epoch 60-0" in state.detail


def test_errors_are_items_and_refused_channels_are_dropped() -> None:
    session = Session(["national", "region:atlantis"])
    session.receive(hello())
    _, barrier = session.take_requests()
    error = {"type": "error", "code": "unknown_channel", "message": "no such channel: x"}
    assert session.receive(error) == [ErrorMessage("unknown_channel", "no such channel: x", error)]
    session.receive(snapshot("national", "2-0", {}))
    state = only(ConnectionState, session.receive({"type": "pong", "id": barrier["id"]}))
    assert state == ConnectionState("live", "1 channel; refused: region:atlantis")
    assert session.channels == ("national",)


def test_subscribe_unsubscribe_and_ping_while_connected() -> None:
    session = synced(["national"])
    session.subscribe(["national", "constituency:E1"])
    subscribe, barrier = session.take_requests()
    assert subscribe == {"op": "subscribe", "channels": ["constituency:E1"]}
    session.receive(snapshot("constituency:E1", "2-0", {"status": "awaiting"}))
    # Adding a channel to a live session is not a resync: no state item.
    assert session.receive({"type": "pong", "id": barrier["id"]}) == []
    session.unsubscribe(["national"])
    assert session.take_requests() == [{"op": "unsubscribe", "channels": ["national"]}]
    assert session.state("national") is None
    assert session.receive(delta("national", "2-0", "3-0", {"declared": 1})) == []
    ping_id = session.ping()
    assert session.take_requests() == [{"op": "ping", "id": ping_id}]
    pong = {"type": "pong", "id": ping_id}
    assert session.receive(pong) == [Pong(ping_id, None, pong)]


def test_since_resumes_the_log_from_a_saved_seq() -> None:
    session = Session(["declarations"], since={"declarations": "4-0"}, epoch="1-0")
    session.receive(hello())
    subscribe, _ = session.take_requests()
    assert subscribe["since"] == {"declarations": "4-0"}
    assert subscribe["epoch"] == "1-0"
    resumed = only(
        Update, session.receive({"type": "resumed", "channel": "declarations", "seq": "4-0"})
    )
    assert resumed.state == {"recent": []}
    update = only(Update, session.receive(event("4-0", "5-0", "SNP hold E")))
    assert update.kind == "event"
    with pytest.raises(ValueError, match="log channels only"):
        Session(["national"], since={"national": "4-0"})


def test_the_posts_log_holds_the_posts_replaced_in_place_and_withdrawn() -> None:
    session = Session(["posts"])
    session.receive(hello())
    session.take_requests()
    first, second = {"id": "p1", "title": "One"}, {"id": "p2", "title": "Two"}
    session.receive(snapshot("posts", "2-0", {"recent": [first, second]}))

    def posts_event(prev: str, seq: str, kind: str, post: dict[str, Any]) -> dict[str, Any]:
        data = {"seq": seq, "kind": kind, "post": post}
        return {"type": "event", "channel": "posts", "seq": seq, "prev": prev, "data": data}

    replaced = {"id": "p1", "title": "One, updated"}
    update = only(Update, session.receive(posts_event("2-0", "3-0", "replacement", replaced)))
    assert update.state == {"seq": "3-0", "kind": "replacement", "post": replaced}
    session.receive(posts_event("3-0", "4-0", "withdrawal", second))
    session.receive(posts_event("4-0", "5-0", "post", {"id": "p3", "title": "Three"}))

    assert session.state("posts") == {"recent": [replaced, {"id": "p3", "title": "Three"}]}


# --- the client against a real service -----------------------------------------------------


class Follower:
    """Iterates a client in a task, keeping every item, so a test can wait on what arrived."""

    def __init__(self, client: SeatcastClient) -> None:
        self.client = client
        self.items: list[Item] = []
        self._arrived = asyncio.Event()
        self.paused = False
        self._resume = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for item in self.client:
            self.items.append(item)
            self._arrived.set()
            while self.paused:
                self._resume.clear()
                await self._resume.wait()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._resume.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not predicate():
                if self.task.done():
                    self.task.result()
                    raise AssertionError("the client stopped iterating")
                self._arrived.clear()
                await self._arrived.wait()

    def updates(self, channel: str, *kinds: str) -> list[Update]:
        return [
            item
            for item in self.items
            if isinstance(item, Update) and item.channel == channel and item.kind in kinds
        ]

    def statuses(self) -> list[ConnectionState]:
        return [item for item in self.items if isinstance(item, ConnectionState)]


@contextlib.asynccontextmanager
async def follow(url: str, channels: list[str], **options: Any) -> AsyncIterator[Follower]:
    async with SeatcastClient(url, channels, backoff_start=0.05, backoff_cap=0.5, **options) as c:
        follower = Follower(c)
        try:
            yield follower
        finally:
            await c.close()
            await asyncio.wait_for(follower.task, TIMEOUT)


async def rest_national(service: RunningService) -> dict[str, Any]:
    body: dict[str, Any] = (await service.get("/api/national")).json()
    return body


def seen_declarations(follower: Follower) -> list[str]:
    """Every declaration seq the client has shown, from snapshots' recent lists and events."""
    seqs: list[str] = []
    for update in follower.updates("declarations", "snapshot", "event"):
        entries = update.state["recent"] if update.kind == "snapshot" else [update.state]
        seqs.extend(entry["seq"] for entry in entries if entry["seq"] not in seqs)
    return seqs


async def test_the_client_ends_with_the_state_rest_shows(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with follow(service.ws, ["national", "declarations"]) as follower:
        await follower.until(lambda: any(s.status == "live" for s in follower.statuses()))
        assert follower.statuses()[0].status == "connecting"
        ids = await xadd(redis, service.settings.stream, *NIGHT_2024[:100])
        await follower.until(lambda: follower.client.seq("national") == ids[-1])
        rest = await rest_national(service)
        assert rest == {"seq": ids[-1], "data": follower.client.state("national")}
        await follower.until(lambda: len(follower.updates("declarations", "event")) == 99)
        events = follower.updates("declarations", "event")
        assert [e.seq for e in events] == ids[1:]
        assert all(e.state["headline"] and e.state["constituency"]["id"] for e in events)
        log = follower.client.state("declarations")
        assert log is not None
        assert [e["seq"] for e in log["recent"]] == ids[-50:]
        national = follower.updates("national", "snapshot", "delta")
        assert national[-1].state == rest["data"]
        assert not [i for i in follower.items if isinstance(i, ErrorMessage)]
        assert [s.status for s in follower.statuses()] == ["connecting", "live"]
        # An application ping on demand comes back as a Pong with its round trip.
        ping_id = await follower.client.ping()
        await follower.until(lambda: any(isinstance(i, Pong) for i in follower.items))
        [pong] = [i for i in follower.items if isinstance(i, Pong)]
        assert pong.id == ping_id
        assert pong.rtt is not None and 0 <= pong.rtt < TIMEOUT


async def test_a_restarted_service_is_resumed_and_nothing_is_missed(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings()
    before = await xadd(redis, settings.stream, *NIGHT_2024[:30])
    async with (
        run_service(settings) as first,
        follow(first.ws, ["national", "declarations"]) as follower,
    ):
        await follower.until(lambda: follower.client.seq("national") == before[-1])
        during = await xadd(redis, settings.stream, *NIGHT_2024[30:40])
        await follower.until(lambda: follower.client.seq("declarations") == during[-1])
        port = first.port
        await first.stop()
        # The service closed with 1012 and is down: the night goes on without it.
        await follower.until(lambda: follower.statuses()[-1].status == "reconnecting")
        dropped = next(s for s in follower.statuses() if s.status == "reconnecting")
        assert dropped.detail.startswith("connection closed (1012")
        while_down = await xadd(redis, settings.stream, *NIGHT_2024[40:80])
        async with run_service(settings.model_copy(update={"port": port})) as second:
            await follower.until(lambda: follower.client.seq("national") == while_down[-1])
            await follower.until(lambda: follower.statuses()[-1].status == "resynced")
            resynced = follower.statuses()[-1]
            # The log is resumed (a restarted instance keeps its latest declarations);
            # national, which changed while the service was down, may come as a snapshot.
            assert "resumed declarations" in resynced.detail
            after = await xadd(redis, settings.stream, *NIGHT_2024[80:90])
            await follower.until(lambda: follower.client.seq("declarations") == after[-1])
            assert (await rest_national(second)) == {
                "seq": after[-1],
                "data": follower.client.state("national"),
            }
    # Every declaration exactly once, in order, across the restart: none missed.
    declared = (before + during + while_down + after)[1:]
    assert seen_declarations(follower) == declared
    assert len(follower.updates("declarations", "resumed")) == 1
    assert len(follower.updates("declarations", "snapshot")) == 1


async def test_a_slow_client_closed_with_1013_resumes_and_misses_nothing(
    make_settings: Callable[..., Settings], redis: aioredis.Redis
) -> None:
    settings = make_settings(queue_bytes=2000, history=5000)
    async with run_service(settings) as running:
        seats = [f"constituency:{orjson.loads(line)['constituency']}" for line in DECLARATION_LINES]
        channels = ["declarations", "national", *seats]
        async with follow(running.ws, channels) as follower:
            await follower.until(lambda: any(s.status == "live" for s in follower.statuses()))
            # Stop reading: the socket's buffers fill, then the server's queue, then 1013.
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
            closed = [s for s in follower.statuses() if s.status == "reconnecting"]
            assert closed and "1013" in closed[0].detail
            assert seen_declarations(follower) == ids[1:]
            assert follower.updates("declarations", "resumed")
            rest = await rest_national(running)
            assert rest["data"] == follower.client.state("national")


async def test_a_stream_begun_again_resets_the_client(
    service: RunningService, redis: aioredis.Redis
) -> None:
    stream = service.settings.stream
    first = await xadd(redis, stream, *NIGHT_2024[:5])
    async with follow(service.ws, ["national", "declarations"]) as follower:
        await follower.until(lambda: follower.client.seq("national") == first[-1])
        assert follower.client.epoch == first[0]
        await redis.delete(stream)
        again = await xadd(redis, stream, *NIGHT_2024[:2])
        await follower.until(lambda: follower.client.seq("national") == again[-1])
        await follower.until(lambda: follower.statuses()[-1].status == "resynced")
        assert f"new epoch {again[0]}" in follower.statuses()[-1].detail
        assert follower.client.epoch == again[0]
        national = follower.client.state("national")
        assert national is not None and national["declared"] == 1
        assert national == (await rest_national(service))["data"]
        log = follower.client.state("declarations")
        assert log is not None and [e["seq"] for e in log["recent"]] == again[1:]


async def test_channels_come_and_go_while_running_and_errors_are_items(
    service: RunningService, redis: aioredis.Redis
) -> None:
    async with follow(service.ws, ["national", "region:atlantis"]) as follower:
        await follower.until(lambda: any(s.status == "live" for s in follower.statuses()))
        [error] = [i for i in follower.items if isinstance(i, ErrorMessage)]
        assert error.code == "unknown_channel"
        assert "region:atlantis" in error.text
        assert follower.client.channels == ("national",)
        await follower.client.subscribe(["constituency:E14001425"])
        await follower.until(lambda: follower.client.state("constituency:E14001425") is not None)
        await follower.client.unsubscribe(["national"])
        [entry] = await xadd(redis, service.settings.stream, DECLARATION_LINES[0])
        seat = orjson.loads(DECLARATION_LINES[0])["constituency"]
        await follower.client.subscribe([f"constituency:{seat}"])
        await follower.until(lambda: follower.client.seq(f"constituency:{seat}") == entry)
        assert follower.client.state("national") is None
        assert not follower.updates("national", "delta")
        assert [s.status for s in follower.statuses()] == ["connecting", "live"]
