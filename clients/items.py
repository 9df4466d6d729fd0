"""What a seatcast client hands its application, whatever the transport: updates to a
channel's state, where the connection stands, refusals and pongs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = ["ConnectionState", "ErrorMessage", "Item", "Message", "Pong", "State", "Update"]

State: TypeAlias = dict[str, Any]
Message: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """A channel changed (or was confirmed): its ``state`` after ``message`` was applied.

    ``kind`` is ``snapshot``, ``delta``, ``event`` (a log: declarations, posts) or ``resumed``.
    For an event, ``state`` is the event's data (a declaration's kind, headline and the
    constituency's state; a post's kind and the post); for every other kind it is the
    channel's whole state. States are never mutated once handed out.
    """

    channel: str
    kind: Literal["snapshot", "delta", "event", "resumed"]
    seq: str
    state: State
    message: Message


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Where the connection stands, for a UI to show.

    ``connecting`` before the first connection; ``live`` once every channel has its first
    snapshot; ``reconnecting`` after a drop or a failed attempt (the detail says why, and
    ``retry_in`` how long until the next try); ``resynced`` once every channel is whole again
    after a reconnect, a gap or a new epoch (the detail says what was resumed and what was
    sent afresh).
    """

    status: Literal["connecting", "live", "reconnecting", "resynced"]
    detail: str = ""
    retry_in: float | None = None
    """Seconds until the next connection attempt, when one is scheduled."""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """The server refused a request (``type: error``); the connection stays open."""

    code: str
    text: str
    message: Message


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a client's ``ping()``; ``rtt`` in seconds when it was timed."""

    id: Any
    rtt: float | None
    message: Message


Item: TypeAlias = Update | ConnectionState | ErrorMessage | Pong
