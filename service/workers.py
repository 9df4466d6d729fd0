"""``--workers N``: shared-nothing service processes on one port."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket

from service.core.election import load_election
from service.server import ignore_stop_signals, serve
from service.settings import Settings

log = logging.getLogger("seatcast")


def run_workers(settings: Settings) -> int:
    """N shared-nothing service processes on one port: the kernel spreads connections over
    them (SO_REUSEPORT), each reads the stream itself, and any can resume any client (every
    instance has the same seqs). A stop signal here is passed on to every worker.

    Returns the exit code: 0 once every worker has stopped when told to; 1 when a worker
    ended by itself (it could not bind the port, or failed), after stopping the others.
    """
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker, args=(settings, n), name=f"seatcast-worker-{n}")
        for n in range(settings.workers)
    ]
    for process in workers:
        process.start()
    log.info("%d workers on port %d", len(workers), settings.port)
    stopping = False

    def stop(number: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, number)

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stop)
    # Wait for the first worker to end: told to, or by itself (then the rest are stopped).
    ended = multiprocessing.connection.wait([process.sentinel for process in workers])
    by_itself = not stopping
    if by_itself:
        # A sentinel is ready as the worker exits, a moment before it can be reaped: join it.
        for process in [p for p in workers if p.sentinel in ended]:
            process.join()
            log.error(
                "worker %s ended by itself (exit code %s): stopping the others",
                process.name,
                process.exitcode,
            )
        stop(signal.SIGTERM, None)
    for process in workers:
        process.join()
    return 1 if by_itself or any(process.exitcode != 0 for process in workers) else 0


def worker(settings: Settings, number: int) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{number}]: %(message)s",
    )
    ignore_stop_signals()
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        raise SystemExit(1) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    serve(settings, load_election(settings.election), sock)
