"""One measured run: a server, the client processes, the publisher, and the numbers.

Every step is bounded: starting the server, connecting, publishing, draining and stopping
each wait at most their own timeout and never past the run's deadline.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import redis

from clients.loadgen import servers
from clients.loadgen.publisher import Night, Published, plan, prepare_stream, publish
from clients.loadgen.subscribers import Finish, Ready, Report, WorkerPlan, worker_main
from clients.loadgen.usage import Usage, machine_busy, usage

MARGIN = 30.0
"""Slack over a worker's own bound before the parent stops waiting for it."""
JOIN_TIMEOUT = 20.0
TRANSPORT_ARGS = {"sse": ("--sse-open-rate", "0")}
"""seatcast's options for a transport's run: every SSE subscriber opens from 127.0.0.1, and
the per-address limit on opening streams would refuse most of them."""
STOP_RESERVE = 5.0
"""Seconds kept back from the deadline for stopping the clients and the server."""


@dataclass(frozen=True, slots=True)
class Load:
    """The parameters every server in a run is measured with."""

    clients: int
    processes: int
    mix: str
    rate: float
    events: int
    seed: int = 0
    concurrency: int = 100
    connect_timeout: float = 10.0
    setup_timeout: float = 120.0
    drain_timeout: float = 30.0
    settle: float = 1.0
    link: str = "raw"
    """How websocket clients move bytes: see :mod:`clients.loadgen.connections`."""
    poll_interval: float = 1.0
    poll_wait: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """What to measure: a server the run starts, or one already running (``external``)."""

    kind: str
    url: str | None = None
    pid: int | None = None
    stream: str | None = None
    seatcast_args: tuple[str, ...] = ()
    seatcast_source: Path | None = None
    first_event: int = 0
    """Events of the plan an earlier run of this invocation published on the same stream."""
    transport: str = "ws"
    """``ws``, or for seatcast ``sse`` (``GET /sse``) or ``poll`` (its REST URLs); ``url``
    is then the server's http:// root (``servers.http_root``)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Machine-wide CPU use at one moment, to tell this run's share from everything else's."""

    monotonic: float
    busy_s: float
    """CPU seconds the machine has been busy (all cores)."""
    interrupts_s: float
    """Of which in interrupts and softirqs (much of it loopback TCP)."""
    publisher_s: float
    """This process's CPU seconds (it publishes)."""
    redis_s: float | None
    """The Redis server's own CPU seconds (INFO cpu), if it says."""


def sample(client: redis.Redis) -> Sample:
    redis_s: float | None = None
    try:
        info: Any = client.info("cpu")
        redis_s = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except (redis.RedisError, KeyError, ValueError):
        pass
    busy, interrupts = machine_busy()
    return Sample(time.monotonic(), busy, interrupts, time.process_time(), redis_s)


@dataclass(slots=True)
class Outcome:
    """Everything a run collected, raw; :mod:`clients.loadgen.report` turns it into figures."""

    target: Target
    load: Load
    url: str = ""
    link: str = ""
    """The clients' link: ``--client``'s, or ``resp`` for Redis pub/sub."""
    pid: int | None = None
    relay_pid: int | None = None
    """For ``redis``: the relay feeding the server, sampled apart from it."""
    stream: str = ""
    readies: list[Ready] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    published: Published | None = None
    before: Usage | None = None
    idle: Usage | None = None
    after: Usage | None = None
    relay_idle: Usage | None = None
    relay_after: Usage | None = None
    window: tuple[Sample, Sample] | None = None
    """The machine as a whole, from just before publishing to the end of the drain."""
    error: str | None = None
    server_exit: int | None = None
    worker_errors: list[str] = field(default_factory=list)


def run(
    target: Target,
    load: Load,
    night: Night,
    redis_url: str,
    deadline: float,
    log_dir: Path,
    keep_stream: bool = False,
) -> Outcome:
    """Measure one server; errors end up in ``Outcome.error``, never raised."""
    outcome = Outcome(target, load)
    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    server: servers.Server | None = None
    workers: list[tuple[BaseProcess, Connection]] = []
    stream = target.stream or f"loadgen:{uuid.uuid4().hex[:12]}:events"
    outcome.stream = stream
    outcome.link = servers.link_for(target.kind, load.link, target.transport)
    try:
        events = plan(night, load.events, target.first_event)
        if target.kind == "external":
            assert target.url is not None
            outcome.url, outcome.pid = target.url, target.pid
        else:
            prepare_stream(client, stream, night)
            server = servers.start(
                target.kind,
                stream,
                redis_url,
                log_dir,
                timeout=_within(deadline, 60.0),
                extra=(*TRANSPORT_ARGS.get(target.transport, ()), *target.seatcast_args),
                source=target.seatcast_source,
            )
            outcome.url, outcome.pid = servers.url_for(server, target.transport), server.pid
            outcome.relay_pid = server.relay.pid if server.relay is not None else None
        outcome.before = _usage(outcome.pid)
        workers = _start_workers(outcome.url, outcome.link, load, night.seats, deadline)
        outcome.readies = _collect(
            workers, Ready, _within(deadline, load.setup_timeout + MARGIN), outcome
        )
        if not any(r.connected for r in outcome.readies):
            raise RuntimeError("no connection was established: see the failures")
        time.sleep(load.settle)
        outcome.idle = _usage(outcome.pid)
        outcome.relay_idle = _usage(outcome.relay_pid)
        first = sample(client)
        # Publishing may use the run's time up to a few seconds before its deadline; what is
        # left after it bounds the drain.
        publish_bound = deadline - STOP_RESERVE
        if load.rate > 0:
            publish_bound = min(publish_bound, time.monotonic() + 2 * load.events / load.rate + 10)
        outcome.published = publish(client, stream, events, load.rate, publish_bound)
        if not outcome.published.ids:
            raise RuntimeError("nothing was published before the deadline: raise --timeout")
        drain = _within(deadline - STOP_RESERVE, load.drain_timeout)
        finish = Finish(outcome.published.channels, drain)
        for _, pipe in workers:
            pipe.send(finish)
        outcome.reports = _collect(workers, Report, drain + MARGIN, outcome)
        outcome.after = _usage(outcome.pid)
        outcome.relay_after = _usage(outcome.relay_pid)
        outcome.window = (first, sample(client))
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        _stop_workers(workers)
        if server is not None:
            outcome.server_exit = servers.stop(server)
            if not keep_stream:
                _forget(client, stream)
        client.close()
    return outcome


def _within(deadline: float, bound: float) -> float:
    return max(0.0, min(bound, deadline - time.monotonic()))


def _usage(pid: int | None) -> Usage | None:
    return usage(pid) if pid is not None else None


def _start_workers(
    url: str, link: str, load: Load, seats: tuple[str, ...], deadline: float
) -> list[tuple[BaseProcess, Connection]]:
    # spawn, not fork: the children start clean, with no copy of the parent's state.
    context = multiprocessing.get_context("spawn")
    lifetime = max(10.0, deadline - time.monotonic() + MARGIN)
    started: list[tuple[BaseProcess, Connection]] = []
    for worker in range(load.processes):
        plan = WorkerPlan(
            worker=worker,
            url=url,
            indexes=range(worker, load.clients, load.processes),
            mix=load.mix,
            seed=load.seed,
            seats=seats,
            link=link,
            poll_interval=load.poll_interval,
            poll_wait=load.poll_wait,
            concurrency=max(1, load.concurrency // load.processes),
            connect_timeout=load.connect_timeout,
            setup_timeout=load.setup_timeout,
            lifetime=lifetime,
        )
        parent, child = context.Pipe()
        process = context.Process(
            target=worker_main, args=(plan, child), name=f"loadgen-{worker}", daemon=True
        )
        process.start()
        child.close()
        started.append((process, parent))
    return started


def _collect(
    workers: list[tuple[BaseProcess, Connection]], kind: type[Any], timeout: float, outcome: Outcome
) -> list[Any]:
    """One message of ``kind`` from each worker, waiting at most ``timeout`` in all."""
    deadline = time.monotonic() + timeout
    waiting = {pipe: process for process, pipe in workers}
    got: list[Any] = []
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcome.worker_errors.append(
                f"{len(waiting)} client process(es) sent no {kind.__name__} in time"
            )
            break
        for pipe in wait(list(waiting), remaining):
            assert isinstance(pipe, Connection)
            process = waiting.pop(pipe)
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                outcome.worker_errors.append(
                    f"client process {process.name} ended (exit code {process.exitcode})"
                )
                continue
            if isinstance(message, kind):
                got.append(message)
    return got


def _stop_workers(workers: list[tuple[BaseProcess, Connection]]) -> None:
    for _, pipe in workers:
        try:
            pipe.send("close")
        except OSError:
            pass
    deadline = time.monotonic() + JOIN_TIMEOUT
    for process, pipe in workers:
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        pipe.close()


def _forget(client: redis.Redis, stream: str) -> None:
    try:
        client.delete(stream, f"{stream}:rejected")
    except redis.RedisError:
        pass
