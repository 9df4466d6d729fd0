"""Python's cyclic garbage collector, kept out of the fan-out's way.

A full collection walks every object the process holds. At 10,000 connections that was a
100 to 220 ms pause, four times in 20 s of 10 events/s: the whole of the latency tail
(PERFORMANCE.md). What seatcast keeps for long — the election, the tally's states,
connections — is freed by reference counting when it goes (service.transport.direct breaks the one
cycle a connection makes), and the cycles it does make die young, in the cheap collections
of the two younger generations. So:

- once the instance is ready, what the catch-up built is frozen: never walked again;
- full collections no longer start whenever the oldest generation grew by a quarter, but
  from a timer, every ``FULL_EVERY`` seconds, each one logged with its duration.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("seatcast")
FULL_EVERY = 600.0
"""Seconds between full collections: the only ones, and the only pauses of their size."""
NEVER = 1 << 30


def take_over() -> tuple[int, int, int]:
    """Leave full collections to ``run_full_collections``; returns the thresholds before."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], NEVER)
    return before


def freeze_startup() -> None:
    """The catch-up is done: what it built lives as long as the process (or is freed by
    reference counting), so the collector need not walk it again."""
    gc.collect()
    gc.freeze()


async def run_full_collections(every: float = FULL_EVERY) -> None:
    while True:
        await asyncio.sleep(every)
        started = time.perf_counter()
        found = gc.collect()
        log.info(
            "full garbage collection: %d unreachable objects, %.0f ms",
            found,
            (time.perf_counter() - started) * 1000,
        )
