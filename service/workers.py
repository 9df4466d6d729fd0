"""``--workers N``: shared-nothing service processes on one port."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket

from service.core.election import load_election
from service.server import ignore_stop_signals, serve
from service.settings import Settings

log = logging.getLogger("seatcast")


def run_workers(settings: Settings) -> None:
    """N shared-nothing service processes on one port: the kernel spreads connections over
    them (SO_REUSEPORT), each reads the stream itself, and any can resume any client (every
    instance has the same seqs). A stop signal here is passed on to every worker."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker, args=(settings, n), name=f"seatcast-worker-{n}")
        for n in range(settings.workers)
    ]
    for process in workers:
        process.start()
    log.info("%d workers on port %d", len(workers), settings.port)

    def stop(number: int, frame: object) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, number)

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stop)
    for process in workers:
        process.join()


def worker(settings: Settings, number: int) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{number}]: %(message)s",
    )
    ignore_stop_signals()
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    serve(settings, load_election(settings.election), sock)
