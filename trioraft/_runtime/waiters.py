"""The callers waiting on a server, and whether they may still wait.

Owns: the writes waiting for their entry (by log index) and the reads waiting for
their read index (by the core's ticket), with the :class:`Waiter` each parks on; the
outcomes of :meth:`~trioraft.Server.submit`'s writes due to their callbacks; the
latency of each write answered; the broadcast of "something changed" that every other
wait sleeps on; and the server's end (stopped, or failed), which every call then
raises. May not touch: the node, the state machine, the tasks. What to answer, and
when, is handed to it: an applied entry's result, reads confirmed or failed, the writes
whose outcome the core reports unknown, the end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import outcome
import trio

from .._core.messages import Entry, EntryKind
from .._errors import (
    NotLeader,
    OutcomeUnknown,
    ServerFailed,
    ServerStopped,
    StoppedOutcomeUnknown,
)
from .._histogram import WRITE_LATENCY_BUCKETS, Histogram

__all__ = [
    "CallbackWaiter",
    "DueCallbacks",
    "Signal",
    "Waiter",
    "Waiters",
    "WriteCallback",
]

logger = logging.getLogger("trioraft")


class Waiter:
    """One caller waiting for the runtime to hand it a value or an exception (the first
    one handed wins). Built on Trio's low-level parking, not an Event: a write's reply
    is on the hot path, and this wakes the caller with one reschedule and nothing else."""

    __slots__ = ("_outcome", "_task", "started", "term")

    def __init__(self, term: int = 0, started: float = 0.0) -> None:
        self.term = term
        #: When the write was proposed (``trio.current_time()``), for its latency.
        self.started = started
        self._task: trio.lowlevel.Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None

    def resolve(self, value: Any) -> None:
        self._finish(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._finish(outcome.Error(error))

    def _finish(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    def wait(self) -> Awaitable[Any]:
        """``await waiter.wait()``: the value or exception handed over (cancellable: a
        cancelled caller stops waiting, and what is handed later is dropped). A plain
        function returning Trio's parking trap, so a write's wait adds no frame of its own
        to the chain each wake-up passes through."""
        result = self._outcome
        if result is not None:
            return _checkpoint_then(result)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self)  # self is the abort function

    def __call__(self, _: Any) -> trio.lowlevel.Abort:
        """Trio's abort function of the wait: the caller was cancelled (the waiter is its
        own, so that a wait allocates no bound method)."""
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


#: What :meth:`~trioraft.Server.submit` calls with a write's outcome.
WriteCallback = Callable[[outcome.Outcome[Any]], object]
#: Outcomes waiting for their callbacks, in the order they came.
DueCallbacks = list[tuple[WriteCallback, outcome.Outcome[Any]]]


class CallbackWaiter(Waiter):
    """A write with no task waiting: what is handed over is queued, with the callback to
    give it to, on ``due`` (the server calls the callbacks once the Ready that produced
    the outcomes has been carried out and advanced, never in the middle of one)."""

    __slots__ = ("_callback", "_due")

    def __init__(
        self, term: int, callback: WriteCallback, due: DueCallbacks, started: float = 0.0
    ) -> None:
        super().__init__(term, started)
        self._callback = callback
        self._due = due

    def _finish(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        self._due.append((self._callback, result))


async def _checkpoint_then(result: outcome.Outcome[Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return result.unwrap()


class Signal:
    """A wake-up flag for one task: ``set`` is never lost, ``wait`` consumes it. A flag,
    and an Event only while the task waits (none per ``set``)."""

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: trio.Event | None = None

    def set(self) -> None:
        if not self._set:
            self._set = True
            if self._event is not None:
                self._event.set()

    async def wait(self) -> None:
        if self._set:
            await trio.lowlevel.checkpoint()
        else:
            self._event = event = trio.Event()
            try:
                await event.wait()
            finally:
                self._event = None
        self._set = False

    def clear(self) -> None:
        """Forget a ``set`` not yet consumed (its reason has been dealt with)."""
        self._set = False


class Waiters:
    """The callers waiting on one server (see the module's documentation)."""

    def __init__(self, name: str, leader: Callable[[], str | None]) -> None:
        self._name = name
        #: The leader as the server knows it now (a refusal names it).
        self._leader = leader
        #: Writes (and membership changes) waiting for their entry, by log index.
        self.writes: dict[int, Waiter] = {}
        #: Linearizable reads waiting for their read index, by ticket.
        self.reads: dict[int, Waiter] = {}
        #: Outcomes of submit()'s writes, with their callbacks, to call after the Ready.
        self.callbacks_due: DueCallbacks = []
        #: Set whenever anything a caller may wait on changed, then forgotten; made only
        #: when a caller waits (:meth:`changed`): no Event per Ready that nobody waits for.
        self._changed: trio.Event | None = None
        self.stopped = False
        #: Set when the server stopped itself because an internal invariant broke.
        self.failure: ServerFailed | None = None
        #: When the entries being applied were applied (for the writes' latencies).
        self.applied_at = 0.0
        self._latencies: list[float] = []  # of the batch being applied
        self.write_latency = Histogram(WRITE_LATENCY_BUCKETS)

    def check_running(self) -> None:
        """Raise what a call on a stopped (or failed) server raises."""
        if self.stopped:
            if self.failure is not None:
                raise self.failure
            raise ServerStopped(f"server {self._name!r} is stopped")

    def changed(self) -> trio.Event:
        """The event the next :meth:`notify_changed` sets."""
        changed = self._changed
        if changed is None:
            self._changed = changed = trio.Event()
        return changed

    async def wait_changed(self) -> None:
        """Wait until something changed; raise if the server stopped meanwhile."""
        await self.changed().wait()
        self.check_running()

    def notify_changed(self) -> None:
        """Wake every :meth:`wait_changed`."""
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def wait_for(self, entry: Entry, started: float = 0.0) -> Any:
        """Wait for ``entry`` to be applied; its result (or what :meth:`answer` and the
        others fail it with)."""
        waiter = Waiter(entry.term, started)
        writes = self.writes
        writes[entry.index] = waiter
        try:
            return await waiter.wait()
        finally:
            if writes.get(entry.index) is waiter:
                del writes[entry.index]

    def answer(self, entry: Entry, value: Any, error: BaseException | None) -> None:
        """``entry`` was applied with this result: hand it to its writer, if one waits
        (an entry of another term at its index was a newer leader's: ``NotLeader``)."""
        waiter = self.writes.pop(entry.index, None)
        if waiter is None:
            return
        if waiter.term != entry.term:
            waiter.fail(
                NotLeader(
                    self._leader(), "the entry was replaced by a newer leader's; it was not applied"
                )
            )
            return
        kind = entry.kind
        if kind is EntryKind.COMMAND or kind is EntryKind.CLIENT:
            self._latencies.append(self.applied_at - waiter.started)
        if error is not None:
            waiter.fail(error)
        else:
            waiter.resolve(value)

    def answered(self) -> None:
        """A batch of entries was applied: count the latencies of the writes it answered."""
        if self._latencies:
            self.write_latency.observe_all(self._latencies)
            self._latencies.clear()

    def reads_answered(self, reads: Iterable[tuple[int, int]], failed: Iterable[int]) -> None:
        """Hand confirmed reads their read index; fail the reads the core gave up on."""
        for ticket, read_index in reads:
            waiter = self.reads.get(ticket)
            if waiter is not None:
                waiter.resolve(read_index)
        for ticket in failed:
            waiter = self.reads.get(ticket)
            if waiter is not None:
                waiter.fail(
                    NotLeader(self._leader(), "leadership was lost before the read was confirmed")
                )

    def outcome_unknown(self, indexes: Iterable[int]) -> None:
        """The writes of these entries cannot know their outcome (the core said so: the
        server lost its leadership before they committed)."""
        for index in indexes:
            self.writes.pop(index).fail(
                OutcomeUnknown(
                    f"{self._name!r} lost leadership before entry {index} committed; "
                    "the write may or may not take effect"
                )
            )

    def run_callbacks(self) -> None:
        """Give submitted writes their outcomes (a callback may submit again: those
        outcomes come after a later Ready)."""
        due = self.callbacks_due
        while due:
            batch = due[:]
            del due[:]
            for callback, result in batch:
                try:
                    callback(result)
                except Exception:
                    logger.exception("%s: a write's callback raised", self._name)

    def shutdown(self) -> None:
        """The server stopped: every write waiting may or may not take effect, every
        read fails."""
        why = f" ({self.failure})" if self.failure is not None else ""
        for index, waiter in sorted(self.writes.items()):
            waiter.fail(
                StoppedOutcomeUnknown(
                    f"server {self._name!r} stopped before entry {index} was applied; "
                    f"the write may or may not take effect{why}"
                )
            )
        self.writes.clear()
        self.run_callbacks()
        for waiter in self.reads.values():
            waiter.fail(self.failure or ServerStopped(f"server {self._name!r} stopped"))
        self.reads.clear()
