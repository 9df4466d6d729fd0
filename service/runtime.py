"""One running service: the tally, the stream reader and the hub, and what the reader tells it.

The runtime is the tally's one owner. The reader only reads: it hands each decoded entry to
the runtime (``FeedListener``), which applies it (``service.core.tallies``: to the tally
clients see, or to the one being rebuilt off to the side), hands the changes to the hub, wakes
the subscribers the hub returns, and counts. The hub and the REST answers read the tally the
runtime gives them: ``Runtime.tally``, handed to the hub at start and on every fresh start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service import gc_policy
from service.access import Access
from service.core.election import Election
from service.core.events import Event
from service.core.seq import Seq
from service.core.shapes import FeedCheckState
from service.core.tallies import Tallies
from service.core.tally import Applied, Tally
from service.fanout.embargo import Embargo
from service.fanout.flat_view import flat_document
from service.fanout.hub import Hub
from service.fanout.subscriber import Subscriber
from service.feed import Feed, Rejection, read_timeout
from service.longpoll import Waiters
from service.metrics import Metrics
from service.protocol.stream import AsyncRedis
from service.settings import Settings
from service.transport.admission import Admission
from service.webhooks import Webhooks, parse_targets

log = logging.getLogger("seatcast")
STOP_GRACE = 0.5
"""Seconds the stream reader gets to stop, before and after its connections are dropped."""
FLUSH_EVERY = 32
"""Within a large batch of stream entries (catching up, a burst), hand clients what they
have every this many events, so that queues hold a slice of the burst and not all of it."""


@dataclass
class Runtime:
    """Everything one running service holds, reachable from requests as app.state.runtime;
    the stream reader's ``FeedListener``."""

    settings: Settings
    election: Election
    metrics: Metrics = field(default_factory=Metrics)
    tallies: Tallies = field(init=False)
    hub: Hub = field(init=False)
    webhooks: Webhooks = field(init=False)
    feed: Feed = field(init=False)
    redis: AsyncRedis = field(init=False)
    client: aioredis.Redis = field(init=False)
    """For requests (the readiness ping); the reader has a client of its own."""
    reader: aioredis.Redis = field(init=False)
    access: Access = field(init=False)
    admission: Admission = field(init=False)
    waiters: Waiters = field(init=False)
    """Requests held by ``?wait=`` until their channel changes."""
    connected: bool = False
    _published: list[Seq] = field(default_factory=list)
    _changed: set[str] = field(default_factory=set)
    _embargo_timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        if settings.redis_url is None:
            raise ValueError("create_app needs a redis_url (the caller starts the embedded one)")
        self.access = Access(
            secret=settings.token_secret,
            public_key=settings.token_public_key,
            required=settings.require_token,
            allowed_origins=tuple(o.strip() for o in settings.allowed_origins.split(",") if o),
            metrics_token=settings.metrics_token,
        )
        self.tallies = Tallies(self.election)
        self.redis = AsyncRedis(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.client = self.redis.client()
        # The reader retries by itself (with backoff, and telling /readyz), so its client
        # does not retry behind its back; see service.feed for its timeout.
        timeout = read_timeout(self.redis.socket_timeout)
        self.reader = self.redis.client(socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.feed = Feed(
            self.reader,
            settings.stream,
            settings.rejected,
            self.election,
            self,
            batch=settings.read_batch,
            socket_timeout=timeout,
            primary_check=self.redis.primary_check(self.reader),
        )
        self.hub = Hub(
            self.tally,
            history=settings.history,
            max_channels=settings.max_channels,
            rate_limit=settings.rate_limit,
            on_send=self.metrics.messages_sent.inc,
            on_slow_close=self.metrics.slow_closes.inc,
            on_resume_wait=self._schedule_resume_expiry,
            embargo=Embargo(on_hold=self._schedule_lift),
        )
        self.admission = Admission(self.hub, self.access, settings.queue_bytes)
        self.waiters = Waiters(settings.long_poll_waiters)
        self.webhooks = Webhooks(
            parse_targets(settings.webhooks, self.election),
            lambda channel: flat_document(self.hub, channel),
            self.metrics,
            interval=settings.webhook_interval,
            timeout=settings.webhook_timeout,
        )

    @property
    def ready(self) -> bool:
        """Caught up once: the state is whole and may be served."""
        return self.admission.ready

    @property
    def tally(self) -> Tally:
        """The state clients see (another may be being rebuilt, off to the side)."""
        return self.tallies.shown

    @staticmethod
    def _wake(subscribers: list[Subscriber]) -> None:
        for subscriber in subscribers:
            subscriber.sink.wake()

    def _schedule_lift(self, until: float) -> None:
        if self._embargo_timer is not None:
            self._embargo_timer.cancel()
        delay = max(0.0, until - time.time()) + 0.01
        self._embargo_timer = asyncio.get_running_loop().call_later(delay, self._lift_embargo)

    def _lift_embargo(self) -> None:
        self._wake(self.hub.lift_embargo())
        self.waiters.changed(["national"])
        self.webhooks.channel_changed("national")  # they get the public view: it changed

    def _schedule_resume_expiry(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(
            delay + 0.01, lambda: self._wake(self.hub.expire_waiting())
        )

    def entry(self, seq: Seq, event: Event, *, quiet: bool) -> None:
        self._applied(seq, self.tallies.apply(seq, event, quiet=quiet))

    def _applied(self, seq: Seq, applied: Applied) -> None:
        if applied.feed_check is not None:
            self._feed_checked(seq, applied.feed_check)
        if applied.stale:
            self.metrics.events_stale.inc()
            return
        self.metrics.events_applied.inc()
        if applied.changes:
            self.hub.publish(applied.changes)
            self.webhooks.changed(applied.changes)
            self._changed.update(change.channel for change in applied.changes)
            self._published.append(seq)
            if len(self._published) >= FLUSH_EVERY:
                self.batch_done()

    def _feed_checked(self, seq: Seq, check: FeedCheckState) -> None:
        results = check["results"]
        over = f"{check['source']}'s totals over {results} result{'' if results == 1 else 's'}"
        self.metrics.feed_check_agrees.set(1 if check["agrees"] else 0)
        if check["agrees"]:
            log.info("entry %s: %s agree with ours", seq, over)
            return
        self.metrics.feed_check_disagreements.inc()
        differences = "; ".join(
            f"{code} {figure} {feeds} (ours {ours})"
            for code, figures in check["differences"].items()
            for figure, (feeds, ours) in figures.items()
        )
        log.warning("entry %s: %s disagree with ours: %s", seq, over, differences)

    def batch_done(self) -> None:
        """After each batch of stream entries: one write per client with new messages."""
        self._wake(self.hub.flush())
        if self._changed:
            self.waiters.changed(self._changed)
            self._changed.clear()
        if self.ready:
            now = time.time()
            for seq in self._published:
                self.metrics.fanout_latency.observe(max(0.0, now - seq.ms / 1000))
        self._published.clear()

    def rejected(self, rejection: Rejection) -> None:
        self.tallies.skip(rejection.seq)
        self.metrics.events_rejected.inc()
        log.warning("rejected %s", rejection.reason)

    def epoch_adopted(self, epoch: Seq) -> None:
        self.hub.adopt_epoch(epoch)

    def settled(self) -> None:
        self.hub.settled(self.tallies.settle())

    def lag(self, seconds: float) -> None:
        self.metrics.stream_lag.set(seconds)

    def begin(self, epoch: Seq, *, rebuild: bool) -> None:
        self.tallies.begin(rebuild=rebuild)
        if not rebuild:
            self._reset(epoch)

    def rebuilt(self, epoch: Seq) -> None:
        self.tallies.hand_over()
        self._reset(epoch)

    def _reset(self, epoch: Seq) -> None:
        """Clients get the tally shown afresh: a new hello and fresh snapshots."""
        if self._embargo_timer is not None:
            self._embargo_timer.cancel()
        self._wake(self.hub.reset(self.tally, epoch))
        self._changed.clear()
        self.waiters.everything_changed()
        self.webhooks.everything_changed()

    def caught_up(self) -> None:
        """Caught up: at start-up, and again after each reconnect."""
        self.metrics.ready.set(1)
        if not self.ready:
            gc_policy.freeze_startup()
            self.webhooks.everything_changed()
            self.admission.caught_up.set()

    def reader_connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.redis_connected.set(1 if connected else 0)
        if not connected:
            self.metrics.redis_errors.inc()
            self.metrics.ready.set(0)

    @property
    def current(self) -> bool:
        """The reader is connected and has applied the stream as it stood when it last
        (re)connected: with Redis reachable, what /readyz calls ready."""
        return self.ready and self.connected and self.feed.caught_up


async def stop_feed(task: asyncio.Task[None], client: aioredis.Redis) -> None:
    """Cancel the feed and wait for it, bounded: on SIGTERM the service must go promptly
    (its clients were told 1012 and reconnect elsewhere).

    Not ``await task``: that would pass our own cancellation on to it and then wait however
    long it takes. redis-py can swallow a cancellation that lands mid-command and go on
    reading (seen with the feed's pipeline on Python 3.11); dropping its connections makes
    that read fail, and a failing feed that is being cancelled stops.
    """
    task.cancel()
    if (await asyncio.wait({task}, timeout=STOP_GRACE))[0]:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await client.connection_pool.disconnect()
    if not (await asyncio.wait({task}, timeout=STOP_GRACE))[0]:
        log.error("the stream reader did not stop; exiting without it")
