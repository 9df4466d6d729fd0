"""Properties of the tally over random event sequences (hypothesis).

After every event: the kept states equal a recomputation from the seat records; each change's
merge patch takes the channel's previous state to its new one; the totals add up; nothing holds
null. A repeated event changes nothing. Checked on small generated elections and on the real
2024 definition, with real declarations mixed with corrections, flashes, retractions, status
changes, repeats and stale revisions.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import json_merge_patch
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.decoding import validate_event
from service.core.election import Election, parse_election
from service.core.events import (
    STATUSES,
    Declaration,
    ExitPoll,
    Flash,
    InvalidEvent,
    Post,
    Retraction,
    SeatEvent,
    StateOfParties,
    StatusChange,
)
from service.core.seq import ZERO, Seq
from service.core.tally import DECLARATIONS, LOG_CHANNELS, NATIONAL, Applied, Change, Tally
from tests.core.builders import bundled_declarations, bundled_election, walk

Document = dict[str, Any]

# The 2024 examples each recompute 650 seats after every event: fewer of them.
SMALL = settings(max_examples=300, deadline=None)
REAL = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAMES = ("Ana", "Ben", "Cy", "Dee")
MOST_VOTES = 30
"""A candidate's most votes in the small elections: ties are common."""
TIMES = ("2031-05-01T23:00:00+12:00", "2031-05-02T01:15:00+12:00")


@dataclass(frozen=True)
class Repeat:
    """Send again the event sent ``index`` events ago (modulo how many there have been)."""

    index: int


Step = Document | Repeat


# --- strategies --------------------------------------------------------------------------


@st.composite
def small_elections(draw: st.DrawFn) -> Election:
    parties = draw(
        st.lists(st.text("ABKMTUZ", min_size=1, max_size=3), min_size=2, max_size=4, unique=True)
    )
    seats = []
    for number in range(draw(st.integers(1, 6))):
        seats.append(
            {
                "id": f"C{number}",
                "name": f"Seat {number}",
                "region": draw(st.sampled_from(["Nord", "Süd", "Île Est"])),
                "nation": draw(st.sampled_from(["Upland", "Lowland"])),
                "electorate": draw(_electorate()),
                "previous": draw(st.sampled_from(parties)),
            }
        )
    definition: Document = {
        "id": "generated",
        "name": "A generated election",
        "parties": {code: {"name": f"Party {code}"} for code in parties},
        "constituencies": seats,
    }
    majority = draw(st.none() | st.integers(1, len(seats)))
    if majority is not None:
        definition["majority"] = majority
    non_voting = draw(st.none() | st.integers(0, len(seats) - 1))
    if non_voting is not None:
        definition["non_voting_seats"] = non_voting
    abstaining = draw(st.none() | st.lists(st.sampled_from(parties), unique=True, max_size=2))
    if abstaining is not None:
        definition["abstaining_parties"] = abstaining
    return parse_election(definition)


def _electorate() -> st.SearchStrategy[int]:
    """0 (not known) or enough for any count drawn here; test_one_result tests the rule that
    valid votes may not exceed it."""
    return st.just(0) | st.integers(4 * MOST_VOTES, 200)


def _revision() -> st.SearchStrategy[int | None]:
    return st.none() | st.integers(0, 5)


def _with(document: Document, **optional: Any) -> Document:
    """``document`` with the optional fields that are not None."""
    return document | {key: value for key, value in optional.items() if value is not None}


def _declaration(
    seat: str, candidates: list[tuple[str, str, int]], pick: int, **optional: Any
) -> Document:
    """A valid declaration: a tie at the top is settled by naming the ``pick``-th tied one."""
    top = max(votes for _, _, votes in candidates)
    tied = [(name, party) for name, party, votes in candidates if votes == top]
    document: Document = {
        "type": "declaration",
        "constituency": seat,
        "candidates": [{"name": n, "party": p, "votes": v} for n, p, v in candidates],
    }
    if len(tied) > 1:
        name, party = tied[pick % len(tied)]
        document["winner"] = {"name": name, "party": party}
    return _with(document, **optional)


@st.composite
def small_events(draw: st.DrawFn, election: Election) -> Document:
    seat = draw(st.sampled_from(sorted(election.constituencies)))
    party = st.sampled_from(sorted(election.parties))
    kind = draw(
        st.sampled_from(
            ["declaration", "declaration", "flash", "status", "retraction", "poll", "feed"]
        )
    )
    revision = draw(_revision())
    if kind == "declaration":
        people = draw(st.lists(st.tuples(st.sampled_from(NAMES), party), min_size=1, max_size=4))
        people = list(dict.fromkeys(people))  # a candidate is a name and a party, once
        candidates = [(n, p, draw(st.integers(0, MOST_VOTES))) for n, p in people]
        return _declaration(
            seat,
            candidates,
            draw(st.integers(0, 3)),
            revision=revision,
            declared_at=draw(st.none() | st.sampled_from(TIMES)),
            electorate=draw(st.none() | _electorate()),
        )
    if kind == "flash":
        winner = {"name": draw(st.sampled_from(NAMES)), "party": draw(party)}
        return _with({"type": "flash", "constituency": seat, "winner": winner}, revision=revision)
    if kind == "status":
        document = {
            "type": "status",
            "constituency": seat,
            "status": draw(st.sampled_from(STATUSES)),
        }
        return _with(document, revision=revision, note=draw(st.none() | st.just("Recount")))
    if kind == "retraction":
        document = {"type": "retraction", "constituency": seat}
        return _with(document, revision=revision, reason=draw(st.none() | st.just("error")))
    if kind == "feed":
        return draw(states_of_parties(election))
    # Each party at most its share of the seats: the projections never add up to more.
    share = election.total_seats // len(election.parties)
    seats = draw(st.dictionaries(party, st.integers(0, share), min_size=1))
    return _with(
        {"type": "exit_poll", "seats": seats},
        published_at=draw(st.none() | st.sampled_from(TIMES)),
    )


@st.composite
def states_of_parties(draw: st.DrawFn, election: Election) -> Document:
    """A feed's totals over some seats: possible figures, seldom our own."""
    covered = draw(st.lists(st.sampled_from(sorted(election.constituencies)), unique=True))
    party = st.none() | st.sampled_from(sorted(election.parties))
    figures: dict[str, list[int]] = {}
    for _ in covered:
        # Each seat is won by one party (or not yet), and lost by at most one other.
        winner, loser = draw(party), draw(party)
        if winner is None:
            continue
        figures.setdefault(winner, [0, 0, 0])[0] += 1
        if loser is not None and loser != winner:
            figures[winner][1] += 1
            figures.setdefault(loser, [0, 0, 0])[2] += 1
    parties = {
        code: dict(zip(("seats", "gains", "losses"), f, strict=True)) for code, f in figures.items()
    }
    return {
        "type": "state_of_parties",
        "source": "PA",
        "constituencies": covered,
        "parties": parties,
    }


@st.composite
def small_nights(draw: st.DrawFn) -> tuple[Election, list[Step]]:
    election = draw(small_elections())
    events = small_events(election)
    repeats = st.integers(0, 50).map(Repeat)
    steps = draw(st.lists(st.one_of(events, events, events, repeats), min_size=4, max_size=40))
    return election, steps


@st.composite
def real_nights(draw: st.DrawFn) -> list[Step]:
    """Real 2024 declarations for a few seats, mixed with the night's other kinds of event."""
    declarations = _real_declarations()
    chosen = draw(st.lists(st.sampled_from(declarations), min_size=1, max_size=8))
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 40))):
        real = draw(st.sampled_from(chosen))
        seat = real["constituency"]
        revision = draw(_revision())
        kind = draw(
            st.sampled_from(
                ["declaration", "correction", "flash", "retraction", "status", "repeat", "poll"]
            )
        )
        people = [(c["name"], c["party"], c["votes"]) for c in real["candidates"]]
        if kind == "declaration":
            steps.append(_with(real, revision=revision))
        elif kind == "correction":
            moves = draw(st.lists(st.integers(-80, 80), min_size=len(people), max_size=len(people)))
            moved = [(n, p, max(0, v + m)) for (n, p, v), m in zip(people, moves, strict=True)]
            steps.append(
                _declaration(
                    seat,
                    moved,
                    draw(st.integers(0, 3)),
                    revision=revision,
                    declared_at=real["declared_at"],
                    electorate=real["electorate"],
                )
            )
        elif kind == "flash":
            name, party, _ = draw(st.sampled_from(people[:2]))
            winner = {"name": name, "party": party}
            steps.append(
                _with({"type": "flash", "constituency": seat, "winner": winner}, revision=revision)
            )
        elif kind == "retraction":
            steps.append(_with({"type": "retraction", "constituency": seat}, revision=revision))
        elif kind == "status":
            value = draw(st.sampled_from(STATUSES))
            steps.append(
                _with({"type": "status", "constituency": seat, "status": value}, revision=revision)
            )
        elif kind == "repeat":
            steps.append(Repeat(draw(st.integers(0, 50))))
        else:
            seats = draw(
                st.dictionaries(st.sampled_from(["LAB", "CON", "LD"]), st.integers(0, 216))
            )
            steps.append({"type": "exit_poll", "seats": seats or {"OTH": 650}})
    return steps


_REAL: list[Document] = []


def _real_declarations() -> list[Document]:
    if not _REAL:
        _REAL.extend(bundled_declarations("uk-2024"))
    return _REAL


# --- the checks --------------------------------------------------------------------------


class Checked:
    """A tally fed one event at a time, with every property checked after each event."""

    def __init__(self, election: Election) -> None:
        self.election = election
        self.tally = Tally(election)
        self._ms = 1_000
        # What a client that took every snapshot at the start and applied every patch holds.
        self.client = self._copy(self._states())
        self.last: dict[str, Seq] = {}
        self.sent: list[Document] = []
        self.emitted: list[tuple[Change, Any]] = []
        self.revisions: dict[str, int] = {}
        self.corrections: dict[str, int] = {}

    def _states(self) -> dict[str, Any]:
        return {ch: self.tally.state(ch) for ch in self.tally.channels() if ch not in LOG_CHANNELS}

    @staticmethod
    def _copy(value: Any) -> Any:
        return orjson.loads(orjson.dumps(value))

    def _apply(self, document: Document) -> Applied | None:
        """Apply as the next entry; None when refused (and then nothing may have changed)."""
        self._ms += 1
        seq = Seq(self._ms, 0)
        event = validate_event(document, self.election, str(seq))
        assert not isinstance(event, Post)  # the machine sends no posts
        seqs = {channel: self.tally.channel_seq(channel) for channel in self.tally.channels()}
        seat = None if isinstance(event, ExitPoll | StateOfParties) else event.constituency
        before = None if seat is None else self.client[f"constituency:{seat}"]
        try:
            applied = self.tally.apply(seq, event)
        except InvalidEvent:
            assert isinstance(event, StatusChange)
            assert before is not None and before["status"] in ("declared", "flash")
            assert self._states() == self.client
            assert seqs == {ch: self.tally.channel_seq(ch) for ch in self.tally.channels()}
            return None
        for change in applied.changes:
            self._check_change(change, seq)
        if not isinstance(event, ExitPoll | StateOfParties):
            assert before is not None
            self._check_seat(event, before, applied)
        return applied

    def _check_seat(self, event: SeatEvent, before: Document, applied: Applied) -> None:
        """What the event did to its seat, and the seat's revision, against a small model."""
        seat = event.constituency
        known = self.revisions.get(seat)
        if event.revision is not None and known is not None and event.revision <= known:
            assert applied.stale
            return
        if isinstance(event, Flash) and before["status"] == "declared":
            assert applied.stale  # a flash never overwrites a declaration
            return
        assert not applied.stale
        if event.revision is not None:
            self.revisions[seat] = event.revision
        after = self.tally.state(f"constituency:{seat}")
        if isinstance(event, Declaration):
            winner = {"name": event.winner.name, "party": event.winner.party}
            assert (after["status"], after["winner"]) == ("declared", winner)
            assert [c["votes"] for c in after["candidates"]] == [c.votes for c in event.candidates]
            if before["status"] == "declared" and applied.changes:
                self.corrections[seat] = self.corrections.get(seat, 0) + 1
            assert after["corrections"] == self.corrections.get(seat, 0)
        elif isinstance(event, Flash):
            winner = {"name": event.winner_name, "party": event.winner_party}
            assert (after["status"], after["winner"]) == ("flash", winner)
            assert after["corrections"] == self.corrections.get(seat, 0)
        elif isinstance(event, Retraction):
            assert after["status"] == "awaiting"
            assert not {"winner", "result", "candidates", "majority"} & set(after)
        else:
            assert after["status"] == event.status
        kinds = [c.event["kind"] for c in applied.changes if c.event is not None]
        expected = {
            Declaration: "correction" if before["status"] == "declared" else "declaration",
            Flash: "flash",
            Retraction: "retraction" if "winner" in before else None,
            StatusChange: None,
        }[type(event)]
        assert kinds == ([expected] if expected and applied.changes else [])

    def _check_change(self, change: Change, seq: Seq) -> None:
        assert change.seq == seq
        assert change.prev == self.last.get(change.channel, ZERO)
        self.last[change.channel] = seq
        assert self.tally.channel_seq(change.channel) == seq
        if change.channel == DECLARATIONS:
            assert change.event is not None and change.patch is None
            seat = change.event["constituency"]
            assert seat == self.tally.state(f"constituency:{seat['id']}")
            self.emitted.append((change, self._copy(change.event)))
            return
        assert change.event is None and change.patch
        old = self.client[change.channel]
        new = json_merge_patch.merge(copy.deepcopy(old), change.patch)
        assert new == self.tally.state(change.channel)
        self.client[change.channel] = new
        self.emitted.append((change, self._copy(change.patch)))

    def send(self, step: Step) -> None:
        if isinstance(step, Repeat):
            if not self.sent:
                return
            document = self.sent[-1 - step.index % len(self.sent)]
        else:
            document = step
        self.sent.append(document)
        applied = self._apply(document)
        self.check_invariants()
        if applied is not None:
            self._check_repeat(document, applied)

    def _check_repeat(self, document: Document, first: Applied) -> None:
        """The same event again, as the next entry, changes nothing."""
        if document["type"] == "exit_poll" and "published_at" not in document:
            return  # its time is its entry's, so a resend is a newer poll
        again = self._apply(document)
        assert again is not None
        assert again.changes == ()
        revision = document.get("revision")
        if revision is None:
            assert again.stale == first.stale  # only a flash over a declaration is
            return
        assert again.stale
        if document["type"] == "declaration" and not first.stale:
            # The same figures under the next revision: a resend, not a correction.
            resent = self._apply(document | {"revision": revision + 1})
            assert resent == Applied()

    def check_invariants(self) -> None:
        tally = self.tally
        states = self._states()
        assert tally.recompute() == states
        assert self.client == states  # channels without a change did not change
        national = states[NATIONAL]
        parties = national["parties"]
        declared = national["declared"]
        assert sum(entry["seats"] for entry in parties.values()) == declared
        assert national["seats_to_declare"] == self.election.total_seats - declared
        assert sum(entry["net"] for entry in parties.values()) == 0
        assert sum(entry["gains"] for entry in parties.values()) == sum(
            entry["losses"] for entry in parties.values()
        )
        for prefix in ("region", "nation"):
            total: Counter[str] = Counter()
            area_declared = 0
            for channel, state in states.items():
                if channel.startswith(f"{prefix}:"):
                    area_declared += state["declared"]
                    for code, entry in state["parties"].items():
                        for key in ("seats", "gains", "losses", "net", "votes"):
                            total[f"{code} {key}"] += entry[key]
            assert area_declared == declared
            for code, entry in parties.items():
                for key in ("seats", "gains", "losses", "net", "votes"):
                    assert total[f"{code} {key}"] == entry[key], (prefix, code, key)
        if declared:
            leader = national["leader"]
            assert leader == min(
                parties, key=lambda p: (-parties[p]["seats"], -parties[p]["votes"], p)
            )
            assert ("majority_party" in national) == (
                parties[leader]["seats"] >= national["majority"]
            )
        else:
            assert not {"leader", "seats_to_majority", "majority_party"} & set(national)
        self._check_majorities(national)

    def _check_majorities(self, national: Document) -> None:
        """The working majority by its formula; the overall majority on the majority party."""
        election, parties = self.election, national["parties"]
        if election.has_working_majority:
            abstaining = sum(parties[code]["seats"] for code in election.abstaining_parties or ())
            voting = election.total_seats - (election.non_voting_seats or 0) - abstaining
            working = voting // 2 + 1
            assert national["working_majority"] == working
            for entry in parties.values():
                assert entry["seats_to_working_majority"] == max(0, working - entry["seats"])
        else:
            assert "working_majority" not in national
            assert not any("seats_to_working_majority" in entry for entry in parties.values())
        leading = national.get("majority_party")
        for code, entry in parties.items():
            if code == leading:
                assert entry["overall_majority"] == 2 * entry["seats"] - election.total_seats
            else:
                assert "overall_majority" not in entry

    def check_nothing_is_null_and_nothing_emitted_changed(self) -> None:
        nulls = [path for path, value in walk(self._states()) if value is None]
        recent = self.tally.state(DECLARATIONS)["recent"]
        nulls += [path for path, value in walk(recent) if value is None]
        assert nulls == []
        for change, as_emitted in self.emitted:
            assert (change.patch if change.event is None else change.event) == as_emitted

    def fast_forward(self, documents: list[Document]) -> None:
        """Apply ``documents`` unchecked, then check from there on (a client joining late)."""
        for document in documents:
            self._ms += 1
            seq = Seq(self._ms, 0)
            self.tally.apply(seq, validate_event(document, self.election, str(seq)))
        self.client = self._copy(self._states())
        self.last = {channel: self.tally.channel_seq(channel) for channel in self.tally.channels()}
        self.sent += documents


def _run(election: Election, steps: list[Step]) -> Checked:
    checked = Checked(election)
    checked.check_invariants()
    for step in steps:
        checked.send(step)
    checked.check_nothing_is_null_and_nothing_emitted_changed()
    return checked


@SMALL
@given(small_nights())
def test_every_property_holds_after_every_event_on_a_small_election(
    night: tuple[Election, list[Step]],
) -> None:
    _run(*night)


@REAL
@given(real_nights())
def test_every_property_holds_after_every_event_on_the_2024_definition(steps: list[Step]) -> None:
    _run(bundled_election("uk-2024"), steps)


@st.composite
def later_steps(draw: st.DrawFn) -> list[Step]:
    """Corrections, retractions, flashes, recounts and repeats of real 2024 seats."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 10))):
        real = draw(st.sampled_from(_real_declarations()))
        seat = real["constituency"]
        people = [(c["name"], c["party"], c["votes"]) for c in real["candidates"]]
        kind = draw(st.sampled_from(["correction", "retraction", "flash", "status", "repeat"]))
        if kind == "correction":
            moves = draw(
                st.lists(st.integers(-400, 400), min_size=len(people), max_size=len(people))
            )
            moved = [(n, p, max(0, v + m)) for (n, p, v), m in zip(people, moves, strict=True)]
            steps.append(_declaration(seat, moved, draw(st.integers(0, 3))))
        elif kind == "retraction":
            steps.append({"type": "retraction", "constituency": seat})
        elif kind == "flash":
            name, party, _ = draw(st.sampled_from(people))
            winner = {"name": name, "party": party}
            steps.append({"type": "flash", "constituency": seat, "winner": winner})
        elif kind == "status":
            steps.append({"type": "status", "constituency": seat, "status": "recount"})
        else:
            steps.append(Repeat(draw(st.integers(0, 700))))
    return steps


@REAL
@given(st.integers(0, 650), later_steps())
def test_every_property_holds_part_way_through_the_real_2024_night(
    declared: int, steps: list[Step]
) -> None:
    checked = Checked(bundled_election("uk-2024"))
    checked.fast_forward(_real_declarations()[:declared])

    for step in steps:
        checked.send(step)

    checked.check_nothing_is_null_and_nothing_emitted_changed()
