"""Fuzzing the way in: arbitrary bytes, arbitrary JSON and mutated real events.

Whatever arrives, decoding raises nothing but InvalidEvent (with a one-line reason naming the
entry), and an event the tally refuses changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.decoding import decode_event
from service.core.events import InvalidEvent
from service.core.seq import Seq
from service.core.tally import Tally
from tests.core.builders import bundled_declarations, bundled_election, tiny_election

FUZZ = settings(max_examples=400, deadline=None)

# Integers as JSON can carry them (orjson reads beyond 64 bits as floats; see the events
# tests for the largest counts accepted).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

EVENT_KEYS = ("type", "constituency", "candidates", "winner", "status", "seats", "revision")


def _check_one(raw: bytes, tally: Tally) -> None:
    election = tally.election
    before = tally.recompute()  # built afresh: nothing in it is the tally's own
    try:
        event = decode_event(raw, election, "7-0")
    except InvalidEvent as exc:
        reason = str(exc)
        assert reason.startswith("entry 7-0: ")
        assert "\n" not in reason
        return
    try:
        applied = tally.apply(Seq(tally.seq.ms + 1, 0), event)
    except InvalidEvent as exc:
        assert "\n" not in str(exc)
        assert tally.recompute() == before
        return
    for change in applied.changes:  # whatever was accepted can be sent
        orjson.dumps(change.patch if change.event is None else change.event)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_with_a_reason_or_decoded(raw: bytes) -> None:
    _check_one(raw, Tally(tiny_election()))


@FUZZ
@given(st.fixed_dictionaries({}, optional={key: json_values for key in EVENT_KEYS}))
def test_arbitrary_json_objects_never_raise_anything_else(document: dict[str, Any]) -> None:
    _check_one(orjson.dumps(document), Tally(tiny_election()))


@FUZZ
@given(json_values)
def test_arbitrary_json_values_never_raise_anything_else(value: Any) -> None:
    _check_one(orjson.dumps(value), Tally(tiny_election()))


@st.composite
def mutated_declarations(draw: st.DrawFn) -> dict[str, Any]:
    """A real 2024 declaration with one thing broken, or changed."""
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(bundled_declarations()[:40])))
    mutation = draw(st.sampled_from(["drop", "replace", "candidate", "duplicate", "votes"]))
    if mutation == "drop":
        event.pop(draw(st.sampled_from(sorted(event))))
    elif mutation == "replace":
        event[draw(st.sampled_from(sorted(event)))] = draw(json_values)
    elif mutation == "candidate":
        index = draw(st.integers(0, len(event["candidates"]) - 1))
        field = draw(st.sampled_from(["name", "party", "votes"]))
        event["candidates"][index][field] = draw(json_values)
    elif mutation == "duplicate":
        event["candidates"].append(copy.deepcopy(event["candidates"][0]))
    else:
        index = draw(st.integers(0, len(event["candidates"]) - 1))
        event["candidates"][index]["votes"] = draw(st.integers(-10, 2**64 - 1))
    return event


@settings(max_examples=60, deadline=None)
@given(st.lists(mutated_declarations(), min_size=1, max_size=4))
def test_mutated_real_events_are_refused_cleanly_or_applied(events: list[dict[str, Any]]) -> None:
    tally = Tally(bundled_election())
    for event in events:
        _check_one(orjson.dumps(event), tally)
    assert tally.recompute() == {channel: tally.state(channel) for channel in tally.recompute()}


def test_counts_too_large_to_send_are_refused() -> None:
    """Votes that JSON readers take but cannot add up and send again (orjson: 64 bits)."""
    event = copy.deepcopy(bundled_declarations()[0])
    event["candidates"][0]["votes"] = 2**64 - 1
    tally = Tally(bundled_election())
    try:
        decode_event(orjson.dumps(event), tally.election, "1-0")
    except InvalidEvent as exc:
        assert "candidate 1" in str(exc)
    else:
        raise AssertionError("a count of 2**64 - 1 votes was accepted")
