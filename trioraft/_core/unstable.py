"""The Ready/Advance cycle (etcd-io/raft's ``Ready``): what is handed to the runtime to
persist, send and apply, what is known durable, what is applied.

Owns: the hard state last handed out, the entries not yet handed out
(``_unstable_from``), the last entry known durable (``_stable_index``), the last one
handed out to apply (``_applied_handed``), the snapshot, compaction and truncation to
hand out next. May not touch: roles, terms, messages (it only hands out the outbox).
"""

from __future__ import annotations

from typing import Any

from .base import NodeState
from .messages import (
    Entry,
)
from .ready import HardState, Ready, SoftState
from .types import APPLY_BATCH, MAX_READ_REQUESTS, Role, mypyc_attr

__all__ = ["ReadyCycle"]


@mypyc_attr(allow_interpreted_subclasses=True)
class ReadyCycle(NodeState):
    """The Ready/Advance cycle of the node."""

    def _hard_key(self) -> tuple[Any, ...]:
        return (
            self.term, self.voted_for, self.commit_index, self.cluster_id, self.base_config,
            self.incarnation,
        )  # fmt: skip

    def _soft_key(self) -> tuple[Any, ...]:
        return (
            self.role,
            self.term,
            self.leader,
            self.commit_index,
            self.transfer_target,
            self.configs.index,
            self.change_count,
        )

    def has_ready(self) -> bool:
        """Whether :meth:`ready` has anything for the runtime."""
        return bool(
            self._outbox
            or (self._replication_due and self.role is Role.LEADER)
            or self._unstable_from <= self.log.last_index
            or self._pending_snapshot is not None
            or self._pending_compact is not None
            or self._truncate_from is not None
            or self.commit_index > self._applied_handed
            or self._read_states
            or self._failed_reads
            or (self._read_batch and len(self._read_requests) < MAX_READ_REQUESTS)
            or self._notices
            or self._hard_key() != self._hs_key
            or self._soft_key() != self._soft_key_handed
        )

    def needs_sync(self) -> bool:
        """Whether the next :meth:`ready` must be made durable before its messages leave
        (its ``sync``): anything but a newer commit index, which Figure 2 lists as
        volatile state, has to be synced."""
        return self._needs_sync(self._hard_key())

    def _needs_sync(self, key: tuple[Any, ...]) -> bool:
        durable = self._hs_key
        return (
            key[:2] != durable[:2]
            or key[3:] != durable[3:]
            or self._unstable_from <= self.log.last_index
            or self._pending_snapshot is not None
            or self._pending_compact is not None
            or self._truncate_from is not None
        )

    def ready(self) -> Ready:
        """Everything the runtime has to do now, in order; then call :meth:`advance`."""
        if self.role is Role.LEADER and self._replication_due:
            self._replicate_all()
        if self._read_batch:
            self._send_read_request(self._now)
        key = self._hard_key()
        changed = None
        # §10.2.1: a leader may send (and apply) before its own write is durable, as long
        # as its term and vote already are; its own append counts only once durable.
        early = self.role is Role.LEADER and key[:2] == self._hs_key[:2]
        sync = self._needs_sync(key)
        if key != self._hs_key:
            changed = HardState(*key)
            self._hs_key = key
        last = self.log.last_index
        entries = tuple(self.log.slice(self._unstable_from, last))
        self._unstable_from = last + 1
        committed = self._committed_to_apply()
        take_snapshot = self._snapshot_due(committed)
        rd = Ready(
            changed,
            self._pending_snapshot,
            self._restore,
            self._pending_compact,
            self._truncate_from,
            entries,
            tuple(self._outbox),
            committed,
            tuple(self._read_states),
            tuple(self._failed_reads),
            take_snapshot,
            tuple(self._notices),
            self._soft_state(),
            early and self._pending_snapshot is None and not take_snapshot,
            sync,
        )
        self._pending_snapshot = None
        self._restore = False
        self._pending_compact = None
        self._truncate_from = None
        self._outbox = []
        self._read_states = []
        self._failed_reads = []
        self._notices = []
        return rd

    def _soft_state(self) -> SoftState:
        """The soft state now: the one last handed out while it has not changed (the
        runtime compares them: the same object compares at once)."""
        key = self._soft_key()
        if key != self._soft_key_handed or self._soft_handed is None:
            self._soft_handed = SoftState(*key)
            self._soft_key_handed = key
        return self._soft_handed

    def _committed_to_apply(self) -> tuple[Entry, ...]:
        hi = min(self.commit_index, self._applied_handed + APPLY_BATCH)
        if hi <= self._applied_handed:
            return ()
        committed = tuple(self.log.slice(self._applied_handed + 1, hi))
        self._applied_handed = hi
        return committed

    def advance(self, rd: Ready) -> None:
        """The runtime did everything ``rd`` asked for."""
        if rd.entries:
            last = rd.entries[-1]
            # Entries truncated since the Ready was made are not the ones persisted.
            if self.log.term_at(last.index) == last.term and last.index > self._stable_index:
                self._stable_index = last.index
        if rd.snapshot is not None and rd.restore:
            self.applied = max(self.applied, rd.snapshot.index)
        if rd.committed:
            self.applied = max(self.applied, rd.committed[-1].index)
        if self.role is Role.LEADER and rd.entries:
            self._maybe_commit(self._now)  # the leader counts itself once durable
