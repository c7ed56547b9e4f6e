"""What the core hands the runtime (a :class:`Ready`), and what it restarts from.

The runtime asks the core for a :class:`Ready` whenever :meth:`RaftNode.has_ready` is
true and carries it out in this order (etcd-io/raft's Ready/Advance contract):

1. persist, durably and in one go: ``snapshot``, then ``compact``, ``truncate_from`` and
   ``entries`` (the log), then ``hard_state``;
2. send ``messages`` (only now: they acknowledge what step 1 made durable);
3. if ``restore``, restore the state machine from ``snapshot``; then apply ``committed``
   in order, answer ``reads`` and fail ``failed_reads``; if ``take_snapshot``, snapshot
   the state machine now and hand it to :meth:`RaftNode.snapshot_taken`;
4. call :meth:`RaftNode.advance` with the Ready.

When ``early`` is set (a leader's Ready that changes neither its term nor its vote, and
has no snapshot), steps 2 and 3 may run while step 1 is still under way: a leader
writes its log in parallel with sending it (dissertation §10.2.1), since it counts its
own copy towards a quorum only once :meth:`RaftNode.advance` says it is durable, and
committed entries are already durable on a quorum.

When ``sync`` is false, all step 1 has to persist is a newer commit index, which Raft
need not keep (Figure 2: it is volatile state; a restarted server learns it again): it
is staged, goes durable with the next write, and steps 2 to 4 need not wait for it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import attrs

from .messages import Config, Entry, Message
from .types import Role

__all__ = [
    "HardState",
    "NodeStatus",
    "PersistedState",
    "Ready",
    "Snapshot",
    "SoftState",
    "snapshot_checksum",
]


def snapshot_checksum(data: bytes) -> int:
    """The checksum a snapshot carries of its bytes: their CRC-32 (``zlib.crc32``, as
    etcd checksums its snapshots), checked end to end: by a follower once it has
    reassembled an InstallSnapshot, and by :class:`~trioraft.DiskStorage` when it loads
    a snapshot file."""
    return zlib.crc32(data)


@attrs.frozen
class Snapshot:
    """A state machine snapshot covering the log up to ``index`` (of term ``term``).

    ``config`` is the configuration in force at ``index``; ``data`` the encoded state
    (bytes); ``cluster_id`` the identity of the cluster it belongs to; ``checksum`` the
    :func:`snapshot_checksum` of ``data`` (computed when not given).
    """

    index: int
    term: int
    config: Config
    data: bytes
    cluster_id: str = ""
    checksum: int = attrs.field(
        default=attrs.Factory(lambda self: snapshot_checksum(self.data), takes_self=True)
    )


@attrs.frozen
class HardState:
    """What a server persists besides its log and snapshot (Figure 2's ``currentTerm``
    and ``votedFor``, plus the commit index, the cluster's identity, the configuration
    the server started from, and how many times it started: its ``incarnation``, which
    tells its requests apart from those of its earlier lives)."""

    term: int = 0
    voted_for: str | None = None
    commit: int = 0
    cluster_id: str = ""
    base_config: Config | None = None
    incarnation: int = 0


@attrs.frozen
class PersistedState:
    """Everything a storage holds, as loaded when a server (re)starts."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    #: The compaction point of the log: entries up to ``log_index`` are gone, and the
    #: one at ``log_index`` had ``log_term``.
    log_index: int = 0
    log_term: int = 0
    #: The entries after the compaction point, in order.
    entries: tuple[Entry, ...] = ()


@attrs.frozen
class SoftState:
    """Volatile state the runtime reports and waits on (not persisted)."""

    role: Role
    term: int
    leader: str | None
    commit: int
    transfer_target: str | None
    config_index: int
    change_count: int


@attrs.frozen
class NodeStatus:
    """What a node reports of itself when asked (:meth:`RaftNode.status
    <trioraft._core.RaftNode.status>`, as etcd's ``RawNode.Status``): its soft state, its
    log's extent, the configuration in force and, on a leader, how far each member's log
    is known to match its own."""

    role: Role
    term: int
    leader: str | None
    commit_index: int
    last_log_index: int
    #: Entries held in the log (after its compaction point).
    log_length: int
    snapshot_index: int
    config: Config
    #: On a leader, each member's match index (highest entry known replicated on it).
    match_index: Mapping[str, int]
    transfer_target: str | None
    cluster_id: str


@attrs.frozen
class Ready:
    """Everything the runtime has to do, in order (see the module docstring)."""

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    restore: bool = False
    compact: tuple[int, int] | None = None
    truncate_from: int | None = None
    entries: tuple[Entry, ...] = ()
    messages: tuple[Message, ...] = ()
    committed: tuple[Entry, ...] = ()
    reads: tuple[tuple[int, int], ...] = ()
    failed_reads: tuple[int, ...] = ()
    take_snapshot: bool = False
    notices: tuple[str, ...] = ()
    soft: SoftState | None = None
    #: Steps 2 and 3 may run before step 1 is durable (see the module docstring).
    early: bool = False
    #: Step 1 must be durable before step 2 (false: it only persists a commit index).
    sync: bool = True

    @property
    def must_persist(self) -> bool:
        """Whether step 1 has anything to do."""
        return bool(
            self.hard_state is not None
            or self.snapshot is not None
            or self.compact is not None
            or self.truncate_from is not None
            or self.entries
        )
