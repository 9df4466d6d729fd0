"""Messages from server to client, encoded once for every subscriber that receives them."""

from __future__ import annotations

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
    """One encoded message: the JSON text, and its unmasked websocket frame.

    Server frames are not masked, so one frame's bytes serve every uncompressed connection.
    """

    __slots__ = ("payload", "wire")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.wire = Frame(Opcode.TEXT, payload).serialize(mask=False)

    def __len__(self) -> int:
        return len(self.payload)


def encode(message: dict[str, Any]) -> Outgoing:
    return Outgoing(orjson.dumps(message))


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


def snapshot(channel: str, seq: Seq, data: dict[str, Any]) -> Outgoing:
    return encode({"type": "snapshot", "channel": channel, "seq": str(seq), "data": data})


def resumed(channel: str, seq: Seq) -> Outgoing:
    return encode({"type": "resumed", "channel": channel, "seq": str(seq)})


def pong(request_id: object) -> Outgoing:
    return encode({"type": "pong", "id": request_id})


def error(code: str, message: str) -> Outgoing:
    return encode({"type": "error", "code": code, "message": message})
