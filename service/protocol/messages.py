"""Messages from server to client, encoded once for every subscriber that receives them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from websockets.frames import Frame, Opcode

from service.core.seq import Seq
from service.core.tally import Change

# Close codes (RFC 6455 and the IANA registry), as DESIGN.md guarantee 7 names them.
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013


class Outgoing:
    """One encoded message: the JSON text, its unmasked websocket frame, and (made when first
    asked for) its Server-Sent Event.

    Server frames are not masked, so one frame's bytes serve every uncompressed connection;
    likewise one event's bytes serve every SSE connection.
    """

    __slots__ = ("_sse", "_sse_bare", "_sse_chunk", "at", "kind", "payload", "wire")

    def __init__(
        self, payload: bytes, kind: str = "message", at: tuple[Seq, Seq] | None = None
    ) -> None:
        self.payload = payload
        self.wire = Frame(Opcode.TEXT, payload).serialize(mask=False)
        self.kind = kind
        """The message's ``type``: the SSE ``event:`` name."""
        self.at = at
        """(epoch, seq): the stream position up to which a client that has read this
        message holds every change of its channels; the SSE ``id:`` (see ``sse``)."""
        self._sse: bytes | None = None
        self._sse_bare: bytes | None = None
        self._sse_chunk: bytes | None = None

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def sse(self) -> bytes:
        """The message as one Server-Sent Event, encoded once for every SSE subscriber.

        orjson writes no newlines, so the JSON is one ``data:`` line. A message without a
        position (hello, resumed, error) carries no ``id:``, so that a client's last id
        stays the last position it holds whole: an ``EventSource`` keeps its previous one.
        """
        sse = self._sse
        if sse is None:
            bare = self.sse_without_id
            if self.at is not None:
                bare = bare[:-1] + b"id: %s\n\n" % position(*self.at).encode()
            sse = self._sse = bare
        return sse

    @property
    def sse_chunk(self) -> bytes:
        """``sse`` as one chunk of a chunked HTTP/1.1 response: a stream's whole write when
        this is the one message it is sent, the same bytes for every stream."""
        framed = self._sse_chunk
        if framed is None:
            sse = self.sse
            framed = self._sse_chunk = b"%x\r\n%b\r\n" % (len(sse), sse)
        return framed

    @property
    def sse_without_id(self) -> bytes:
        """The event with no ``id:``: for all but the last of one entry's messages to a
        client, whose position is whole only once that last one is read."""
        bare = self._sse_bare
        if bare is None:
            bare = self._sse_bare = b"".join(
                [b"event: ", self.kind.encode(), b"\ndata: ", self.payload, b"\n\n"]
            )
        return bare


def encode(message: dict[str, Any], at: tuple[Seq, Seq] | None = None) -> Outgoing:
    return Outgoing(orjson.dumps(message), message["type"], at)


def position(epoch: Seq, seq: Seq) -> str:
    """A stream position for an SSE ``id:``, ``<epoch>:<seq>``; ``parse_position`` reads it."""
    return f"{epoch}:{seq}"


def parse_position(text: str | None) -> tuple[str, str] | None:
    """A client's ``Last-Event-ID`` as (epoch, seq) text for the hub to judge (rule 3), or
    None when it is not even of that form. Whether they name anything is the hub's call."""
    if not text:
        return None
    epoch, sep, seq = text.strip().partition(":")
    if not sep or not epoch or not seq:
        return None
    return epoch, seq


def change_message(change: Change) -> dict[str, Any]:
    """A change as its channel's next message: an ``event`` on a log, else a ``delta``."""
    if change.event is not None:
        return {
            "type": "event",
            "channel": change.channel,
            "seq": str(change.seq),
            "prev": str(change.prev),
            "data": change.event,
        }
    return {
        "type": "delta",
        "channel": change.channel,
        "seq": str(change.seq),
        "prev": str(change.prev),
        "patch": change.patch,
    }


def hello(election: str, epoch: Seq, seq: Seq) -> Outgoing:
    return encode({"type": "hello", "election": election, "epoch": str(epoch), "seq": str(seq)})


def snapshot(
    channel: str, seq: Seq, data: Mapping[str, Any], at: tuple[Seq, Seq] | None = None
) -> Outgoing:
    """``at``: the position the snapshot is current to (the latest entry applied, not the
    channel's last change ``seq``): every channel is whole up to there when it is sent."""
    return encode({"type": "snapshot", "channel": channel, "seq": str(seq), "data": data}, at)


def resumed(channel: str, seq: Seq) -> Outgoing:
    return encode({"type": "resumed", "channel": channel, "seq": str(seq)})


def pong(request_id: object) -> Outgoing:
    return encode({"type": "pong", "id": request_id})


def error(code: str, message: str) -> Outgoing:
    return encode({"type": "error", "code": code, "message": message})


def listed(names: Sequence[str], most: int = 5, longest: int = 60) -> str:
    """Names for an error message: the first ``most``, each cut to ``longest`` characters
    (a client's channel names can be anything, and are echoed back to it)."""
    shown = [name if len(name) <= longest else name[: longest - 1] + "…" for name in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more
