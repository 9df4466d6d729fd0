"""Live-coverage posts: validating the ``post`` event, and the ``posts`` log in the tally."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.decoding import decode_event, validate_event
from service.core.events import (
    POST_BODY_MAX,
    POST_ID_MAX,
    POST_SEATS_MAX,
    POST_TITLE_MAX,
    InvalidEvent,
    Post,
)
from service.core.posts import POSTS, RECENT_POSTS
from service.core.seq import Seq
from service.core.tally import KEPT_FROM_QUIET, Applied, Change, Tally
from tests.core.builders import Desk, declaration, tiny_election

ENTRY = "1720148400000-0"


def post(post_id: Any = "p1", **fields: Any) -> dict[str, Any]:
    """A post event; ``title`` and ``body`` are filled in unless given (``None``: left out)."""
    document = {"type": "post", "id": post_id, "title": "Key issues", "body": "Turnout is up."}
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


def withdrawal(post_id: Any = "p1") -> dict[str, Any]:
    return {"type": "post", "id": post_id, "withdrawn": True}


# --- validating -----------------------------------------------------------------------------


def test_a_post_decodes_to_its_record() -> None:
    document = post(
        "desk-17",
        title="What were the key issues in Nordhaven?",
        body="Housing.\r\nAnd the ferry.\rAnd\tthe bridge.",
        author="Ana Ruiz",
        role="Political correspondent",
        published_at="2031-05-01T23:21:00+12:00",
        constituencies=["N1", "S1", "N1"],
    )

    assert decode_event(orjson.dumps(document), tiny_election(), ENTRY) == Post(
        id="desk-17",
        title="What were the key issues in Nordhaven?",
        body="Housing.\nAnd the ferry.\nAnd\tthe bridge.",
        author="Ana Ruiz",
        role="Political correspondent",
        published_at="2031-05-01T23:21:00+12:00",
        constituencies=("N1", "S1"),
    )


def test_a_withdrawal_needs_only_the_id() -> None:
    assert validate_event(withdrawal("p9"), tiny_election(), ENTRY) == Post("p9", withdrawn=True)


def test_markup_is_kept_as_the_text_it_is() -> None:
    text = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">&amp;'
    event = validate_event(post(title=text, body=text), tiny_election(), ENTRY)

    assert isinstance(event, Post)
    assert (event.title, event.body) == (text, text)


REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("no id", post(None), "'id' must be a non-empty string"),
    ("a numeric id", post(17), "'id' must be a non-empty string"),
    ("a blank id", post("  "), "'id' must be a non-empty string"),
    ("an id too long", post("p" * (POST_ID_MAX + 1)), "'id' is 129 characters long, over 128"),
    ("no title", post(title=None), "'title' must be a non-empty string"),
    ("no body", post(body=None), "'body' must be a non-empty string"),
    ("a body that is a list", post(body=["a"]), "'body' must be a non-empty string"),
    (
        "a very long body",
        post(body="x" * 1_000_000),
        f"'body' is 1,000,000 characters long, over {POST_BODY_MAX:,}",
    ),
    ("a title too long", post(title="t" * (POST_TITLE_MAX + 1)), "'title' is 301 characters"),
    ("an author not text", post(author=5), "'author' must be a non-empty string"),
    ("a blank role", post(role=""), "'role' must be a non-empty string"),
    (
        "a terminal escape in the body",
        post(body="Turnout\x1b[2J is up"),
        "'body' has a control character (U+001B) at character 8: posts are plain text",
    ),
    ("a NUL in the title", post(title="Key\x00issues"), "'title' has a control character (U+0000)"),
    ("a line break in the title", post(title="Key\nissues"), "(U+000A) at character 4"),
    ("a C1 control in the author", post(author="Ana\x85"), "'author' has a control character"),
    (
        "a right-to-left override",
        post(title="Labour \u202eniag"),
        "'title' has a bidirectional control (U+202E) at character 8",
    ),
    ("a bidi isolate in the body", post(body="a\u2067b"), "bidirectional control (U+2067)"),
    ("a line separator", post(body="a\u2028b"), "'body' has a line or paragraph separator"),
    ("a bad time", post(published_at="23:21 BST"), "'published_at' is not an ISO 8601 time"),
    ("an unknown seat", post(constituencies=["N1", "ZZ9"]), "unknown constituency 'ZZ9'"),
    ("seats as text", post(constituencies="N1"), "'constituencies' must be a list"),
    ("a seat id a number", post(constituencies=[1]), "'constituencies' must be a list"),
    (
        "too many seats",
        post(constituencies=["N1"] * (POST_SEATS_MAX + 1)),
        f"a post may be about {POST_SEATS_MAX} constituencies at most",
    ),
    ("withdrawn as text", post(withdrawn="yes"), "'withdrawn' must be true or false, not 'yes'"),
]


@pytest.mark.parametrize(
    ("document", "words"),
    [pytest.param(document, words, id=what) for what, document, words in REJECTED],
)
def test_a_malformed_post_is_rejected_with_a_one_line_reason(
    document: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        decode_event(orjson.dumps(document), tiny_election(), ENTRY)

    reason = str(raised.value)
    assert reason.startswith(f"entry {ENTRY}: ")
    assert words in reason
    assert reason.isprintable()
    assert len(reason) < 200


# --- the posts log ---------------------------------------------------------------------------


def posts_events(applied: Applied) -> list[Mapping[str, Any]]:
    assert {change.channel for change in applied.changes} <= {POSTS}
    return [change.event for change in applied.changes if change.event is not None]


def test_a_post_is_announced_on_the_posts_channel_and_nowhere_else() -> None:
    desk = Desk(tiny_election())

    applied = desk.send(post("p1", author="Ana", constituencies=["N1"]))

    (event,) = posts_events(applied)
    seq = str(applied.changes[0].seq)
    assert event == {
        "seq": seq,
        "kind": "post",
        "post": {
            "id": "p1",
            "seq": seq,
            "title": "Key issues",
            "body": "Turnout is up.",
            # No time given: the entry's.
            "published_at": "2024-07-05T03:00:00+00:00",
            "author": "Ana",
            "constituencies": ["N1"],
        },
    }
    assert applied.changes[0].prev == Seq(0, 0)
    assert desk.tally.state(POSTS) == {"recent": [event["post"]]}
    assert desk.tally.channel_seq(POSTS) == applied.changes[0].seq


def test_a_later_post_with_the_same_id_replaces_it_in_place() -> None:
    desk = Desk(tiny_election())
    desk.send(post("p1", published_at="2031-05-01T23:21:00+12:00"))
    (second,) = desk.send(post("p2")).changes

    applied = desk.send(post("p1", title="Key issues, updated"))

    (event,) = posts_events(applied)
    assert event["kind"] == "replacement"
    assert event["post"]["title"] == "Key issues, updated"
    # A replacement without a time of its own keeps the time it was published at.
    assert event["post"]["published_at"] == "2031-05-01T23:21:00+12:00"
    assert applied.changes[0].prev == second.seq
    assert [p["id"] for p in desk.tally.state(POSTS)["recent"]] == ["p1", "p2"]


def test_a_repeated_post_changes_and_sends_nothing() -> None:
    desk = Desk(tiny_election())
    desk.send(post("p1", constituencies=["N1"]))
    seq = desk.tally.channel_seq(POSTS)

    assert desk.send(post("p1", constituencies=["N1", "N1"])) == Applied()
    assert desk.tally.channel_seq(POSTS) == seq


def test_a_withdrawal_removes_the_post_and_says_which_it_was() -> None:
    desk = Desk(tiny_election())
    desk.send(post("p1", constituencies=["N1"]))
    desk.send(post("p2"))

    (event,) = posts_events(desk.send(withdrawal("p1")))

    assert event["kind"] == "withdrawal"
    assert event["post"]["title"] == "Key issues"
    assert [p["id"] for p in desk.tally.state(POSTS)["recent"]] == ["p2"]
    assert desk.tally.posts_about("N1") == []


def test_withdrawing_a_post_that_is_not_there_is_rejected_and_changes_nothing() -> None:
    desk = Desk(tiny_election())
    desk.send(post("p1"))
    desk.send(withdrawal("p1"))
    before = (desk.tally.state(POSTS), desk.tally.channel_seq(POSTS))

    with pytest.raises(InvalidEvent, match=r"^entry \d+-0: no post 'p1' to withdraw$"):
        desk.send(withdrawal("p1"))

    assert (desk.tally.state(POSTS), desk.tally.channel_seq(POSTS)) == before


def test_a_withdrawn_id_may_be_used_again_for_a_new_post() -> None:
    desk = Desk(tiny_election())
    desk.send(post("p1"))
    desk.send(post("p2"))
    desk.send(withdrawal("p1"))

    (event,) = posts_events(desk.send(post("p1", title="Another")))

    assert event["kind"] == "post"
    assert [p["id"] for p in desk.tally.state(POSTS)["recent"]] == ["p2", "p1"]


def test_the_snapshot_keeps_the_most_recent_posts_newest_last_and_every_post_is_kept() -> None:
    desk = Desk(tiny_election())
    for number in range(RECENT_POSTS + 10):
        desk.send(post(f"p{number}", constituencies=["S1"] if number == 3 else []))

    recent = desk.tally.state(POSTS)["recent"]

    assert RECENT_POSTS >= 20
    assert [p["id"] for p in recent] == [f"p{n}" for n in range(10, RECENT_POSTS + 10)]
    # Older posts are still there: for the seat they are about, and to be replaced.
    assert [p["id"] for p in desk.tally.posts_about("S1")] == ["p3"]
    assert posts_events(desk.send(post("p3", title="Still here")))[0]["kind"] == "replacement"


def test_posts_touch_no_state_channel() -> None:
    desk = Desk(tiny_election())
    desk.send(declaration("N1", ("Ana", "KIW", 500), ("Ben", "TUI", 300)))
    states = {ch: desk.tally.state(ch) for ch in desk.tally.channels() if ch != POSTS}

    desk.send(post("p1", constituencies=["N1"]))
    desk.send(withdrawal("p1"))

    assert {ch: desk.tally.state(ch) for ch in desk.tally.channels() if ch != POSTS} == states


# --- properties ------------------------------------------------------------------------------

SEATS = ["N1", "N2", "S1"]


@st.composite
def coverage(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Posts, replacements, repeats and withdrawals over a few ids, with declarations."""
    documents: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 40))):
        post_id = draw(st.sampled_from(["a", "b", "c", "d"]))
        kind = draw(st.sampled_from(["post", "post", "withdrawal", "declaration"]))
        if kind == "withdrawal":
            documents.append(withdrawal(post_id))
        elif kind == "declaration":
            votes = draw(st.integers(1, 900))
            documents.append(declaration("N1", ("Ana", "KIW", votes), ("Ben", "TUI", 0)))
        else:
            documents.append(
                post(
                    post_id,
                    title=draw(st.sampled_from(["One", "Two"])),
                    published_at=draw(st.none() | st.just("2031-05-01T23:21:00+12:00")),
                    constituencies=draw(st.lists(st.sampled_from(SEATS), max_size=2)),
                )
            )
    return documents


def apply(tally: Tally, seq: Seq, document: dict[str, Any], quiet: bool = False) -> Applied | str:
    try:
        return tally.apply(seq, validate_event(document, tally.election, str(seq)), quiet=quiet)
    except InvalidEvent as exc:
        return str(exc)


def follow(posts: list[dict[str, Any]], event: Mapping[str, Any]) -> None:
    """What a client does with a posts event to the list of posts it holds."""
    ids = [p["id"] for p in posts]
    if event["kind"] == "post":
        posts.append(event["post"])
    elif event["kind"] == "replacement":
        posts[ids.index(event["post"]["id"])] = event["post"]
    else:
        del posts[ids.index(event["post"]["id"])]


@settings(max_examples=150, deadline=None)
@given(coverage())
def test_the_events_bring_a_client_from_each_snapshot_to_the_next(
    documents: list[dict[str, Any]],
) -> None:
    tally = Tally(tiny_election())
    held: list[dict[str, Any]] = []
    for number, document in enumerate(documents):
        before = tally.channel_seq(POSTS)
        applied = apply(tally, Seq(1_000 + number, 0), document)
        if isinstance(applied, str):
            continue
        for change in applied.changes:
            if change.channel == POSTS:
                assert change.prev == before
                assert change.event is not None
                follow(held, change.event)
        assert held[-RECENT_POSTS:] == tally.state(POSTS)["recent"]
        for seat in SEATS:
            assert tally.posts_about(seat) == [
                p for p in held if seat in p.get("constituencies", [])
            ]


@settings(max_examples=150, deadline=None)
@given(coverage(), st.data())
def test_a_quiet_catch_up_keeps_the_posts_and_their_changes_as_normal_applies_do(
    documents: list[dict[str, Any]], data: st.DataObject
) -> None:
    stop = data.draw(st.integers(0, len(documents)))
    normal, quiet = Tally(tiny_election()), Tally(tiny_election())
    logged: list[Change] = []
    for number, document in enumerate(documents[:stop]):
        seq = Seq(1_000 + number, 0)
        expected = apply(normal, seq, document)
        got = apply(quiet, seq, document, quiet=True)
        if isinstance(expected, str):
            assert got == expected
        else:
            logged.extend(c for c in expected.changes if c.event is not None)
            assert got == Applied()
        assert quiet.channel_seq(POSTS) == normal.channel_seq(POSTS)

    kept = quiet.settle()

    assert list(kept) == sorted(logged, key=lambda change: change.seq)[-2 * KEPT_FROM_QUIET :]
    assert quiet.state(POSTS) == normal.state(POSTS)
    for number, document in enumerate(documents[stop:], start=stop):
        seq = Seq(1_000 + number, 0)
        assert apply(quiet, seq, document) == apply(normal, seq, document)
