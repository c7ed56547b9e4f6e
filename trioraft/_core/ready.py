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
from typing import Any, Final

from .config import Config
from .messages import Entry, Message
from .record import Record, fields
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


class Snapshot(Record):
    """A state machine snapshot covering the log up to ``index`` (of term ``term``).

    ``config`` is the configuration in force at ``index``; ``data`` the encoded state
    (bytes); ``cluster_id`` the identity of the cluster it belongs to; ``checksum`` the
    :func:`snapshot_checksum` of ``data`` (computed when not given).
    """

    __slots__ = ("checksum", "cluster_id", "config", "data", "index", "term")
    FIELDS = fields(
        ("index", int), ("term", int), ("config", Config), ("data", bytes),
        ("cluster_id", str), ("checksum", int),
    )  # fmt: skip

    def __init__(
        self, index: int, term: int, config: Config, data: bytes, cluster_id: str = "",
        checksum: int | None = None,
    ) -> None:  # fmt: skip
        self.index: Final = index
        self.term: Final = term
        self.config: Final = config
        self.data: Final = data
        self.cluster_id: Final = cluster_id
        self.checksum: Final = snapshot_checksum(data) if checksum is None else checksum


class HardState(Record):
    """What a server persists besides its log and snapshot (Figure 2's ``currentTerm``
    and ``votedFor``, plus the commit index, the cluster's identity, the configuration
    the server started from, and how many times it started: its ``incarnation``, which
    tells its requests apart from those of its earlier lives)."""

    __slots__ = ("base_config", "cluster_id", "commit", "incarnation", "term", "voted_for")
    FIELDS = fields(
        ("term", int), ("voted_for", str | None), ("commit", int), ("cluster_id", str),
        ("base_config", Config | None), ("incarnation", int),
    )  # fmt: skip

    def __init__(
        self, term: int = 0, voted_for: str | None = None, commit: int = 0, cluster_id: str = "",
        base_config: Config | None = None, incarnation: int = 0,
    ) -> None:  # fmt: skip
        self.term: Final = term
        self.voted_for: Final = voted_for
        self.commit: Final = commit
        self.cluster_id: Final = cluster_id
        self.base_config: Final = base_config
        self.incarnation: Final = incarnation


class PersistedState(Record):
    """Everything a storage holds, as loaded when a server (re)starts: the hard state,
    the snapshot, the compaction point of the log (entries up to ``log_index`` are gone,
    and the one at ``log_index`` had ``log_term``), and the entries after it, in order."""

    __slots__ = ("entries", "hard_state", "log_index", "log_term", "snapshot")
    FIELDS = fields(
        ("hard_state", HardState), ("snapshot", Snapshot | None), ("log_index", int),
        ("log_term", int), ("entries", tuple[Entry, ...]),
    )  # fmt: skip

    def __init__(
        self, hard_state: HardState | None = None, snapshot: Snapshot | None = None,
        log_index: int = 0, log_term: int = 0, entries: tuple[Entry, ...] = (),
    ) -> None:  # fmt: skip
        self.hard_state: Final = HardState() if hard_state is None else hard_state
        self.snapshot: Final = snapshot
        self.log_index: Final = log_index
        self.log_term: Final = log_term
        self.entries: Final = entries


class SoftState(Record):
    """Volatile state the runtime reports and waits on (not persisted)."""

    __slots__ = (
        "change_count", "commit", "config_index", "leader", "role", "term", "transfer_target"
    )  # fmt: skip
    FIELDS = fields(
        ("role", Role), ("term", int), ("leader", str | None), ("commit", int),
        ("transfer_target", str | None), ("config_index", int), ("change_count", int),
    )  # fmt: skip

    def __init__(
        self, role: Role, term: int, leader: str | None, commit: int, transfer_target: str | None,
        config_index: int, change_count: int,
    ) -> None:  # fmt: skip
        self.role: Final = role
        self.term: Final = term
        self.leader: Final = leader
        self.commit: Final = commit
        self.transfer_target: Final = transfer_target
        self.config_index: Final = config_index
        self.change_count: Final = change_count

    def values(self) -> tuple[Any, ...]:
        """The fields' values, in the order of ``FIELDS`` (the runtime compares soft states
        at every Ready: without :meth:`Record.values`'s loop)."""
        return (
            self.role, self.term, self.leader, self.commit, self.transfer_target,
            self.config_index, self.change_count,
        )  # fmt: skip


class NodeStatus(Record):
    """What a node reports of itself when asked (:meth:`RaftNode.status
    <trioraft._core.RaftNode.status>`, as etcd's ``RawNode.Status``): its soft state, its
    log's extent (``log_length``: the entries held after its compaction point), the
    configuration in force and, on a leader, how far each member's log is known to match
    its own (``match_index``: the highest entry known replicated on each)."""

    __slots__ = (
        "cluster_id", "commit_index", "config", "last_log_index", "leader", "log_length",
        "match_index", "role", "snapshot_index", "term", "transfer_target",
    )  # fmt: skip
    FIELDS = fields(
        ("role", Role), ("term", int), ("leader", str | None), ("commit_index", int),
        ("last_log_index", int), ("log_length", int), ("snapshot_index", int),
        ("config", Config), ("match_index", Mapping[str, int]),
        ("transfer_target", str | None), ("cluster_id", str),
    )  # fmt: skip

    def __init__(
        self, role: Role, term: int, leader: str | None, commit_index: int,
        last_log_index: int, log_length: int, snapshot_index: int, config: Config,
        match_index: Mapping[str, int], transfer_target: str | None, cluster_id: str,
    ) -> None:  # fmt: skip
        self.role: Final = role
        self.term: Final = term
        self.leader: Final = leader
        self.commit_index: Final = commit_index
        self.last_log_index: Final = last_log_index
        self.log_length: Final = log_length
        self.snapshot_index: Final = snapshot_index
        self.config: Final = config
        self.match_index: Final = match_index
        self.transfer_target: Final = transfer_target
        self.cluster_id: Final = cluster_id


class Ready(Record):
    """Everything the runtime has to do, in order (see the module docstring). ``early``:
    steps 2 and 3 may run before step 1 is durable; ``sync``: step 1 must be durable
    before step 2 (false: it only persists a commit index)."""

    __slots__ = (
        "committed", "compact", "early", "entries", "failed_reads", "hard_state", "messages",
        "notices", "reads", "restore", "snapshot", "soft", "sync", "take_snapshot",
        "truncate_from",
    )  # fmt: skip
    FIELDS = fields(
        ("hard_state", HardState | None), ("snapshot", Snapshot | None), ("restore", bool),
        ("compact", tuple[int, int] | None), ("truncate_from", int | None),
        ("entries", tuple[Entry, ...]), ("messages", tuple[Message, ...]),
        ("committed", tuple[Entry, ...]), ("reads", tuple[tuple[int, int], ...]),
        ("failed_reads", tuple[int, ...]), ("take_snapshot", bool),
        ("notices", tuple[str, ...]), ("soft", SoftState | None), ("early", bool),
        ("sync", bool),
    )  # fmt: skip

    def __init__(
        self, hard_state: HardState | None = None, snapshot: Snapshot | None = None,
        restore: bool = False, compact: tuple[int, int] | None = None,
        truncate_from: int | None = None, entries: tuple[Entry, ...] = (), messages: tuple[Message,
        ...] = (), committed: tuple[Entry, ...] = (), reads: tuple[tuple[int, int], ...] = (),
        failed_reads: tuple[int, ...] = (), take_snapshot: bool = False, notices: tuple[str,
        ...] = (), soft: SoftState | None = None, early: bool = False, sync: bool = True,
    ) -> None:  # fmt: skip
        self.hard_state: Final = hard_state
        self.snapshot: Final = snapshot
        self.restore: Final = restore
        self.compact: Final = compact
        self.truncate_from: Final = truncate_from
        self.entries: Final = entries
        self.messages: Final = messages
        self.committed: Final = committed
        self.reads: Final = reads
        self.failed_reads: Final = failed_reads
        self.take_snapshot: Final = take_snapshot
        self.notices: Final = notices
        self.soft: Final = soft
        self.early: Final = early
        self.sync: Final = sync

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
