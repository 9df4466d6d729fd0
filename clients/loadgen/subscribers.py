"""One client process of the load generator: many connections (websocket, SSE or pollers) on
one event loop.

The parent talks to each process over a pipe, in three steps: the process connects and
subscribes its share of the connections and sends a ``Ready``; the parent publishes, then
sends a ``Finish`` naming, per channel, how many events were published and the last one's
seq; the process waits (bounded) until every connection has caught up, sends a ``Report``,
and closes its connections when the parent says ``"close"`` (or its lifetime runs out).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from clients.loadgen import histogram
from clients.loadgen.connections import Client, Totals
from clients.loadgen.limits import raise_open_files_limit
from clients.loadgen.links import open_link
from service.core.seq import Seq

MIXES = ("national", "national+constituency", "declarations", "mixed")
EXAMPLES = 5


def channels_for(index: int, mix: str, seed: int, seats: tuple[str, ...]) -> tuple[str, ...]:
    """The channels connection ``index`` subscribes to; the same for the same seed."""
    rng = random.Random(f"{seed}:{index}")
    kind = mix
    if mix == "mixed":
        draw = rng.random()
        kind = (
            "national" if draw < 0.5 else "national+constituency" if draw < 0.8 else "declarations"
        )
    if kind == "national":
        return ("national",)
    if kind == "declarations":
        return ("declarations",)
    if kind == "national+constituency":
        return ("national", f"constituency:{rng.choice(seats)}")
    raise ValueError(f"unknown mix {mix!r}: use one of {', '.join(MIXES)}")


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    worker: int
    url: str
    indexes: range
    mix: str
    seed: int
    seats: tuple[str, ...]
    link: str
    """``raw``, ``asyncio`` or ``resp`` (:mod:`.connections`), ``sse`` or ``poll``
    (:mod:`.http_links`)."""
    concurrency: int
    connect_timeout: float
    setup_timeout: float
    lifetime: float
    """Seconds after which the process closes everything and exits, whatever happens."""
    poll_interval: float = 1.0
    poll_wait: bool = False


@dataclass(frozen=True, slots=True)
class Finish:
    channels: dict[str, tuple[int, str]]
    """Channel -> (events published on it, the last one's seq)."""
    drain_timeout: float


@dataclass(slots=True)
class Ready:
    worker: int
    connected: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    connect_ms: bytes = b""
    """array('f') of handshake times, one per connection that opened."""
    setup_s: float = 0.0
    open_files_limit: int = 0


@dataclass(slots=True)
class Report:
    worker: int
    latency: bytes = b""
    """The latencies' histogram, encoded: see :mod:`clients.loadgen.histogram`."""
    delivered: int = 0
    bytes: int = 0
    first_receive: float = 0.0
    last_receive: float = 0.0
    gaps: int = 0
    """Deltas or events whose ``prev`` was not the last seq seen on the channel."""
    out_of_order: int = 0
    resyncs: int = 0
    """Snapshots after the first on a channel."""
    hellos: int = 0
    """hello messages after the first (the stream was begun again)."""
    unexpected: int = 0
    expected: int = 0
    """Deltas and events the published events should have brought, over all connections."""
    missing: int = 0
    lost: int = 0
    """Missing where a connection's chain broke: skipped with nothing to replace them."""
    undelivered: int = 0
    """Missing from the end of an intact chain: not yet arrived when the drain ended."""
    superseded: int = 0
    """Missing on a state channel whose chain is intact and complete (merged or resynced)."""
    incomplete: int = 0
    closed: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    http: dict[str, int] = field(default_factory=dict)
    """Pollers' answers by status, and by a cache's ``X-Cache-Status``."""
    drain_s: float = 0.0
    cpu_s: float = 0.0
    """This client process's CPU time from Ready to the end of the drain."""

    @classmethod
    def from_totals(cls, worker: int, totals: Totals) -> Report:
        latency = histogram.encode(histogram.of(totals.latency))
        report = cls(
            worker=worker, latency=latency, errors=dict(totals.errors), http=dict(totals.http)
        )
        for name in (
            "delivered", "bytes", "first_receive", "last_receive", "gaps", "out_of_order",
            "resyncs", "hellos", "unexpected",
        ):  # fmt: skip
            setattr(report, name, getattr(totals, name))
        return report

    def account(self, client: Client, finals: dict[str, tuple[int, str]]) -> None:
        """Add what one connection missed (once, at the end)."""
        if client.closed_code is not None:
            self.closed[client.closed_code] = self.closed.get(client.closed_code, 0) + 1
        for channel, chain in client.chains.items():
            final = finals.get(channel)
            if final is None:
                continue
            complete = chain.last is not None and chain.last >= Seq.parse(final[1])
            self.incomplete += not complete
            self.expected += final[0]
            missing = max(0, final[0] - chain.received)
            self.missing += missing
            if chain.gapped or (complete and (channel == "declarations" or chain.unanchored)):
                self.lost += missing
            elif not complete:
                # The chain is intact but stops short: the rest had not arrived when the
                # drain ended (or the server closed the connection).
                self.undelivered += missing
            else:
                # On a state channel the server may merge a slow client's deltas or send a
                # fresh snapshot instead (DESIGN guarantee 4): with the chain intact and the
                # final seq reached, what was skipped was superseded, not lost.
                self.superseded += missing


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.clients: list[Client] = []
        self.totals = Totals()
        self.failures: Counter[str] = Counter()
        self.examples: list[str] = []
        self.ready_cpu = 0.0

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self.plan.lifetime):
                self.pipe.send(await self.connect_all())
                finish = await self.receive()
                if isinstance(finish, Finish):
                    self.pipe.send(await self.drain(finish))
                    await self.receive()
        except TimeoutError:
            pass
        finally:
            await self.close_all()

    async def receive(self) -> object:
        """The parent's next message; waits on the pipe without blocking the loop."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(self.pipe.fileno(), wake)
        try:
            await readable
        finally:
            loop.remove_reader(self.pipe.fileno())
        try:
            return self.pipe.recv()
        except EOFError:
            return None

    def fail(self, reason: str, detail: str) -> None:
        self.failures[reason] += 1
        if len(self.examples) < EXAMPLES and detail not in self.examples:
            self.examples.append(detail)

    async def connect_all(self) -> Ready:
        plan = self.plan
        started = time.monotonic()
        gate = asyncio.Semaphore(plan.concurrency)
        times = array("f")

        async def open_one(index: int) -> None:
            async with gate:
                client = Client(channels_for(index, plan.mix, plan.seed, plan.seats), self.totals)
                began = time.perf_counter()
                try:
                    async with asyncio.timeout(plan.connect_timeout):
                        client.link = await open_link(
                            plan.link, plan.url, client, plan.poll_interval, plan.poll_wait
                        )
                except Exception as exc:
                    self.fail(_reason(exc), f"connect: {type(exc).__name__}: {exc}"[:300])
                    return
                times.append((time.perf_counter() - began) * 1000.0)
                self.clients.append(client)
                try:
                    client.link.subscribe(list(client.chains))
                    async with asyncio.timeout(plan.connect_timeout):
                        await client.ready.wait()
                except Exception as exc:
                    reason = {"resp": "not subscribed", "poll": "no first answer"}.get(
                        plan.link, "no snapshot"
                    )
                    self.fail(reason, f"subscribe: {type(exc).__name__}: {exc}"[:300])

        tasks = [asyncio.create_task(open_one(index)) for index in plan.indexes]
        _, pending = await asyncio.wait(tasks, timeout=plan.setup_timeout)
        for task in pending:
            task.cancel()
            self.failures["setup timeout"] += 1
        await asyncio.gather(*pending, return_exceptions=True)
        connected = sum(1 for c in self.clients if c.ready.is_set() and c.closed_code is None)
        self.ready_cpu = time.process_time()
        return Ready(
            worker=plan.worker,
            connected=connected,
            failures=dict(self.failures),
            examples=self.examples,
            connect_ms=times.tobytes(),
            setup_s=time.monotonic() - started,
            open_files_limit=raise_open_files_limit(),
        )

    async def drain(self, finish: Finish) -> Report:
        started = time.monotonic()
        deadline = started + finish.drain_timeout
        finals = {channel: Seq.parse(last) for channel, (_, last) in finish.channels.items()}
        waiting = [c for c in self.clients if c.ready.is_set()]
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if c.closed_code is None and not c.caught_up(finals)]
            if waiting:
                await asyncio.sleep(0.1)
        drain_s = time.monotonic() - started
        # Taken before the report builds its histogram, which is not part of the measuring.
        cpu_s = time.process_time() - self.ready_cpu
        report = Report.from_totals(self.plan.worker, self.totals)
        report.drain_s, report.cpu_s = drain_s, cpu_s
        for client in self.clients:
            if client.ready.is_set():
                report.account(client, finish.channels)
        return report

    async def close_all(self) -> None:
        links = [c.link for c in self.clients if c.link is not None]
        for client in self.clients:
            client.closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        for link in links:
            link.abort()


def _reason(exc: BaseException) -> str:
    errno = getattr(exc, "errno", None)
    return f"{type(exc).__name__} (errno {errno})" if errno else type(exc).__name__


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """Entry point of a client process (started with the spawn method)."""
    raise_open_files_limit()
    try:
        asyncio.run(Worker(plan, pipe).run())
    finally:
        pipe.close()
