"""A fixed-bucket latency histogram: cheap to fill in the hot loop, exact to merge.

Buckets are 0.1 ms wide below 1 s, 1 ms below 10 s, 10 ms below 120 s, then one overflow
bucket; quantiles report a bucket's upper edge, so they are never optimistic.
"""

from __future__ import annotations

from array import array

FINE_END, MID_END, COARSE_END = 1_000.0, 10_000.0, 120_000.0
FINE = int(FINE_END * 10)  # 10,000 buckets of 0.1 ms
MID = FINE + int(MID_END - FINE_END)  # then 9,000 of 1 ms
COARSE = MID + int((COARSE_END - MID_END) / 10)  # then 11,000 of 10 ms
BUCKETS = COARSE + 1


def bucket(ms: float) -> int:
    if ms < FINE_END:
        return int(ms * 10) if ms > 0 else 0
    if ms < MID_END:
        return FINE + int(ms - FINE_END)
    if ms < COARSE_END:
        return MID + int((ms - MID_END) / 10)
    return COARSE


def upper_edge(index: int) -> float:
    if index < FINE:
        return (index + 1) / 10
    if index < MID:
        return FINE_END + (index - FINE + 1)
    if index < COARSE:
        return MID_END + (index - MID + 1) * 10
    return float("inf")


class Histogram:
    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = array("q", bytes(8 * BUCKETS))
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.counts[bucket(ms)] += 1
        self.count += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for index, n in enumerate(other.counts):
            if n:
                counts[index] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        """The smallest bucket edge at or below which a fraction ``q`` of values lie."""
        if not self.count:
            return None
        rank = max(1, int(q * self.count + 0.999999))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(upper_edge(index), self.max)
        return self.max

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def __getstate__(self) -> tuple[bytes, int, float, float]:
        return (self.counts.tobytes(), self.count, self.total, self.max)

    def __setstate__(self, state: tuple[bytes, int, float, float]) -> None:
        raw, self.count, self.total, self.max = state
        self.counts = array("q")
        self.counts.frombytes(raw)
