"""``POST /api/events``: a results desk adds events to the stream (DESIGN.md "Publishing").

Every event is checked with the stream reader's own decoder against the election definition
before anything is written: one bad event refuses the whole request. Rules that depend on
the state at the moment the reader applies the event (a stale revision, a status for a
declared seat) are the reader's, as for any other writer: such an event is written, then
ignored or copied to the rejected stream. A request's events are written by one Redis script,
so they are contiguous, all or none, and stored with their answer under the request's
``Idempotency-Key`` in the same step: a retry, even one racing the first, gets the first
answer and writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from service.access import AccessDenied, Grant, bearer
from service.core.decoding import validate_event
from service.core.events import InvalidEvent

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger("seatcast.publish")

PATH = "/api/events"
MAX_EVENTS = 1000
"""Events one request may carry: a whole night's declarations fit in one request."""
IDEMPOTENCY_TTL = 24 * 3600
"""Seconds a request's answer is kept for retries with its ``Idempotency-Key``."""
MAX_KEY_LENGTH = 255
IDLE_BUCKETS = 10_000
"""Rate-limit buckets kept before the idle ones are dropped."""
HOW_TO_ENABLE = (
    "publishing needs tokens: set SEATCAST_TOKEN_SECRET (or SEATCAST_TOKEN_PUBLIC_KEY) and "
    "send 'Authorization: Bearer <token>' whose claims include \"publish\": true"
)

# KEYS[1] the stream; KEYS[2], when given, the idempotency key. ARGV[1] the request's
# fingerprint, ARGV[2] the answer's time to live, ARGV[3..] the events, in order.
# Atomic: nothing runs between the look-up of the key and the writing of its answer, so of
# two racing retries exactly one writes.
_WRITE = """
if KEYS[2] then
  local first = redis.call('GET', KEYS[2])
  if first then return {0, first} end
end
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'event', ARGV[i])
end
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. table.concat(ids, ' '), 'EX', ARGV[2])
end
return {1, ids}
"""


class Refusal(Exception):
    """A request that is answered with an error; the message is for the person sending it."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    refilled: float


@dataclass
class Publisher:
    """The endpoint, with what it needs of the running service."""

    runtime: Runtime
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _script: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        self._script = self.runtime.client.register_script(_WRITE)

    async def handle(self, request: Request) -> Response:
        try:
            grant = self._authorise(request)
            self._take_a_token(grant, request)
            key = self._idempotency_key(request)
            body = await self._body(request)
            events = self._events(body)
            fingerprint = hashlib.sha256(body).hexdigest()
            written, ids = await self._write(events, key, fingerprint)
        except Refusal as refusal:
            return _answer(
                refusal.status,
                {"error": refusal.code, "message": str(refusal)},
                refusal.headers,
            )
        except InvalidEvents as invalid:
            return _answer(422, invalid.body())
        headers = {} if written else {"Idempotent-Replayed": "true"}
        if written:
            self.runtime.metrics.events_published.inc(len(ids))
            log.info(
                "published %d event(s) for %s: %s to %s",
                len(ids),
                grant.subject or "a token without 'sub'",
                ids[0],
                ids[-1],
            )
        return _answer(201, {"ids": ids}, headers)

    def _authorise(self, request: Request) -> Grant:
        access = self.runtime.access
        if not access.verifies_tokens:
            # With no way to check a token, publishing stays closed rather than open to all.
            raise Refusal(403, "publishing_disabled", HOW_TO_ENABLE)
        token = bearer(request.headers.get("authorization"))
        challenge = {"WWW-Authenticate": 'Bearer realm="seatcast"'}
        if token is None:
            raise Refusal(
                401,
                "unauthorized",
                "publishing needs a token: send 'Authorization: Bearer <token>' whose claims "
                'include "publish": true',
                challenge,
            )
        try:
            grant = access.grant(token)
        except AccessDenied as exc:
            raise Refusal(401, "unauthorized", str(exc), challenge) from None
        if not grant.publish:
            raise Refusal(
                403, "forbidden", 'your token does not allow publishing (claim "publish": true)'
            )
        return grant

    def _take_a_token(self, grant: Grant, request: Request) -> None:
        """The service's rate limit, per credential on this instance (burst: twice it)."""
        rate = self.runtime.settings.rate_limit
        who = grant.subject or hashlib.sha256(request.headers["authorization"].encode()).hexdigest()
        now = time.monotonic()
        if len(self._buckets) > IDLE_BUCKETS:
            idle = 2 / rate
            self._buckets = {k: b for k, b in self._buckets.items() if now - b.refilled < idle}
        bucket = self._buckets.setdefault(who, _Bucket(2 * rate, now))
        bucket.tokens = min(2 * rate, bucket.tokens + (now - bucket.refilled) * rate)
        bucket.refilled = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / rate)
            raise Refusal(
                429,
                "rate_limited",
                f"too many requests: at most {rate:g} a second; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        bucket.tokens -= 1

    async def _body(self, request: Request) -> bytes:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise Refusal(
                415,
                "unsupported_media_type",
                f"send the events as 'Content-Type: application/json', not {media_type or 'none'}",
            )
        limit = self.runtime.settings.publish_max_bytes
        too_large = Refusal(413, "too_large", f"the body is over {limit:,} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refusal(400, "bad_request", "the body ended early") from None
        return b"".join(chunks)

    def _events(self, body: bytes) -> list[bytes]:
        """Each event re-encoded for the stream; raises Refusal or InvalidEvents."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refusal(400, "not_json", f"the body is not valid JSON: {exc}") from None
        documents = document if isinstance(document, list) else [document]
        if not documents:
            raise Refusal(422, "no_events", "the list holds no events")
        if len(documents) > MAX_EVENTS:
            raise Refusal(
                413,
                "too_many_events",
                f"{len(documents):,} events: at most {MAX_EVENTS:,} a request",
            )
        reasons: list[dict[str, Any]] = []
        election = self.runtime.election
        for index, event in enumerate(documents):
            try:
                validate_event(event, election)
            except InvalidEvent as exc:
                # The reader names the stream entry; these have none yet.
                reasons.append({"index": index, "reason": str(exc).removeprefix("entry ?: ")})
        if reasons:
            raise InvalidEvents(len(documents), reasons)
        return [orjson.dumps(event) for event in documents]

    def _idempotency_key(self, request: Request) -> str | None:
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise Refusal(
                400,
                "bad_idempotency_key",
                f"'Idempotency-Key' must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            )
        return key

    async def _write(
        self, events: list[bytes], key: str | None, fingerprint: str
    ) -> tuple[bool, list[str]]:
        """Add the events (or find the key's first answer): (whether written, the ids)."""
        stream = self.runtime.settings.stream
        keys = [stream] if key is None else [stream, f"{stream}:idempotency:{key}"]
        try:
            written, result = await self._script(
                keys=keys, args=[fingerprint, IDEMPOTENCY_TTL, *events]
            )
        except ResponseError as exc:  # refused: a read-only replica, a user without rights
            log.warning("publishing to %s was refused by Redis: %s", stream, exc)
            raise Refusal(
                503, "unavailable", f"Redis refused the events ({exc}); nothing was written"
            ) from None
        except RedisError as exc:
            log.warning("publishing to %s failed: %s", stream, exc)
            raise Refusal(
                503,
                "unavailable",
                f"Redis did not answer ({exc}): the events may have been written or not; "
                "retry with the same 'Idempotency-Key'",
            ) from None
        if written:
            return True, [entry_id.decode() for entry_id in result]
        first_fingerprint, *ids = result.decode().split(" ")
        if first_fingerprint != fingerprint:
            raise Refusal(
                422,
                "idempotency_key_reused",
                "this 'Idempotency-Key' was used for a different request; use a new key",
            )
        return False, ids


class InvalidEvents(Exception):
    """Some of a request's events would be rejected by the stream reader."""

    def __init__(self, count: int, reasons: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(reasons)} of {count} events are not valid")
        self.count = count
        self.reasons = reasons

    def body(self) -> dict[str, Any]:
        return {
            "error": "invalid_events",
            "message": f"{self}; nothing was written",
            "errors": self.reasons,
        }


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def publish_route(runtime: Runtime) -> Route:
    return Route(PATH, Publisher(runtime).handle, methods=["POST"])
