"""Per-server clocks for simulated clusters: a clock that runs at a rate of its own and
jumps forward (a host whose oscillator drifts, a host that was suspended)."""

from __future__ import annotations

import math
from typing import Any

import trio

from .._clock import Clock

__all__ = ["DriftingClock", "check_clock_rate", "check_clock_jump"]


def check_clock_rate(value: Any) -> None:
    """``ValueError`` unless ``value`` is a clock rate: a positive, finite number (how
    many seconds the clock counts per second of virtual time)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(
            "a clock rate must be a positive, finite number (seconds counted per second "
            f"of virtual time), got {value!r}"
        )


def check_clock_jump(value: Any) -> None:
    """``ValueError`` unless ``value`` is a clock jump: a finite number of seconds
    ``>= 0`` (clocks only jump forward)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 and math.isfinite(value))
    ):
        raise ValueError(
            f"a clock jump must be a finite number of seconds >= 0 (forward), got {value!r}"
        )


class DriftingClock(Clock):
    """One server's clock in a simulated cluster. It reads Trio's (virtual) clock until
    it is first changed, at no cost; then it reads its own time: the reading at the last
    change plus the virtual time since, times :attr:`rate`."""

    def __init__(self) -> None:
        super().__init__()
        #: Seconds this clock counts per second of virtual time.
        self.rate = 1.0
        self._since = 0.0  # the virtual time of the last change...
        self._reading = 0.0  # ...and this clock's reading then

    def _drifted(self) -> float:
        return self._reading + (trio.current_time() - self._since) * self.rate

    def deadline(self, local: float) -> float:
        """The virtual time at which this clock will read ``local``, at its present rate
        (``inf`` stays ``inf``)."""
        if self.now is trio.current_time or math.isinf(local):
            return local
        since, reading, rate = self._since, self._reading, self.rate
        at = since + (local - reading) / rate
        # Rounding must not wake a timer a hair early, when this clock still reads less
        # than ``local``: the timer would find nothing due, and sleep until the very
        # same instant again (virtual time would stand still).
        while reading + (at - since) * rate < local:
            at = math.nextafter(at, math.inf)
        return at

    def _rebase(self, rate: float, jump: float) -> None:
        reading = self.now()
        self._since = trio.current_time()
        self._reading = reading + jump
        self.rate = rate
        self.now = self._drifted
        self.changed()

    def set_rate(self, rate: float) -> None:
        """From now on, count ``rate`` seconds per second of virtual time."""
        check_clock_rate(rate)
        self._rebase(float(rate), 0.0)

    def jump(self, seconds: float) -> None:
        """Move this clock forward by ``seconds`` at once."""
        check_clock_jump(seconds)
        self._rebase(self.rate, float(seconds))
