"""Fuzzing client frames through the hub: nothing escapes, every answer is a proper message."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service import data
from service.core.election import load_election
from service.core.tally import Tally
from service.fanout.hub import Hub
from service.fanout.subscriber import Subscriber
from tests.service.hubs import RecordingSink, attach

ANSWERS = {"error", "pong", "snapshot", "resumed", "hello"}


@cache
def tally() -> Tally:
    return Tally(load_election(data.election_path("uk-2024")))


def hub_and_subscriber() -> tuple[Hub, Subscriber, RecordingSink]:
    hub = Hub(tally(), rate_limit=1e9, max_channels=50)
    sink = RecordingSink(at_once=False)
    return hub, attach(hub, sink), sink


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
channel_names = st.sampled_from(
    ["national", "declarations", "constituency:E14001425", "region:london", "nation:wales"]
) | st.text(max_size=20)
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping"]) | st.text(max_size=10)},
    optional={
        "channels": st.lists(channel_names, max_size=6) | json_values,
        "since": st.dictionaries(channel_names, st.text(max_size=20) | json_values, max_size=3)
        | json_values,
        "epoch": st.text(max_size=20) | json_values,
        "id": json_values,
    },
)
frames = (
    st.text(max_size=200)
    | json_values.map(lambda v: orjson.dumps(v).decode())
    | requests.map(lambda r: orjson.dumps(r).decode())
)


@settings(max_examples=500, deadline=None)
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frames_get_proper_answers_and_the_connection_lives(batch: list[str]) -> None:
    hub, subscriber, sink = hub_and_subscriber()
    for frame in batch:
        hub.handle(subscriber, frame)
    assert sink.closed is None
    for message in subscriber.take():
        decoded: dict[str, Any] = orjson.loads(message.payload)
        assert decoded["type"] in ANSWERS
        if decoded["type"] == "error":
            assert decoded["code"] and decoded["message"]
    assert len(subscriber.channels) <= hub.max_channels
    hub.disconnect(subscriber)
    assert not hub.subscribers
    assert hub.subscription_counts() == {}
