"""Rule 3 of the wire protocol as a property: whatever ``since`` a client resumes from, on
whichever instance, it is left with a gap-free chain that ends at the current state.

An instance here is a hub over a tally, fed the stream in batches exactly as the stream
reader feeds it (publish each entry's changes, flush after each batch; a rejected entry only
moves the tally's seq). Clients resume between batches, as requests arrive between reads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import json_merge_patch
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.decoding import validate_event
from service.core.election import Election
from service.core.events import InvalidEvent
from service.core.seq import Seq
from service.core.tally import DECLARATIONS, NATIONAL, Tally
from service.fanout.hub import RESUME_WAIT, Hub
from tests.core.test_properties import Document, Repeat, small_nights
from tests.service.hubs import RecordingSink, attach, flush, handle

FIRST_MS = 1_720_148_400_000
SPACING_MS = 10
"""Entry IDs are this far apart, so that made-up seqs can fall between them."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reference:
    """Every channel's seq and state after each entry, from a tally of its own."""

    seqs: list[Seq]
    documents: list[Document]
    election: Election
    after: list[dict[str, tuple[Seq, Any]]] = field(default_factory=list)
    initial: dict[str, tuple[Seq, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tally = Tally(self.election)
        self.initial = _capture(tally)
        for seq, document in zip(self.seqs, self.documents, strict=True):
            _apply(tally, seq, document)
            self.after.append(_capture(tally))

    def at(self, since: Seq) -> dict[str, tuple[Seq, Any]]:
        """Each channel's (last change, state) as of ``since``: the last entry at or before it."""
        applied = [index for index, seq in enumerate(self.seqs) if seq <= since]
        return self.after[applied[-1]] if applied else self.initial


def _capture(tally: Tally) -> dict[str, tuple[Seq, Any]]:
    return {c: (tally.channel_seq(c), copy.deepcopy(tally.state(c))) for c in tally.channels()}


def _apply(tally: Tally, seq: Seq, document: Document) -> list[Any]:
    """Apply as the stream reader does: a rejected entry only moves the tally's seq."""
    try:
        event = validate_event(document, tally.election, str(seq))
        return list(tally.apply(seq, event).changes)
    except InvalidEvent:
        if seq > tally.seq:
            tally.skip(seq)
        return []


class Instance:
    def __init__(self, election: Election, seqs: list[Seq], documents: list[Document]) -> None:
        self.clock = Clock()
        self.tally = Tally(election)
        self.hub = Hub(self.tally, rate_limit=1e9, clock=self.clock)
        self.seqs = seqs
        self.documents = documents
        self.applied = 0

    def read(self, count: int) -> None:
        """One batch of up to ``count`` entries, then the flush that ends every batch."""
        for _ in range(count):
            if self.applied == len(self.seqs):
                break
            seq = self.seqs[self.applied]
            if self.applied == 0:
                self.hub.adopt_epoch(seq)
            self.hub.publish(_apply(self.tally, seq, self.documents[self.applied]))
            self.applied += 1
        flush(self.hub)


@dataclass
class Resumer:
    channel: str
    epoch: str
    since: str
    recorder: RecordingSink
    held: tuple[Seq, Any] | None
    """The (seq, state) a client resuming from ``since`` holds: the reference's at it."""


def _documents(steps: list[Any]) -> list[Document]:
    documents: list[Document] = []
    for step in steps:
        if isinstance(step, Repeat):
            if documents:
                documents.append(documents[-1 - step.index % len(documents)])
        else:
            documents.append(step)
    return documents


@st.composite
def nights_and_resumes(draw: st.DrawFn) -> tuple[Any, ...]:
    election, steps = draw(small_nights())
    documents = _documents(steps)
    seqs = [Seq(FIRST_MS + SPACING_MS * i, i % 2) for i in range(len(documents))]
    sent = ["0-0", *(str(seq) for seq in seqs)]
    last_ms = FIRST_MS + SPACING_MS * len(documents)
    made_up = st.builds(
        lambda ms, n: f"{ms}-{n}", st.integers(FIRST_MS - 30, last_ms + 30), st.integers(0, 3)
    )
    garbage = st.sampled_from(["", "latest", "12", "-1-0", "1720148400000-x", "99999999999999-0"])
    channels = [NATIONAL, DECLARATIONS, *(f"constituency:{c}" for c in election.constituencies)]
    channels += sorted({f"region:{area.slug}" for area in election.regions.values()})
    batches = draw(st.lists(st.integers(1, 6), min_size=1, max_size=12))
    resumes = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(batches)),  # after how many batches the client resumes
                st.sampled_from(channels),
                st.sampled_from(["right", "right", "right", "0-0", "1-0", "nonsense"]),
                st.sampled_from(sent) | made_up | garbage,
            ),
            min_size=1,
            max_size=6,
        )
    )
    return election, documents, seqs, batches, resumes


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(nights_and_resumes())
def test_every_resume_leaves_a_gap_free_chain_ending_at_the_current_state(
    case: tuple[Any, ...],
) -> None:
    election, documents, seqs, batches, resumes = case
    reference = Reference(seqs, documents, election)
    instance = Instance(election, seqs, documents)
    epoch = str(seqs[0]) if seqs else "0-0"
    entries = {"0-0", *(str(seq) for seq in seqs)}
    resumers: list[Resumer] = []

    def resume(channel: str, epoch_choice: str, since: str) -> None:
        client_epoch = epoch if epoch_choice == "right" else epoch_choice
        recorder = RecordingSink(closable=False)
        subscriber = attach(instance.hub, recorder)
        recorder.log.clear()  # the hello
        try:
            held = reference.at(Seq.parse(since))[channel]
        except ValueError:
            held = None
        request = {"op": "subscribe", "channels": [channel], "since": {channel: since}}
        handle(instance.hub, subscriber, orjson.dumps({**request, "epoch": client_epoch}))
        resumers.append(Resumer(channel, client_epoch, since, recorder, held))
        applied_here = instance.tally.seq
        answers = [m for m in recorder.received() if m["type"] in ("resumed", "snapshot")]
        if client_epoch == str(instance.hub.epoch) and since in entries:
            since_seq = Seq.parse(since)
            if since_seq <= applied_here:
                # Applied here, of this run, all history held: it must resume, at once.
                assert held is not None
                assert answers[0] == {
                    "type": "resumed",
                    "channel": channel,
                    "seq": str(held[0]),
                }

    for done, batch in enumerate([*batches, 0]):
        for after, channel, epoch_choice, since in resumes:
            if after == done:
                resume(channel, epoch_choice, since)
        instance.read(batch)
    while instance.applied < len(seqs):
        instance.read(6)
    instance.clock.now += RESUME_WAIT + 1
    for subscriber in instance.hub.expire_waiting():
        subscriber.sink.wake()

    for resumer in resumers:
        _check(resumer, instance, epoch, entries)


def _check(resumer: Resumer, instance: Instance, epoch: str, entries: set[str]) -> None:
    channel = resumer.channel
    messages = resumer.recorder.received()
    assert messages, f"{resumer}: never answered"
    first = messages[0]
    assert first["type"] in ("resumed", "snapshot"), first
    if first["type"] == "resumed":
        assert resumer.epoch in (epoch, "0-0"), "resumed with another run's seq"
        assert resumer.since in entries, "resumed from a seq that is no entry"
        assert resumer.held is not None
        assert first["seq"] == str(resumer.held[0]), "resumed at the wrong place"
        seq, state = str(resumer.held[0]), copy.deepcopy(resumer.held[1])
    else:
        seq, state = first["seq"], first["data"]
    for message in messages[1:]:
        assert message["channel"] == channel
        assert message["type"] in ("delta", "event"), message
        assert message["prev"] == seq, f"gap on {channel}: {message['prev']} after {seq}"
        seq = message["seq"]
        if message["type"] == "delta":
            state = json_merge_patch.merge(state, message["patch"])
    assert seq == str(instance.tally.channel_seq(channel))
    if channel != DECLARATIONS:
        assert state == instance.hub.public_state(channel)
