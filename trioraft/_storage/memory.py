"""MemoryStorage: what a server persists (term, vote, log, commit index, snapshot), in memory."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._core.log import RaftLog
from .._core.messages import Config, Entry
from .._core.ready import HardState, PersistedState, Snapshot
from .._views import read_only
from .base import StorageError

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A server's persistent state, kept in memory.

    It holds exactly what Raft requires to survive a crash (Figure 2: ``currentTerm``,
    ``votedFor``, ``log[]``), plus the commit index, the latest snapshot, the cluster's
    identity and the configuration the cluster started from. Handing the storage of a
    stopped server to a new server of the same name restarts that server as if it had
    crashed and come back (crash-restart), with everything it had made durable.

    It models the boundary a disk has: what the runtime writes is *staged* until it calls
    :meth:`sync`, and a server that stops (or crashes) before that loses it. With
    ``sync_latency=(low, high)``, each sync takes a random time in that range (from
    ``seed``), so a crash can land between a write and its sync, as on a real disk: the
    testing toolkit uses this to catch a runtime that acknowledges too early.

    A storage belongs to one server name, and only one running server may use it at a time.
    """

    def __init__(
        self, *, sync_latency: tuple[float, float] | None = None, seed: int | None = None
    ) -> None:
        if sync_latency is not None:
            low, high = sync_latency
            if not 0 <= low <= high:
                raise ValueError(
                    f"sync_latency must be (low, high) with 0 <= low <= high, got {sync_latency!r}"
                )
        self._latency = sync_latency
        self._rng = random.Random(seed)
        self._hs = HardState()
        #: The durable log.
        self.log = RaftLog()
        #: The durable snapshot (``None`` before the first one).
        self.snapshot: Snapshot | None = None
        #: The name of the server this storage belongs to (set at first start).
        self.owner: str | None = None
        self._in_use = False
        self._staged: list[Callable[[], None]] = []
        #: How many syncs made something durable.
        self.syncs = 0

    def __repr__(self) -> str:
        return (
            f"<MemoryStorage owner={self.owner!r} term={self.term} voted_for={self.voted_for!r} "
            f"log={self.log!r} commit={self.commit_index}>"
        )

    # ---------------------------------------------------------- durable view
    term: int = read_only("_hs.term", "The durable current term.")
    voted_for: str | None = read_only("_hs.voted_for", "The durable vote of the current term.")
    commit_index: int = read_only("_hs.commit", "The durable commit index.")
    cluster_id: str = read_only(
        "_hs.cluster_id", 'The identity of the cluster this server belongs to ("" until known).'
    )
    base_config: Config | None = read_only(
        "_hs.base_config", "The configuration in force before any log entry (set at first start)."
    )
    hard_state: HardState = read_only("_hs", "The durable hard state.")

    # ------------------------------------------------------------- ownership
    async def acquire(self, name: str) -> None:
        """Claim this storage for the server ``name`` (done by the server when it starts)."""
        if self._in_use:
            raise StorageError(f"storage of {self.owner!r} is already in use by a running server")
        if self.owner is not None and self.owner != name:
            raise StorageError(
                f"storage belongs to server {self.owner!r}; it cannot be used by {name!r}"
            )
        self.owner = name
        self._in_use = True

    def release(self) -> None:
        """Give the storage back (done by the server when it stops). What was staged and
        not synced is lost, as in a crash."""
        self._staged.clear()
        self._in_use = False

    @property
    def in_use(self) -> bool:
        """Whether a running server holds this storage."""
        return self._in_use

    # ------------------------------------------------------------------ load
    async def load(self) -> PersistedState:
        """Everything durable (what a restarted server starts from)."""
        self._staged.clear()
        return self.state()

    def state(self) -> PersistedState:
        """Everything durable, at once (no await)."""
        log, hs = self.log, self._hs
        entries = tuple(log.slice(log.first_index, log.last_index))
        return PersistedState(hs, self.snapshot, log.snapshot_index, log.snapshot_term, entries)

    # ---------------------------------------------------------------- writes
    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Stage a new latest snapshot."""
        self._stage(setattr, self, "snapshot", snapshot)

    def compact(self, index: int, term: int) -> None:
        """Stage dropping the entries up to ``index``."""
        self._stage(self._compact, index, term)

    def truncate(self, index: int) -> None:
        """Stage dropping the entries from ``index`` on."""
        self._stage(self._truncate, index)

    def append(self, entries: Sequence[Entry]) -> None:
        """Stage replacing the entries from ``entries[0].index`` on with ``entries``."""
        if entries:
            self._stage(self._append, tuple(entries))

    def set_hard_state(self, hard_state: HardState) -> None:
        """Stage a new hard state."""
        self._stage(setattr, self, "_hs", hard_state)

    @property
    def immediate(self) -> bool:
        """Whether :meth:`sync_nowait` can be used (no ``sync_latency``)."""
        return self._latency is None

    def sync_nowait(self) -> None:
        """Make everything staged durable now (only when :attr:`immediate`)."""
        assert self._latency is None, "a storage with sync_latency must be awaited"
        self._flush()

    async def sync(self) -> None:
        """Make everything staged durable (after ``sync_latency``, if set)."""
        if not self._staged:
            return
        if self._latency is not None:
            await trio.sleep(self._rng.uniform(*self._latency))
        self._flush()

    def _flush(self) -> None:
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        for op in staged:
            op()
        self.syncs += 1

    def _stage(self, fn: Callable[..., Any], *args: Any) -> None:
        self._staged.append(lambda: fn(*args))

    def _compact(self, index: int, term: int) -> None:
        log = self.log
        if index <= log.snapshot_index:
            return
        if log.term_at(index) == term:
            log.compact(index, term)
        else:
            log.reset(index, term)

    def _truncate(self, index: int) -> None:
        if index <= self.log.last_index:
            self.log.truncate_after(max(index - 1, self.log.snapshot_index))

    def _append(self, entries: tuple[Entry, ...]) -> None:
        self._truncate(entries[0].index)
        self.log.extend(entries)
