"""Stream entry IDs as an ordered value.

Redis stream IDs compare as pairs of integers, never as text: ``"10-0" < "9-0"`` as strings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Seq:
    """A Redis stream entry ID, ``<ms>-<n>``; ``Seq.ZERO`` (``"0-0"``) before any entry."""

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
