"""What a server lets others watch: its leadership (``leadership()``, ``terms()``), its
role changes (``role_changes()``), its tracer, and its statistics.

Owns: the ``leadership()`` bodies' cancel scopes (their deadline follows the lease), the
queues of the ``role_changes()`` loops, the tracer (and what it raised), the count of
elections, the :class:`Counters` the other rooms add to, and ``statistics()``. May not
touch: the node but to read its live soft state (role, term,
commit, lease); the callers' waits (it waits as they do, through :mod:`.waiters`); the
tasks.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._clock import Clock
from .._core.node import RaftNode
from .._core.ready import SoftState
from .._core.types import Role
from .._histogram import APPLY_LAG_BUCKETS, Histogram
from .records import ServerStatistics, Status, TraceEvent
from .waiters import Waiters

__all__ = ["Counters", "Watch"]

#: The roles of a server that started an election in its term.
_CAMPAIGNING = (Role.CANDIDATE, Role.LEADER)


class Counters:
    """What :meth:`Watch.statistics` reports that other rooms count: a few additions per
    Ready, no more."""

    __slots__ = ("apply_lag", "installed", "received", "sent", "taken")

    def __init__(self) -> None:
        self.sent = 0  # messages (replication)
        self.received = 0  # messages (the driver)
        self.taken = 0  # snapshots taken here (apply)
        self.installed = 0  # snapshots installed from a leader (apply)
        #: Committed entries not yet applied, seen at each batch applied (apply).
        self.apply_lag = Histogram(APPLY_LAG_BUCKETS)


class Watch:
    """Leadership, role changes, the tracer and the statistics of one server."""

    def __init__(
        self,
        name: str,
        node: RaftNode,
        clock: Clock,
        waiters: Waiters,
        tracer: Callable[[TraceEvent], None] | None,
        status: Callable[[], Status],
    ) -> None:
        self._name = name
        self._node = node
        self._clock = clock
        self._waiters = waiters
        self._status = status
        self.tracer = tracer
        #: What the tracer raised (a report for the program: raised, never a failure).
        self.tracer_error: Exception | None = None
        self._traced_commit = node.commit_index
        #: Bodies of ``leadership()``: (term, their cancel scope).
        self.leaderships: list[tuple[int, trio.CancelScope]] = []
        #: The queues of the running role_changes() loops.
        self._role_watchers: list[collections.deque[Status]] = []
        #: Set when a change of role, term or leader is queued for the watchers, and at
        #: the end (their own signal: the one for every Ready would wake them per batch).
        self._role_event = trio.Event()
        #: Elections this server started (the terms in which it campaigned).
        self.elections = 0
        self._election_term = 0
        self.counters = Counters()

    def statistics(self, last_applied: int) -> ServerStatistics:
        """:meth:`trioraft.Server.statistics`, for a server that applied up to
        ``last_applied``."""
        st = self._node.status()
        counters = self.counters
        waiters = self._waiters
        return ServerStatistics(
            role=st.role,
            term=st.term,
            commit_index=st.commit_index,
            last_applied=last_applied,
            apply_lag=max(0, st.commit_index - last_applied),
            writes_in_flight=len(waiters.writes),
            reads_in_flight=len(waiters.reads),
            messages_sent=counters.sent,
            messages_received=counters.received,
            snapshots_taken=counters.taken,
            snapshots_installed=counters.installed,
            snapshot_index=st.snapshot_index,
            log_length=st.log_length,
            elections=self.elections,
            write_latency=waiters.write_latency.counts(),
            apply_lag_entries=counters.apply_lag.counts(),
        )

    def trace(self, event: str, **data: Any) -> None:
        """Report ``event`` to the tracer (there is one)."""
        assert self.tracer is not None
        try:
            self.tracer(TraceEvent(trio.current_time(), self._name, event, data))
        except Exception as exc:
            # A tracer's exception (the testing toolkit's InvariantViolation) is a
            # report for the program, not an internal failure of this server.
            self.tracer_error = exc
            raise

    def trace_if(self, event: str, **data: Any) -> None:
        """Report ``event`` to the tracer, if there is one."""
        if self.tracer is not None:
            self.trace(event, **data)

    def soft_changed(self, soft: SoftState, role_changed: bool) -> None:
        """The core handed out a new soft state (``role_changed``: its role, term or
        leader changed)."""
        if role_changed and self._role_watchers:
            status = self._status()
            for queue in self._role_watchers:
                queue.append(status)
            self.wake_role_watchers()
        if soft.role in _CAMPAIGNING and soft.term != self._election_term:
            # A term in which it campaigned (a candidate, or at once a leader: a single
            # voter wins within one step): an election it started.
            self._election_term = soft.term
            self.elections += 1
        if self.tracer is not None:
            if role_changed:
                self.trace("role", role=soft.role, term=soft.term, leader=soft.leader)
            if soft.commit != self._traced_commit:
                self._traced_commit = soft.commit
                self.trace("commit", index=soft.commit)

    def follow_leaderships(self) -> None:
        """The bodies of leadership() run only while this server leads with its lease
        (§6.4.1): the deadline follows the lease; losing the term cancels them at once."""
        node = self._node
        for term, scope in self.leaderships:
            if node.role is not Role.LEADER or node.term != term:
                scope.cancel()
            else:
                scope.deadline = self._clock.deadline(node.lease_until)

    def end(self) -> None:
        """The server stopped: cancel every ``leadership()`` body."""
        for _, scope in self.leaderships:
            scope.cancel()

    def wake_role_watchers(self) -> None:
        """Wake the ``role_changes()`` loops (something was queued, or the end)."""
        self._role_event.set()
        self._role_event = trio.Event()

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[int]:
        """:meth:`trioraft.Server.leadership`."""
        node = self._node
        clock = self._clock
        waiters = self._waiters
        while True:
            waiters.check_running()
            if node.role is Role.LEADER and node.lease_until > clock.now():
                break
            await waiters.wait_changed()
        term = node.term
        entry = (term, trio.CancelScope(deadline=clock.deadline(node.lease_until)))
        self.leaderships.append(entry)
        try:
            with entry[1]:
                yield term
        finally:
            self.leaderships.remove(entry)

    async def terms(self) -> AsyncIterator[int]:
        """:meth:`trioraft.Server.terms`."""
        last = 0
        waiters = self._waiters
        while not waiters.stopped:
            node = self._node
            if (
                node.role is Role.LEADER
                and node.term > last
                and node.lease_until > self._clock.now()
            ):
                last = node.term
                yield last
                continue
            await waiters.changed().wait()

    async def role_changes(self) -> AsyncIterator[Status]:
        """:meth:`trioraft.Server.role_changes`."""
        queue: collections.deque[Status] = collections.deque([self._status()])
        self._role_watchers.append(queue)
        last = None
        try:
            while True:
                while queue:
                    status = queue.popleft()
                    if (status.role, status.term, status.leader) != last:
                        last = (status.role, status.term, status.leader)
                        yield status
                if self._waiters.stopped:
                    return
                await self._role_event.wait()
        finally:
            self._role_watchers.remove(queue)
