"""Latency histograms and quantiles, one rule for every figure: hdrhistogram's.

Values are kept in microseconds to three significant figures (1 µs below 2 ms, 64 µs at
100 ms, 1 ms at 1 s). A quantile is hdrhistogram's: the sample at rank ``round(q * count)``
(at least 1), reported as the highest value equivalent to it, so never below that sample.
A client process sends its histogram encoded (:func:`encode`); the parent adds them up
(:func:`merged`).

Recording one value costs hdrhistogram a few µs of Python, a third of what the raw client
spends on a whole message; so the hot loop only appends each latency to an ``array`` and
:func:`of` records them after the drain, outside the measured window.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

HIGHEST_US = 3_600_000_000
"""An hour: anything longer counts as an hour (every run is bounded far below it)."""
SIGNIFICANT_FIGURES = 3


def new() -> HdrHistogram:
    """An empty histogram; every one the load generator makes has this shape, so they add."""
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT_FIGURES)


def of(samples_ms: Iterable[float]) -> HdrHistogram:
    """A histogram of ``samples_ms`` (milliseconds); below 0 counts as 0."""
    histogram = new()
    # Rounded up to the µs, so that no quantile comes out below the true one. Equal values
    # are recorded once with their count: far fewer calls than samples.
    counted = Counter(min(HIGHEST_US, max(0, math.ceil(ms * 1000.0))) for ms in samples_ms)
    for value_us, count in counted.items():
        histogram.record_value(value_us, count)
    return histogram


def encode(histogram: HdrHistogram) -> bytes:
    """The histogram as hdrhistogram's compressed, base64 encoding, to send between processes."""
    encoded: bytes = histogram.encode()
    return encoded


def merged(encoded: Iterable[bytes]) -> HdrHistogram:
    """The sum of encoded histograms (empty when there are none)."""
    total = new()
    for blob in encoded:
        total.decode_and_add(blob)
    return total


def quantile(histogram: HdrHistogram, q: float) -> float | None:
    """The latency (ms) at or below which a fraction ``q`` of the samples lie; None if empty."""
    if not histogram.get_total_count():
        return None
    return float(histogram.get_value_at_percentile(q * 100.0)) / 1000.0


def maximum(histogram: HdrHistogram) -> float | None:
    """The largest sample (ms), as hdrhistogram holds it (equal to ``quantile(h, 1.0)``)."""
    if not histogram.get_total_count():
        return None
    return float(histogram.get_max_value()) / 1000.0


def mean(histogram: HdrHistogram) -> float | None:
    if not histogram.get_total_count():
        return None
    return float(histogram.get_mean_value()) / 1000.0
