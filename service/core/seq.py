"""Stream entry IDs as an ordered value.

Redis stream IDs compare as pairs of integers, never as text: ``"10-0" < "9-0"`` as strings.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Seq:
    """A Redis stream entry ID, ``<ms>-<n>``; ``ZERO`` (``"0-0"``) before any entry."""

    ms: int
    n: int

    @classmethod
    def parse(cls, text: str | bytes) -> Seq:
        """Parse ``"1720148400000-0"``; raises ValueError for anything else."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        ms, sep, n = text.partition("-")
        if not sep or not ms.isdigit() or not n.isdigit():
            raise ValueError(f"not a stream entry ID: {text!r}")
        return cls(int(ms), int(n))

    def __str__(self) -> str:
        return f"{self.ms}-{self.n}"


ZERO = Seq(0, 0)


class Entries:
    """Every stream entry ID applied, in order: whether a seq names one of them.

    Two arrays of integers (16 bytes an entry), appended in stream order and searched by
    bisection, so that even a night of 100,000 entries costs little to keep.
    """

    __slots__ = ("_ms", "_n")

    def __init__(self) -> None:
        self._ms = array("q")
        self._n = array("q")

    def add(self, seq: Seq) -> None:
        """Record the next entry; it must come after every entry recorded so far."""
        if self._ms and (seq.ms, seq.n) <= (self._ms[-1], self._n[-1]):
            raise ValueError(f"entry {seq} is not after the last recorded entry")
        self._ms.append(seq.ms)
        self._n.append(seq.n)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, Seq):
            return False
        low = bisect_left(self._ms, seq.ms)
        for index in range(low, bisect_right(self._ms, seq.ms)):
            if self._n[index] == seq.n:
                return True
        return False

    def __len__(self) -> int:
        return len(self._ms)
