"""The clock a server reads: the ``now`` its core is given and its timers' deadlines.

The runtime reads time only through a :class:`Clock`: the time passed to the core
(every ``step``, ``tick``, proposal and read), the deadlines of its timers (the core's
deadline, a ``leadership()`` body's lease) and the durations of its own waits. The
default is Trio's clock itself, at no cost: :attr:`Clock.now` *is*
``trio.current_time``. ``trioraft.testing`` gives each server of a simulated cluster a
clock of its own, which may run at another rate or jump (``Cluster.set_clock_rate``).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["TRIO_CLOCK", "Clock"]


class Clock:
    """Trio's clock, as a server reads it. A subclass that runs otherwise overrides
    :meth:`deadline` and calls :meth:`changed` whenever its rate or reading changes."""

    def __init__(self) -> None:
        #: This clock's time now. An attribute rather than a method, so that the
        #: default is ``trio.current_time`` itself (no call in between, on every path).
        self.now: Callable[[], float] = trio.current_time
        self._watchers: list[Callable[[], None]] = []

    def deadline(self, local: float) -> float:
        """The Trio deadline at which this clock will read ``local`` (at its present
        rate): a deadline of the core's becomes a cancel scope's."""
        return local

    def after(self, seconds: float) -> float:
        """The Trio deadline ``seconds`` of this clock from now."""
        return self.deadline(self.now() + seconds)

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever this clock's rate or reading changes (the
        deadlines :meth:`deadline` gave are then out of date)."""
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (see :meth:`watch`)."""
        if callback in self._watchers:
            self._watchers.remove(callback)

    def changed(self) -> None:
        """Tell every watcher that this clock's rate or reading changed."""
        for callback in list(self._watchers):
            callback()


class _TrioClock(Clock):
    """Trio's clock itself, which never changes: it keeps no watchers (a process-wide
    list of every server would only hold them)."""

    def watch(self, callback: Callable[[], None]) -> None:
        """Nothing to watch: this clock never changes."""

    def unwatch(self, callback: Callable[[], None]) -> None:
        """Nothing to stop watching."""


#: The default clock of every server: Trio's.
TRIO_CLOCK: Clock = _TrioClock()
