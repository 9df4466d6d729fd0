"""What the references share: reading the stream and framing each entry per channel."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

ZERO = "0-0"
BLOCK_MS = 1000
BATCH = 1000
SEAT_EVENTS = {"declaration", "flash", "retraction", "status"}
LOG_EVENTS = {"declaration", "flash", "retraction"}

Frames = list[tuple[str, str]]
"""(channel, the JSON text to send to its subscribers), in order."""


class Relay:
    """Per channel, the last seq sent; turns a stream entry into one frame per channel."""

    def __init__(self, election: str = "uk-2024") -> None:
        self.election = election
        self.last: dict[str, str] = {}
        self.epoch = ZERO
        self.seq = ZERO
        self.ready = False

    @staticmethod
    def known(channel: str) -> bool:
        return channel in ("national", "declarations") or channel.startswith("constituency:")

    def hello(self) -> str:
        message = {"type": "hello", "election": self.election, "epoch": self.epoch}
        return orjson.dumps({**message, "seq": self.seq}).decode()

    def snapshot(self, channel: str) -> str:
        seq = self.last.get(channel, ZERO)
        return orjson.dumps(
            {"type": "snapshot", "channel": channel, "seq": seq, "data": {}}
        ).decode()

    def frames(self, entry_id: str, raw: bytes | None) -> Frames:
        if self.epoch == ZERO:
            self.epoch = entry_id
        self.seq = entry_id
        try:
            event: Any = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        channels = ["national"]
        kind = event.get("type")
        if kind in SEAT_EVENTS and isinstance(event.get("constituency"), str):
            channels.append(f"constituency:{event['constituency']}")
        if kind in LOG_EVENTS:
            channels.append("declarations")
        out: Frames = []
        for channel in channels:
            log = channel == "declarations"
            # The envelope first, in seatcast's order: the load generator reads it cheaply.
            message: dict[str, Any] = {
                "type": "event" if log else "delta",
                "channel": channel,
                "seq": entry_id,
                "prev": self.last.get(channel, ZERO),
                "data" if log else "patch": event,
            }
            self.last[channel] = entry_id
            out.append((channel, orjson.dumps(message).decode()))
        return out

    def request(self, text: str | bytes) -> tuple[str, list[str]] | str:
        """A client request as ("subscribe" | "unsubscribe", channels), or a reply to send."""
        try:
            request: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            return error("bad_json", "the frame is not valid JSON")
        if not isinstance(request, dict):
            return error("bad_request", 'expected an object with an "op"')
        op = request.get("op")
        if op == "ping":
            return orjson.dumps({"type": "pong", "id": request.get("id")}).decode()
        channels = request.get("channels")
        if op not in ("subscribe", "unsubscribe") or not isinstance(channels, list):
            return error("bad_request", "use subscribe, unsubscribe or ping")
        return op, [c for c in channels if isinstance(c, str)]


def error(code: str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


async def follow(
    client: aioredis.Redis,
    stream: str,
    relay: Relay,
    deliver: Callable[[Frames], Awaitable[None]],
    flush: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read the whole stream (sending nothing), mark the relay ready, then deliver every new
    entry's frames, forever; ``flush``, if given, after each read's entries are delivered."""
    last = ZERO
    while True:
        response: Any = await client.xread(
            {stream: last}, count=BATCH, block=BLOCK_MS if relay.ready else None
        )
        entries: list[tuple[bytes, dict[bytes, bytes]]] = response[0][1] if response else []
        for raw_id, fields in entries:
            last = raw_id.decode()
            frames = relay.frames(last, fields.get(b"event"))
            if relay.ready:
                await deliver(frames)
        if relay.ready and entries and flush is not None:
            await flush()
        if not relay.ready and len(entries) < BATCH:
            relay.ready = True


def argument_parser(prog: str) -> argparse.ArgumentParser:
    """The options every reference takes (one may add its own before parsing)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--stream", default="election:events")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--ws", default="auto", help="uvicorn websocket implementation")
    return parser


def parse_args(
    prog: str, argv: Sequence[str] | None, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    args = (parser or argument_parser(prog)).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    return args


def stop_signal() -> asyncio.Future[None]:
    """A future that SIGINT or SIGTERM completes: how a reference server knows to stop."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[None] = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop)
    return stopped
