"""Number options for the command lines: finite, and 0 or more, or above 0.

``float("nan")`` and ``float("inf")`` parse, and compare false with every bound: a ``--wait
nan`` would wait for ever. They are refused with the rest.
"""

from __future__ import annotations

import argparse
import math
from typing import Any


def non_negative(kind: type[int] | type[float]) -> Any:
    """An argparse type: a finite number of ``kind``, 0 or more."""
    return _number(kind, allow_zero=True)


def positive(kind: type[int] | type[float]) -> Any:
    """An argparse type: a finite number of ``kind``, above 0."""
    return _number(kind, allow_zero=False)


def _number(kind: type[int] | type[float], *, allow_zero: bool) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < 0 or (value == 0 and not allow_zero):
            least = "0 or more" if allow_zero else "above 0"
            raise argparse.ArgumentTypeError(f"must be {least}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
