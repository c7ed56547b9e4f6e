"""Bucket counters for a server's histograms (write latency, apply lag).

The hot path does one :func:`bisect.bisect_left` and two additions per observation (the
server appends a write's latency to a list, counted into the buckets once per batch
applied); the buckets are read, and made cumulative as Prometheus wants them, only when
someone asks (:meth:`Histogram.counts`). Nothing here knows about Prometheus:
:mod:`trioraft.metrics` exports the counts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import attrs

__all__ = ["APPLY_LAG_BUCKETS", "WRITE_LATENCY_BUCKETS", "Histogram", "HistogramCounts"]

#: Upper bounds (seconds) of the write latency buckets: from a write's proposal on the
#: leader to its application there.
WRITE_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Upper bounds (entries) of the apply lag buckets: committed entries not yet applied,
#: seen each time the server applies a batch of them.
APPLY_LAG_BUCKETS = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0)


@attrs.frozen
class HistogramCounts:
    """A histogram as it stands: ``buckets`` are ``(upper bound, observations at or
    below it)`` pairs, cumulative and ascending, the last bound ``inf``; ``count`` is the
    number of observations and ``sum`` their total."""

    buckets: tuple[tuple[float, int], ...] = ()
    count: int = 0
    sum: float = 0.0


class Histogram:
    """Observations counted into fixed buckets (``bounds``: ascending upper bounds; a
    value above the last one goes into an overflow bucket, Prometheus's ``+Inf``). A
    value equal to a bound counts in that bound's bucket (Prometheus's ``le``)."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be distinct and ascending, got {bounds!r}")
        self._bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def observe_all(self, values: Sequence[float]) -> None:
        """Count each of ``values`` (cheaper per value than :meth:`observe`: a server
        collects a batch's latencies in a list, then counts them at once)."""
        counts, bounds = self._counts, self._bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self._sum += sum(values)

    def counts(self) -> HistogramCounts:
        """The buckets so far, cumulative (a copy: later observations do not change it)."""
        running = 0
        buckets = []
        for bound, n in zip((*self._bounds, float("inf")), self._counts, strict=True):
            running += n
            buckets.append((bound, running))
        return HistogramCounts(tuple(buckets), running, self._sum)
