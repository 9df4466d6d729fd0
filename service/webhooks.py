"""Push-out: the flat JSON of a channel sent to each webhook target when the channel changes.

Each target has a task of its own and holds one pending document at most: changes that
come while a request is in flight, or within the target's interval, are coalesced and the
latest state goes (latest value wins). A failed request is retried with capped, jittered
backoff, sending whatever is latest by then. Nothing here is awaited by the stream reader
or the fan-out: ``changed`` only marks targets, so a slow or failing receiver delays no
one but itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from service.core.election import Election
from service.core.flat import Flat
from service.core.tally import DECLARATIONS, NATIONAL, Change
from service.metrics import Metrics

log = logging.getLogger("seatcast.webhooks")
# httpx logs every request's whole URL at INFO, a target's password and query (which may
# hold a key) included; a failure is logged here, under the target's label, instead.
logging.getLogger("httpx").setLevel(logging.WARNING)

METHODS = ("PUT", "POST")
BACKOFF_START = 0.5
BACKOFF_CAP = 30.0


class WebhookError(ValueError):
    """A webhook list that cannot be used; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    channel: str = NATIONAL
    """``national``, ``declarations`` (the latest entry) or ``constituency:<id>``."""
    method: str = "PUT"

    @property
    def label(self) -> str:
        """The URL without credentials or query (which may hold a token), for metrics and logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_targets(spec: str | None, election: Election) -> tuple[Target, ...]:
    """Targets from ``SEATCAST_WEBHOOKS``: comma-separated URLs (each gets ``national`` by
    PUT), or ``@FILE`` with one target a line: ``URL [CHANNEL] [METHOD]``, where CHANNEL is
    ``national``, ``latest`` or ``constituency:<id>``; blank lines and ``#`` comments are
    skipped. Raises WebhookError naming the bad entry."""
    if not spec or not spec.strip():
        return ()
    if not spec.startswith("@"):
        urls = [url.strip() for url in spec.split(",") if url.strip()]
        for number, url in enumerate(urls, 1):
            if len(url.split()) > 1:
                raise WebhookError(
                    f"webhook {number}: {url!r} is not one URL: a channel or method needs the "
                    "@FILE form, one 'URL [CHANNEL] [METHOD]' a line"
                )
        return tuple(_target([url], f"webhook {n}", election) for n, url in enumerate(urls, 1))
    path = Path(spec[1:])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebhookError(f"{path}: cannot read the webhook list: {exc}") from exc
    targets = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if words:
            targets.append(_target(words, f"{path}, line {number}", election))
    return tuple(targets)


def _target(words: list[str], where: str, election: Election) -> Target:
    if len(words) > 3:
        raise WebhookError(f"{where}: expected 'URL [CHANNEL] [METHOD]', got {len(words)} words")
    url = words[0]
    channel = words[1] if len(words) > 1 else NATIONAL
    method = words[2] if len(words) > 2 else "PUT"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"{where}: {url!r} is not an http:// or https:// URL")
    if channel == "latest":
        channel = DECLARATIONS
    seat_id = channel.removeprefix("constituency:")
    known = channel in (NATIONAL, DECLARATIONS) or (
        channel.startswith("constituency:") and seat_id in election.constituencies
    )
    if not known:
        raise WebhookError(
            f"{where}: no such channel {channel!r} (national, latest or constituency:<id>)"
        )
    if method.upper() not in METHODS:
        raise WebhookError(f"{where}: method {method!r} is not PUT or POST")
    return Target(url, channel, method.upper())


@dataclass(eq=False)
class _Pending:
    target: Target
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the target's channel changed since its document was last taken."""


class Webhooks:
    """One delivery task per target; ``changed`` marks the targets whose channel moved."""

    def __init__(
        self,
        targets: Iterable[Target],
        document: Callable[[str], Flat],
        metrics: Metrics,
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.document = document
        """Builds a channel's flat document as it stands (the public view)."""
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self._pending = [_Pending(target) for target in targets]
        self._by_channel: dict[str, list[_Pending]] = {}
        for pending in self._pending:
            self._by_channel.setdefault(pending.target.channel, []).append(pending)

    def changed(self, changes: Iterable[Change]) -> None:
        """The channels of ``changes`` moved: their targets want the latest document."""
        if not self._by_channel:
            return  # no webhooks: the common case costs one test per event
        for change in changes:
            for pending in self._by_channel.get(change.channel, ()):
                self._want(pending)

    def everything_changed(self) -> None:
        """Send every target its channel (once ready, and after the stream is begun again)."""
        for pending in self._pending:
            self._want(pending)

    def channel_changed(self, channel: str) -> None:
        """The channel's public view changed with no change of its own (an embargo lifted)."""
        for pending in self._by_channel.get(channel, ()):
            self._want(pending)

    def _want(self, pending: _Pending) -> None:
        if pending.wanted.is_set():
            # Folded into the next request.
            self.metrics.webhook_coalesced.labels(pending.target.label).inc()
        pending.wanted.set()

    async def run(self, ready: asyncio.Event) -> None:
        """Deliver until cancelled; nothing is sent before ``ready`` (the state is whole)."""
        await ready.wait()
        timeout = httpx.Timeout(self.timeout)
        headers = {"content-type": "application/json", "user-agent": "seatcast-webhooks"}
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            async with asyncio.TaskGroup() as group:
                for pending in self._pending:
                    group.create_task(self._deliver(client, pending))

    async def _deliver(self, client: httpx.AsyncClient, pending: _Pending) -> None:
        target = pending.target
        failures = 0
        while True:
            await pending.wanted.wait()
            pending.wanted.clear()
            started = time.monotonic()
            # Taken now, not when the change came: whatever came since is in it.
            body = orjson.dumps(self.document(target.channel))
            if await self._send(client, target, body):
                failures = 0
                wait = self.interval - (time.monotonic() - started)
            else:
                failures += 1
                pending.wanted.set()  # the latest still has to go
                ceiling = min(BACKOFF_CAP, BACKOFF_START * 2 ** (failures - 1))
                wait = max(self.interval, ceiling / 2 + random.random() * ceiling / 2)
            if wait > 0:
                await asyncio.sleep(wait)

    async def _send(self, client: httpx.AsyncClient, target: Target, body: bytes) -> bool:
        try:
            # The whole answer within the timeout (httpx's bounds each read alone, so a
            # trickle never ends), and its body never read: it could be sent without end.
            async with (
                asyncio.timeout(self.timeout),
                client.stream(target.method, target.url, content=body) as response,
            ):
                pass
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
        except TimeoutError:
            reason = f"no answer within {self.timeout:g} s"
        else:
            if response.is_success:
                self.metrics.webhook_sent.labels(target.label).inc()
                return True
            reason = f"HTTP {response.status_code}"
        self.metrics.webhook_failed.labels(target.label).inc()
        log.warning("webhook %s %s failed: %s", target.method, target.label, reason)
        return False


async def stop_webhooks(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
