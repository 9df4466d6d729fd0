"""What every connection goes through, however it is served: waiting for a starting instance
to catch up, the origin and credential checks, and joining the hub."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from service.access import Access, AccessDenied, Grant, bearer
from service.fanout.hub import Hub
from service.fanout.subscriber import Sink, Subscriber
from service.protocol.messages import CLOSE_POLICY

NOT_READY_WAIT = 10.0
"""Seconds a new connection waits for a starting instance to catch up before 1013."""
CATCHING_UP = "catching up with the stream; try again shortly"


def token_from(authorization: str | None, query_token: str | None) -> str | None:
    """The one rule for where a credential comes from, on every transport and the REST API:
    ``Authorization: Bearer <token>``, else ``?token=<token>`` (browsers cannot set headers
    on a websocket or an EventSource)."""
    return bearer(authorization) or query_token or None


@dataclass
class Admission:
    """The door of the service: transports hold this, not the runtime behind it."""

    hub: Hub
    access: Access
    queue_bytes: int
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the instance has applied the stream as it stood at start-up."""
    held: set[asyncio.Task[None]] = field(default_factory=set)
    """Connections held until the instance is ready (cancelled on shutdown)."""

    @property
    def ready(self) -> bool:
        return self.caught_up.is_set()

    async def wait_until_ready(self) -> bool:
        """A restarted instance must not show clients the partial state of its catch-up:
        wait for it (bounded); False if it is still catching up."""
        if not self.ready:
            try:
                async with asyncio.timeout(NOT_READY_WAIT):
                    await self.caught_up.wait()
            except TimeoutError:
                pass
        return self.ready

    def hold(self, task: asyncio.Task[None]) -> None:
        self.held.add(task)
        task.add_done_callback(self.held.discard)

    def admit(self, origin: str | None, token: str | None) -> Grant:
        """The grant for a new connection; AccessDenied (close 1008) says why there is none."""
        if not self.access.origin_allowed(origin):
            raise AccessDenied("this origin is not allowed")
        return self.access.grant(token)

    def join(self, sink: Sink, grant: Grant) -> tuple[Subscriber, asyncio.TimerHandle | None]:
        """A subscriber for the connection, on the hub with what its grant allows; its hello
        is queued (the transport sends it). Also returns the timer that closes it when its
        token expires, if the token does."""
        subscriber = Subscriber(sink, self.queue_bytes)
        if grant.channels is not None:
            subscriber.allowed = grant.allows
        subscriber.sees_embargoed = grant.sees_embargoed
        expiry = None
        if grant.expires is not None:
            delay = max(0.0, grant.expires - time.time())
            expiry = asyncio.get_running_loop().call_later(
                delay, subscriber.close, CLOSE_POLICY, "the token has expired"
            )
        self.hub.connect(subscriber)
        return subscriber, expiry
