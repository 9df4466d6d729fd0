"""The live-coverage posts behind the ``posts`` channel: a log, like ``declarations``.

Every current post is kept by its ``id`` in the order it was first published; a later post
with the same id replaces it in place, and a withdrawal removes it. Each change is one
``posts`` event: ``{"seq", "kind", "post"}`` with ``kind`` ``post``, ``replacement`` or
``withdrawal`` (whose ``post`` is the post as it was).
"""

from __future__ import annotations

from itertools import islice

from service.core.events import InvalidEvent, Post
from service.core.seq import Seq
from service.core.shapes import PostEntry, PostState
from service.core.states import iso_from_ms

POSTS = "posts"
RECENT_POSTS = 50
"""Posts in the channel's snapshot (``recent``, newest last)."""


class PostLog:
    """Every current post; ``apply`` each post event of the stream in order."""

    def __init__(self) -> None:
        self._posts: dict[str, PostState] = {}

    def apply(self, seq: Seq, post: Post) -> PostEntry | None:
        """The ``posts`` event for stream entry ``seq``'s post, or None when it changes
        nothing (a repeat of the current version).

        Raises InvalidEvent, changing nothing, for the withdrawal of a post that is not
        there.
        """
        current = self._posts.get(post.id)
        if post.withdrawn:
            if current is None:
                raise InvalidEvent(f"entry {seq}: no post {post.id!r} to withdraw")
            del self._posts[post.id]
            return {"seq": str(seq), "kind": "withdrawal", "post": current}
        published_at = post.published_at
        if published_at is None:
            # A replacement without a time of its own keeps the one it was published at.
            published_at = current["published_at"] if current else iso_from_ms(seq.ms)
        state = post_state(post, published_at, seq)
        if current is not None and _same(current, state):
            return None
        self._posts[post.id] = state
        return {"seq": str(seq), "kind": "replacement" if current else "post", "post": state}

    def recent(self) -> list[PostState]:
        """The newest ``RECENT_POSTS`` posts, newest last."""
        newest = list(islice(reversed(self._posts.values()), RECENT_POSTS))
        return newest[::-1]

    def about(self, seat_id: str) -> list[PostState]:
        """Every current post about the constituency, oldest first."""
        return [p for p in self._posts.values() if seat_id in p.get("constituencies", ())]


def post_state(post: Post, published_at: str, seq: Seq) -> PostState:
    """The post as clients see it; ``seq`` is the entry of this version."""
    state: PostState = {
        "id": post.id,
        "seq": str(seq),
        "title": post.title,
        "body": post.body,
        "published_at": published_at,
    }
    if post.author is not None:
        state["author"] = post.author
    if post.role is not None:
        state["role"] = post.role
    if post.constituencies:
        state["constituencies"] = list(post.constituencies)
    return state


def _same(one: PostState, other: PostState) -> bool:
    """Equal in everything but the entry that made them."""
    return {**one, "seq": None} == {**other, "seq": None}
