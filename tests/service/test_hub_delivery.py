"""How the hub hands a batch's changes to connections: at once, or queued and written together."""

from __future__ import annotations

from typing import Any

import orjson

from service import data
from service.core.decoding import decode_event
from service.core.election import load_election
from service.core.seq import Seq
from service.core.tally import NATIONAL, Tally
from service.fanout.hub import Hub
from service.fanout.subscriber import Subscriber
from tests.service.conftest import NIGHT_2024
from tests.service.hubs import RecordingSink, attach, flush, handle

START_MS = 1_720_130_400_000


class Night:
    """A hub over a fresh tally, fed the 2024 night one entry at a time."""

    def __init__(self) -> None:
        election = load_election(data.election_path("uk-2024"))
        self.tally = Tally(election)
        self.hub = Hub(self.tally, rate_limit=1e9)
        self.election = election
        self.next = 0

    def seq(self, index: int) -> Seq:
        return Seq(START_MS + 1000 * index, 0)

    def apply(self, count: int = 1) -> None:
        """Apply and publish ``count`` entries, as one batch (flushed by the caller)."""
        for _ in range(count):
            seq = self.seq(self.next)
            event = decode_event(NIGHT_2024[self.next], self.election, str(seq))
            self.hub.publish(self.tally.apply(seq, event).changes)
            self.next += 1

    def client(self, *channels: str, **request: Any) -> tuple[Subscriber, RecordingSink]:
        sink = RecordingSink(closable=False)
        subscriber = attach(self.hub, sink)
        handle(
            self.hub,
            subscriber,
            orjson.dumps({"op": "subscribe", "channels": list(channels), **request}),
        )
        sink.log.clear()
        return subscriber, sink


def test_a_lone_change_goes_at_once_unless_another_of_the_clients_channels_changed() -> None:
    night = Night()
    night.apply()
    _, alone = night.client(NATIONAL)
    quiet_seat = f"constituency:{orjson.loads(NIGHT_2024[-1])['constituency']}"
    _, with_quiet_seat = night.client(NATIONAL, quiet_seat)
    _, both = night.client(NATIONAL, "declarations")
    night.apply()
    flush(night.hub)
    assert [m["type"] for m in alone.at_once] == ["delta"]
    assert alone.writes == []
    # Its other channel did not change in this batch: nothing to wait for.
    assert [m["channel"] for m in with_quiet_seat.at_once] == [NATIONAL]
    assert with_quiet_seat.writes == []
    # Both its channels changed (national, declarations): one write with the two.
    assert both.at_once == []
    assert [[m["channel"] for m in write] for write in both.writes] == [[NATIONAL, "declarations"]]


def test_several_changes_on_a_channel_in_one_batch_are_written_together() -> None:
    night = Night()
    night.apply()
    _, sink = night.client(NATIONAL)
    night.apply(3)
    flush(night.hub)
    assert sink.at_once == []
    assert len(sink.writes) == 1
    deltas = sink.writes[0]
    assert [m["prev"] for m in deltas[1:]] == [m["seq"] for m in deltas[:-1]]


def test_a_request_after_a_publish_is_answered_after_the_published_change() -> None:
    """Published but not yet flushed, then a subscribe: the snapshot must come after the
    delta it already includes, or the client would apply that delta twice."""
    night = Night()
    night.apply()
    subscriber, sink = night.client(NATIONAL)
    night.apply()
    handle(night.hub, subscriber, orjson.dumps({"op": "subscribe", "channels": ["declarations"]}))
    flush(night.hub)
    received = sink.received()
    assert [(m["type"], m["channel"]) for m in received] == [
        ("delta", NATIONAL),
        ("snapshot", "declarations"),
    ]


def test_a_resumer_ahead_of_this_instance_is_answered_once_its_seq_is_applied() -> None:
    night = Night()
    night.apply()
    # Resuming from an entry this instance has not read yet (the client came from a faster
    # instance).
    since = night.seq(1)
    _, sink = night.client(NATIONAL, epoch=str(night.hub.epoch), since={NATIONAL: str(since)})
    assert sink.received() == []  # nothing yet: this instance has not applied ``since``
    night.apply(2)
    flush(night.hub)
    received = sink.received()
    # Resumed at the channel's last change at or before ``since``, then every change after.
    assert [(m["type"], m["seq"]) for m in received] == [
        ("resumed", str(night.seq(1))),
        ("delta", str(night.seq(2))),
    ]
    assert received[1]["prev"] == str(night.seq(1))
    night.apply()
    flush(night.hub)
    delta = sink.received()[-1]
    assert delta["type"] == "delta"
    assert delta["prev"] == str(night.seq(2))


def test_a_since_that_is_no_entry_read_here_gets_a_snapshot_once_passed() -> None:
    night = Night()
    night.apply()
    # Made up, or an entry a failover lost: between two entries this instance reads.
    since = Seq(night.seq(0).ms + 1, 0)
    _, sink = night.client(NATIONAL, epoch=str(night.hub.epoch), since={NATIONAL: str(since)})
    assert sink.received() == []
    night.apply(2)
    flush(night.hub)
    received = sink.received()
    assert [(m["type"], m["seq"]) for m in received] == [("snapshot", str(night.seq(2)))]
    night.apply()
    flush(night.hub)
    delta = sink.received()[-1]
    assert (delta["type"], delta["prev"]) == ("delta", str(night.seq(2)))
