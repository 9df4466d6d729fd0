"""Handing a batch's changes to subscribers: written at once, or queued and written together,
under the slow-client policy (DESIGN.md guarantee 4)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from service.core.tally import LOG_CHANNELS
from service.fanout.subscriber import Subscriber
from service.protocol.messages import CLOSE_TRY_LATER, Outgoing

LOGS = LOG_CHANNELS
"""Channels whose messages are events (declarations, posts): none may be dropped, so a
client too far behind is closed (it resumes with ``since``) instead of being sent a fresh
snapshot."""

Pending = tuple[str, Outgoing, Outgoing | None, tuple[Subscriber, ...]]
"""A change of this batch: channel, message, the message for those who may not see the
embargoed exit poll (when it differs), and the channel's members when it was published."""


def deliver(
    pending: list[Pending],
    dirty: set[Subscriber],
    *,
    at_once: bool,
    on_slow_close: Callable[[], None],
) -> int:
    """Deliver a batch's changes in order; returns how many deliveries were made.

    With ``at_once``, a change that is its channel's only one in the batch goes straight
    out to each member with nothing queued and no other channel changed in the batch — the
    common case, one write per subscriber per event with no queue touched; everything else
    is queued (its subscriber added to ``dirty``) for the sinks, which write all of a
    subscriber's messages together.
    """
    changes = Counter(channel for channel, _, _, _ in pending) if at_once else Counter()
    changed = frozenset(changes)
    sent = 0
    for channel, message, public, members in pending:
        others = changed - {channel} if changes[channel] == 1 and public is None else None
        sent += _deliver(channel, message, members, public, others, dirty, on_slow_close)
    return sent


def _deliver(
    channel: str,
    message: Outgoing,
    members: tuple[Subscriber, ...],
    public: Outgoing | None,
    at_once_unless: frozenset[str] | None,
    dirty: set[Subscriber],
    on_slow_close: Callable[[], None],
) -> int:
    """Send or queue ``message`` for each member (``public`` instead for those who may not
    see embargoed data, when it differs), applying the slow-client policy.

    ``at_once_unless``: send at once to members with nothing queued that follow none of
    these channels (the batch's other changes); None: queue for every member.
    """
    is_log = channel in LOGS
    size = len(message)
    sent = 0
    for subscriber in members:
        if subscriber.close_code is not None:
            continue  # closing, perhaps by an earlier change of this batch
        if subscriber.resync and channel in subscriber.resync:
            continue  # a fresh snapshot is already owed
        if (
            at_once_unless is not None
            and not subscriber.queued_bytes
            and (len(subscriber.channels) == 1 or at_once_unless.isdisjoint(subscriber.channels))
            and subscriber.sink.send_now(message)
        ):
            sent += 1
            continue
        if public is not None and not subscriber.sees_embargoed:
            if subscriber.queued_bytes + len(public) <= subscriber.limit:
                subscriber.push(public)
            else:
                subscriber.resync.add(channel)
            dirty.add(subscriber)
            continue
        if subscriber.queued_bytes + size <= subscriber.limit:
            subscriber.queue.append(message)
            subscriber.queued_bytes += size
            dirty.add(subscriber)
            sent += 1
        elif is_log:
            # Nothing on a log may be dropped silently: the client is closed, reconnects
            # and resumes with 'since'.
            on_slow_close()
            subscriber.close(CLOSE_TRY_LATER, "too far behind: resume with 'since'")
        else:
            subscriber.resync.add(channel)
            dirty.add(subscriber)
    return sent
