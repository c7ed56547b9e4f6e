"""The state machine's side: applying entries, answering linearizable reads, client
sessions, the time stamped into the log, and snapshots (dissertation §5, §6.3, §6.4).

Owns: the machine and its hooks, the session table, the cluster's clock (the stamps a
leader puts into client entries and the newest one applied), the last applied index,
taking and restoring snapshots. May not touch: the log (it applies what a Ready hands
it, and reads the entries after the applied ones for the newest stamp), when a read is
safe (the core's read index or lease says), the callers' records (each applied entry's
result and each read's ticket go to :mod:`.waiters`), the tasks, the network.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from .._clock import Clock
from .._core.messages import Entry, EntryKind
from .._core.node import RaftNode
from .._core.ready import Ready
from .._errors import NotLeader
from .._options import ServerOptions
from .._sessions import ClusterClock, Sessions
from .machine import Hooks, decode_snapshot, encode_snapshot
from .waiters import Signal, Waiter, Waiters
from .watch import Watch

__all__ = ["Applier"]

logger = logging.getLogger("trioraft")


class Applier:
    """The state machine's side of one server (see the module's documentation)."""

    def __init__(
        self,
        name: str,
        machine: Any,
        node: RaftNode,
        options: ServerOptions,
        clock: Clock,
        rooms: tuple[Waiters, Watch, Signal],
        snapshot: bytes | None,
    ) -> None:
        # rooms: the callers, the watchers, and the signal that wakes the ready loop;
        # snapshot: the bytes of the snapshot the server restarts from, if any.
        self._name = name
        self.machine = machine
        self._node = node
        self._options = options
        self._local_clock = clock
        waiters, watch, self._kicked = rooms
        self._waiters = waiters
        self._answer = waiters.answer
        self._writes = waiters.writes  # read per entry: a follower has no writer to answer
        self._watch = watch
        self.sessions = Sessions(options.session_timeout)
        #: The cluster's clock, as the stamps of the entries applied here set it.
        self.clock = ClusterClock()
        self._last_stamp = 0.0  # the latest time this server stamped, as leader
        self.last_stamp_applied = 0.0
        self.hooks = Hooks(machine)
        if snapshot is not None:
            self.restore(snapshot)
        self.last_applied = node.applied
        #: The index of the latest snapshot known durable.
        self.durable_snapshot = node.snapshot_index
        self._counters = watch.counters

    def carry_out(self, rd: Ready) -> None:
        """Step 3 of a Ready, the machine's part: restore an installed snapshot, apply
        the committed entries in order, snapshot if asked."""
        if rd.snapshot is not None and rd.restore:
            self.restore(rd.snapshot.data)
            self.last_applied = rd.snapshot.index
            self._counters.installed += 1
            self._watch.trace_if("snapshot", index=rd.snapshot.index, installed=True)
        if rd.committed:
            waiters = self._waiters
            waiters.applied_at = trio.current_time()
            self._counters.apply_lag.observe(self._node.commit_index - self.last_applied)
            apply = self._apply
            for entry in rd.committed:
                apply(entry)
            waiters.answered()
        if rd.take_snapshot:
            with contextlib.suppress(Exception):  # logged; tried again later
                self.snapshot_now()

    async def read(self, query: Any) -> Any:
        """:meth:`trioraft.Server.read` (the query checked)."""
        node = self._node
        waiters = self._waiters
        if self._options.lease_reads:
            await trio.lowlevel.checkpoint()
            # §6.4.1 fast path: under the lease the read index is the commit index, and
            # once that is applied the answer needs no round, no Ready, no task switch.
            if not waiters.stopped:
                index = node.lease_read_index(self._local_clock.now())
                if index is not None and self.last_applied >= index:
                    return self.machine.read(query)
            waiters.check_running()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            waiters.check_running()
        try:
            ticket = node.request_read(self._local_clock.now())
        except NotLeader:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise
        waiter = Waiter()
        reads = waiters.reads
        reads[ticket] = waiter
        self._kicked.set()  # a read moves no deadline: the ready loop follows the timer
        try:
            read_index = await waiter.wait()
        finally:
            reads.pop(ticket, None)
        while self.last_applied < read_index:
            await waiters.wait_changed()
        return self.machine.read(query)

    def _apply(self, entry: Entry) -> None:
        value: Any = None
        error: BaseException | None = None
        kind = entry.kind
        if kind is EntryKind.COMMAND:
            value, error = self._run_write(entry.data)
        elif kind is EntryKind.CLIENT:
            # §6.3: a numbered command of a client session, applied at most once.
            client, seq, lowest, stamp, command = entry.data
            self._observe_stamp(stamp)
            self._expire_sessions(stamp)
            value, error = self.sessions.apply(
                client, seq, lowest, stamp, lambda: self._run_write(command), command
            )
        elif kind is EntryKind.SESSION:
            self._observe_stamp(entry.data[0])
            self._expire_sessions(entry.data[0])
            value = self.sessions.open(entry.index, entry.data[0])
        elif kind is EntryKind.CONFIG:
            self.hooks.membership_changed(entry.data)
        self.last_applied = entry.index
        if self._watch.tracer is not None:
            self._watch.trace("apply", index=entry.index, term=entry.term, kind=entry.kind.value)
        if self._writes:
            self._answer(entry, value, error)

    def _run_write(self, command: Any) -> tuple[Any, BaseException | None]:
        try:
            return self.machine.write(command), None
        except Exception as exc:
            # Deterministic state machines raise identically on every replica, so the
            # server goes on; the writer receives the exception.
            logger.debug("%s: write(%r) raised %r", self._name, command, exc)
            return None, exc

    def _expire_sessions(self, stamp: float) -> None:
        # Expiry is a function of the stamped time of the entry applied: every replica
        # expires the same sessions at the same log position, and tells its machine.
        for client in self.sessions.expire(stamp):
            self.hooks.session_expired(client)

    def _observe_stamp(self, stamp: float) -> None:
        self.last_stamp_applied = max(self.last_stamp_applied, stamp)
        self.clock.observe(stamp, self._local_clock.now())

    def _newest_stamp(self) -> float:
        """The newest stamp this server's log holds: the latest applied (or restored
        from a snapshot), or one of the entries not applied yet. A leader's log holds
        every entry before its own (it only appends), so stamping from it keeps the
        stamps of the log in order."""
        newest = self.last_stamp_applied
        for entry in self._node.entries_from(self.last_applied + 1):
            if entry.kind is EntryKind.CLIENT:
                newest = max(newest, entry.data[3])
            elif entry.kind is EntryKind.SESSION:
                newest = max(newest, entry.data[0])
        return newest

    def start_leading(self) -> None:
        """This server leads a new term: stamps go on from the newest of its log."""
        # §6.3: stamps never go backwards along the log: run on from the newest stamp
        # this leader's log holds (applied or not), not counting the time since (no
        # leader may have run meanwhile).
        newest = self._newest_stamp()
        self.clock.rebase(self._local_clock.now(), newest)
        self._last_stamp = newest

    def stamp(self) -> float:
        """The time a leader stamps into a client entry: the cluster's clock, never
        below an earlier stamp (so stamps grow along the log)."""
        stamp = max(self.clock.now(self._local_clock.now()), self._last_stamp)
        self._last_stamp = stamp
        return stamp

    def restore(self, data: bytes) -> None:
        """Restore the machine (and the sessions, and the cluster's time) from the bytes
        of a snapshot."""
        machine_state, extra = decode_snapshot(data)
        restore = getattr(self.machine, "restore", None)
        if restore is None:
            raise TypeError(
                f"the storage holds a snapshot, but {type(self.machine).__name__} has no "
                "restore() method"
            )
        restore(machine_state)
        self.sessions.restore(extra.get("sessions", []))
        # The cluster time of the snapshot: the newest stamp it covers, which the next
        # snapshot records again even if no stamped entry is applied in between.
        self._observe_stamp(extra.get("clock", 0.0))

    def snapshot_now(self) -> int:
        """Snapshot the machine at the last applied entry; hand it to the core."""
        index = self.last_applied
        node = self._node
        try:
            extra = {"sessions": self.sessions.snapshot(), "clock": self.last_stamp_applied}
            data = encode_snapshot(self.machine.snapshot(), extra)
        except Exception as exc:
            node.snapshot_failed(index)
            logger.error(
                "%s: snapshot() failed at index %d (the log is not compacted; the next "
                "try comes after %d more entries): %r",
                self._name,
                index,
                self._options.snapshot_threshold,
                exc,
            )
            raise
        before = node.snapshot_index
        snapshot = node.snapshot_taken(index, data)
        if snapshot.index > before:
            self._counters.taken += 1
        self._watch.trace_if("snapshot", index=snapshot.index, installed=False)
        return snapshot.index
