"""The load generator: ``python -m clients.loadgen`` (``seatcast-loadgen``).

It starts a server (seatcast, or with ``--compare`` also the references in
:mod:`clients.loadgen.references`), opens N websocket connections (RESP ones for Redis
pub/sub) over P client processes (:mod:`.subscribers`), publishes the 2024 night's
declarations at a rate (:mod:`.publisher`), and reports latency from stream entry to receipt,
deliveries per second, anything lost or out of order, connect times, and the server's memory
and CPU (:mod:`.report`).
"""

from clients.loadgen.cli import main

__all__ = ["main"]
