"""Requests from client to server: one JSON text frame each, parsed or refused with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class BadRequest(ValueError):
    """A frame that is not a request: ``code`` and ``str(exc)`` make the client's error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: tuple[str, ...]
    """Each once, in the order asked."""
    since: dict[str, Any]
    """Channel -> the seq to resume from, as sent (checked when answered)."""
    epoch: object = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    id: object = None


Request = Subscribe | Unsubscribe | Ping


def parse_request(text: str | bytes) -> Request:
    """The request in one client frame; raises BadRequest for anything else."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadRequest("bad_json", "the frame is not valid JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise BadRequest("bad_request", 'expected an object with an "op"')
    op = request["op"]
    if op == "subscribe":
        channels = _channels(request)
        since = request.get("since")
        if since is not None and not isinstance(since, dict):
            raise BadRequest("bad_request", '"since" must map channels to seqs')
        return Subscribe(channels, since or {}, request.get("epoch"))
    if op == "unsubscribe":
        return Unsubscribe(_channels(request))
    if op == "ping":
        return Ping(request.get("id"))
    raise BadRequest("unknown_op", f"unknown op {op!r}: use subscribe, unsubscribe or ping")


def _channels(request: dict[str, Any]) -> tuple[str, ...]:
    channels = request.get("channels")
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise BadRequest("bad_request", '"channels" must be a non-empty list of channel names')
    return tuple(dict.fromkeys(channels))
