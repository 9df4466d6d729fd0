"""Decoding and validating stream events against the election definition.

Every rule that can be checked from the event and the definition alone lives here; rules that
depend on a seat's current state (a status for a declared seat, stale revisions) live in the
tally.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from service.core.election import Election
from service.core.events import (
    CANDIDATES_MAX,
    FIGURES,
    MAX_VOTES,
    POST_BODY_MAX,
    POST_ID_MAX,
    POST_NAME_MAX,
    POST_SEATS_MAX,
    POST_TITLE_MAX,
    STATUSES,
    TEXT_MAX,
    Candidate,
    Checker,
    Declaration,
    Event,
    ExitPoll,
    Flash,
    InvalidEvent,
    PartyFigures,
    Post,
    Retraction,
    StateOfParties,
    StatusChange,
    is_int,
    kind_of,
)
from service.core.identity import candidate_key
from service.core.text import (
    read_line,
    read_name,
    read_optional_line,
    read_optional_plain_text,
    read_plain_text,
)


def decode_event(raw: bytes | str, election: Election, entry: str = "?") -> Event:
    """Decode the ``event`` field of stream entry ``entry``.

    Returns a validated event; raises InvalidEvent with a reason such as
    ``entry 1720148400000-0: candidate 3 has negative votes``.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"entry {entry}: event is not valid JSON ({exc})") from None
    return validate_event(document, election, entry)


def validate_event(document: Any, election: Election, entry: str = "?") -> Event:
    """Validate an already decoded event; see decode_event."""
    check = Checker(election, entry)
    if not isinstance(document, dict):
        raise check.fail(f"event must be a JSON object, not {kind_of(document)}")
    kind = document.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        known = ", ".join(sorted(_DECODERS))
        raise check.fail(f"unknown event type {kind!r} (expected one of {known})")
    return decoder(check, document)


def _declaration(check: Checker, document: dict[str, Any]) -> Declaration:
    seat = check.constituency(document)
    raw = document.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise check.fail("'candidates' must be a non-empty list of {name, party, votes}")
    if len(raw) > CANDIDATES_MAX:
        raise check.fail(f"{len(raw):,} candidates, over {CANDIDATES_MAX:,}")
    parties = check.election.parties
    # Each candidate under the key that says who it is (identity.candidate_key); and in
    # the feed's order, with the votes and key to rank it by.
    listed: dict[tuple[str, str], Candidate] = {}
    ranking: list[tuple[int, tuple[str, str], Candidate]] = []
    total = 0
    for number, entry in enumerate(raw, start=1):
        # Nearly every candidate is plainly valid: test that in one go, and go through the
        # checks one by one (for the reason) only when it fails.
        if type(entry) is dict:
            name, party, votes = entry.get("name"), entry.get("party"), entry.get("votes")
            known = parties.get(party) if type(party) is str else None
            if (
                known is not None
                and type(name) is str
                and type(votes) is int
                and 0 <= votes <= MAX_VOTES
                and name.strip()
                and len(name) <= TEXT_MAX
                and name.isprintable()
                and known.code.strip()
            ):
                # The definition's own string: the tally's many lookups by party code then
                # match by identity.
                party = known.code
            else:
                name, party, votes = _candidate(check, number, entry)
        else:
            name, party, votes = _candidate(check, number, entry)
        key = candidate_key(name, party)
        if key in listed:
            raise check.fail(_listed_twice(number, name, party, ranking, key))
        candidate = listed[key] = Candidate(name, party, votes)
        ranking.append((-votes, key, candidate))
        total += votes
    if total > MAX_VOTES:
        raise check.fail(f"the candidates' votes add up to {total:,}, over {MAX_VOTES:,}")
    electorate = check.optional_int(document, "electorate")
    _check_plausible(check, seat, total, electorate)
    # One order however the feed listed them: by votes, then (for equal votes) by who they
    # are, so that a resend listing tied candidates the other way round is the same result.
    # The keys are unique, so the candidates themselves are never compared.
    ranking.sort()
    ranked = tuple([candidate for _, _, candidate in ranking])
    tied = len(ranked) > 1 and ranked[1].votes == ranked[0].votes
    named = document.get("winner")
    if named is None:
        if tied:
            top = [c for c in ranked if c.votes == ranked[0].votes]
            names = " and ".join(f"{c.name} ({c.party})" for c in top)
            raise check.fail(f"tie on {ranked[0].votes} votes between {names}: name the 'winner'")
        winner = ranked[0]
    else:
        if not isinstance(named, dict):
            raise check.fail("'winner' must be an object {name, party}")
        name, party = read_name(check, named, "winner: "), check.party(named, "winner: ")
        match = listed.get(candidate_key(name, party))
        if match is None or match.votes != ranked[0].votes:
            raise check.fail(f"winner {name} ({party}) is not among the top-polling candidates")
        winner = match
        # The elected candidate leads the table even when the lot broke a tie.
        ranked = (winner, *(c for c in ranked if c is not winner))
    return Declaration(
        constituency=seat,
        candidates=ranked,
        winner=winner,
        declared_at=check.timestamp(document, "declared_at"),
        electorate=electorate,
        revision=check.optional_int(document, "revision"),
    )


def _listed_twice(
    number: int,
    name: str,
    party: str,
    earlier: list[tuple[int, tuple[str, str], Candidate]],
    key: tuple[str, str],
) -> str:
    first, first_name = next((n, c.name) for n, (_, k, c) in enumerate(earlier, 1) if k == key)
    reason = f"candidate {number} ({name}, {party}) is listed twice, as candidate {first}"
    if first_name != name:
        reason += " (names are compared ignoring case, spacing and Unicode form)"
    return reason


def _check_plausible(check: Checker, seat: str, valid: int, electorate: int | None) -> None:
    """Refuse more valid votes than the seat has electors: the event's electorate, else the
    definition's. An electorate of 0 is not known (no turnout is shown): the event's is then
    checked against the definition's, and a definition's 0 is not checked."""
    if not electorate:
        electorate, whose = check.election.constituencies[seat].electorate, "the definition's"
    else:
        whose = "the event's"
    if electorate and valid > electorate:
        name = check.election.constituencies[seat].name
        raise check.fail(
            f"{valid:,} valid votes in {name} ({seat}) are more than its electorate of "
            f"{electorate:,} ({whose})"
        )


def _candidate(check: Checker, number: int, entry: object) -> tuple[str, str, int]:
    """A candidate's name, party and votes, checked one by one; raises with the reason."""
    if not isinstance(entry, dict):
        raise check.fail(f"candidate {number} must be an object with name, party and votes")
    where = f"candidate {number}: "
    name = read_name(check, entry, where)
    party = check.party(entry, where)
    votes = entry.get("votes")
    if not is_int(votes):
        raise check.fail(f"candidate {number} has non-integer votes {votes!r}")
    if votes < 0:
        raise check.fail(f"candidate {number} has negative votes")
    if votes > MAX_VOTES:
        raise check.fail(f"candidate {number} has {votes:,} votes, over {MAX_VOTES:,}")
    return name, party, votes


def _flash(check: Checker, document: dict[str, Any]) -> Flash:
    seat = check.constituency(document)
    winner = document.get("winner")
    if not isinstance(winner, dict):
        raise check.fail("'winner' must be an object {name, party}")
    return Flash(
        constituency=seat,
        winner_name=read_name(check, winner, "winner: "),
        winner_party=check.party(winner, "winner: "),
        revision=check.optional_int(document, "revision"),
    )


def _status(check: Checker, document: dict[str, Any]) -> StatusChange:
    seat = check.constituency(document)
    status = document.get("status")
    if status not in STATUSES:
        raise check.fail(f"'status' must be one of {', '.join(STATUSES)}, not {status!r}")
    return StatusChange(
        constituency=seat,
        status=status,
        note=read_optional_line(check, document, "note"),
        revision=check.optional_int(document, "revision"),
    )


def _retraction(check: Checker, document: dict[str, Any]) -> Retraction:
    return Retraction(
        constituency=check.constituency(document),
        reason=read_optional_line(check, document, "reason"),
        revision=check.optional_int(document, "revision"),
    )


def _exit_poll(check: Checker, document: dict[str, Any]) -> ExitPoll:
    seats = document.get("seats")
    if not isinstance(seats, dict) or not seats:
        raise check.fail("'seats' must be a non-empty object of party code -> projected seats")
    projection: list[tuple[str, int]] = []
    given: dict[str, str] = {}
    for named, count in seats.items():
        party = check.election.party_code(named)
        if party is None:
            raise check.fail(f"seats: unknown party {named!r}")
        if party in given:
            raise check.fail(f"seats: {named!r} and {given[party]!r} are the same party, {party}")
        given[party] = named
        if not is_int(count) or count < 0:
            raise check.fail(f"seats: {named} must be a non-negative integer, not {count!r}")
        projection.append((party, count))
    total = sum(count for _, count in projection)
    if total > check.election.total_seats:
        raise check.fail(
            f"seats: the projections add up to {total:,}, more than the "
            f"{check.election.total_seats:,} seats there are"
        )
    return ExitPoll(
        seats=tuple(projection),
        published_at=check.timestamp(document, "published_at"),
        embargo_until=check.timestamp(document, "embargo_until"),
    )


def _state_of_parties(check: Checker, document: dict[str, Any]) -> StateOfParties:
    source = read_line(check, document, "source")
    listed = document.get("constituencies")
    if not isinstance(listed, list):
        raise check.fail("'constituencies' must be a list of the constituency ids it covers")
    seats: dict[str, None] = {}
    for number, seat_id in enumerate(listed, start=1):
        if not isinstance(seat_id, str):
            raise check.fail(f"constituencies: entry {number} must be a constituency id string")
        known = check.election.constituencies.get(seat_id)
        if known is None:
            raise check.fail(f"constituencies: unknown constituency {seat_id!r}")
        if known.id in seats:
            raise check.fail(f"constituencies: {seat_id!r} is listed twice")
        seats[known.id] = None
    raw = document.get("parties")
    if not isinstance(raw, dict):
        raise check.fail("'parties' must be an object of party code -> {seats, gains, losses}")
    parties: list[PartyFigures] = []
    given: dict[str, str] = {}
    for code, figures in raw.items():
        canonical = check.election.party_code(code)  # an alias names its party
        if canonical is None:
            raise check.fail(f"parties: unknown party {code!r}")
        if canonical in given:
            raise check.fail(f"parties: {code!r} and {given[canonical]!r} are the same party")
        given[canonical] = code
        known_party = check.election.parties[canonical]
        if not isinstance(figures, dict):
            raise check.fail(f"parties: {code} must be an object {{seats, gains, losses}}")
        counts: list[int] = []
        for name in FIGURES:
            count = figures.get(name)
            if not is_int(count) or count < 0:
                raise check.fail(f"parties: {code} '{name}' must be a non-negative integer")
            counts.append(count)
        party = PartyFigures(known_party.code, *counts)
        if party.gains > party.seats:
            raise check.fail(
                f"parties: {code} has {party.gains} gains but only {party.seats} seats"
            )
        parties.append(party)
    # Each seat it covers is won once and lost at most once.
    for name in ("seats", "losses"):
        total = sum(getattr(party, name) for party in parties)
        if total > len(seats):
            raise check.fail(
                f"the parties' {name} add up to {total}, more than the {len(seats)} "
                "constituencies it covers"
            )
    return StateOfParties(source=source, constituencies=tuple(seats), parties=tuple(parties))


def _post(check: Checker, document: dict[str, Any]) -> Post:
    post_id = read_plain_text(check, document, "id", POST_ID_MAX)
    withdrawn = document.get("withdrawn", False)
    if not isinstance(withdrawn, bool):
        raise check.fail(f"'withdrawn' must be true or false, not {withdrawn!r}")
    if withdrawn:
        return Post(id=post_id, withdrawn=True)  # nothing else of a withdrawn post is kept
    seats = document.get("constituencies")
    if seats is None:
        seats = []
    if not isinstance(seats, list) or not all(isinstance(seat, str) for seat in seats):
        raise check.fail("'constituencies' must be a list of constituency ids")
    if len(seats) > POST_SEATS_MAX:
        raise check.fail(f"a post may be about {POST_SEATS_MAX} constituencies at most")
    known = check.election.constituencies
    unknown = [seat for seat in seats if seat not in known]
    if unknown:
        raise check.fail(f"constituencies: unknown constituency {unknown[0]!r}")
    return Post(
        id=post_id,
        title=read_plain_text(check, document, "title", POST_TITLE_MAX),
        body=read_plain_text(check, document, "body", POST_BODY_MAX, lines=True),
        author=read_optional_plain_text(check, document, "author", POST_NAME_MAX),
        role=read_optional_plain_text(check, document, "role", POST_NAME_MAX),
        published_at=check.timestamp(document, "published_at"),
        constituencies=tuple(dict.fromkeys(known[seat].id for seat in seats)),
    )


_DECODERS: dict[str, Callable[[Checker, dict[str, Any]], Event]] = {
    "declaration": _declaration,
    "flash": _flash,
    "status": _status,
    "retraction": _retraction,
    "exit_poll": _exit_poll,
    "state_of_parties": _state_of_parties,
    "post": _post,
}
