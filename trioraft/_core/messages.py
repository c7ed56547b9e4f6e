"""Raft's messages and log entries: records (:mod:`.record`), no behaviour.

Every message carries its sender (``src``), its addressee (``dst``), the sender's
``term`` (Figure 2: "if RPC request or response contains term T > currentTerm...") and
the identity of the sender's cluster (``cluster``, empty until the cluster's first entry
is committed), so that servers of different clusters never mix their logs.

Each class lists its fields in ``FIELDS`` (the order of its constructor's parameters and
of the wire: ``src``, ``dst``, ``term``, ``cluster``, then its own), and takes
``cluster`` by keyword only.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from .config import Config
from .record import Record, fields

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "ClusterMismatch",
    "Config",
    "Entry",
    "EntryKind",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "Message",
    "ReadIndexRequest",
    "ReadIndexResponse",
    "RequestVote",
    "TimeoutNow",
    "VoteResponse",
]


class EntryKind(enum.Enum):
    """What a log entry holds."""

    NOOP = "noop"  # appended by a new leader at the start of its term (§5.4.2, §6.4)
    COMMAND = "command"  # a user command for the state machine
    CONFIG = "config"  # a new membership (dissertation §4.1)
    SESSION = "session"  # a client opens a session (dissertation §6.3): data [time]
    #: A client's numbered command (§6.3): data [client id, seq, lowest unanswered, time,
    #: command]; applied at most once per (client id, seq).
    CLIENT = "client"


class Entry(Record):
    """One log entry: its ``term`` and ``index``, its ``kind``, and its ``data`` (the
    command, or a :class:`Config` for CONFIG entries)."""

    __slots__ = ("data", "index", "kind", "term")
    FIELDS = fields(("term", int), ("index", int), ("kind", EntryKind), ("data", Any))

    def __init__(
        self, term: int, index: int, kind: EntryKind = EntryKind.COMMAND, data: Any = None
    ) -> None:
        self.term: Final = term
        self.index: Final = index
        self.kind: Final = kind
        self.data: Final = data


class Message(Record):
    """Base class of every message between servers."""

    __slots__ = ("cluster", "dst", "src", "term")
    FIELDS = fields(("src", str), ("dst", str), ("term", int), ("cluster", str))

    def __init__(self, src: str, dst: str, term: int, *, cluster: str = "") -> None:
        self.src: Final = src
        self.dst: Final = dst
        self.term: Final = term
        #: The sender's cluster identity ("" while it has none).
        self.cluster: Final = cluster


class RequestVote(Message):
    """RequestVote RPC (Figure 2), also used for PreVote (dissertation §9.6).

    A pre-vote carries the term the candidate *would* use (its term + 1) and changes no
    state anywhere. ``force`` is set by leadership transfer and ``trigger_election``: such
    a request is not refused because the voter heard from a leader recently (§3.10, §4.2.3).
    """

    __slots__ = ("force", "last_log_index", "last_log_term", "pre_vote")
    FIELDS = fields(
        *Message.FIELDS,
        ("last_log_index", int), ("last_log_term", int), ("pre_vote", bool), ("force", bool),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, last_log_index: int, last_log_term: int,
        pre_vote: bool = False, force: bool = False, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.last_log_index: Final = last_log_index
        self.last_log_term: Final = last_log_term
        self.pre_vote: Final = pre_vote
        self.force: Final = force


class VoteResponse(Message):
    """Reply to :class:`RequestVote`: ``granted`` is the vote; for a pre-vote, whether a
    real election would get it (§9.6)."""

    __slots__ = ("granted", "pre_vote")
    FIELDS = fields(*Message.FIELDS, ("granted", bool), ("pre_vote", bool))

    def __init__(
        self, src: str, dst: str, term: int, granted: bool, pre_vote: bool = False, *,
        cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.granted: Final = granted
        self.pre_vote: Final = pre_vote


class AppendEntries(Message):
    """AppendEntries RPC (Figure 2). ``round`` is the leader's round stamp: a quorum
    acknowledging a round confirms reads (§6.4) and renews the lease (§6.4.1)."""

    __slots__ = ("entries", "leader_commit", "prev_log_index", "prev_log_term", "round")
    FIELDS = fields(
        *Message.FIELDS,
        ("prev_log_index", int), ("prev_log_term", int), ("entries", tuple[Entry, ...]),
        ("leader_commit", int), ("round", int),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, prev_log_index: int, prev_log_term: int,
        entries: tuple[Entry, ...], leader_commit: int, round: int = 0, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.prev_log_index: Final = prev_log_index
        self.prev_log_term: Final = prev_log_term
        self.entries: Final = entries
        self.leader_commit: Final = leader_commit
        self.round: Final = round


class AppendResponse(Message):
    """Reply to :class:`AppendEntries`.

    On success ``match_index`` is the last index known to match the leader's log. On
    rejection, ``reject_index`` is the rejected ``prev_log_index`` and ``conflict_index``
    / ``conflict_term`` let the leader skip a whole term of entries per round trip.
    ``commit_index`` is the follower's commit index once it handled the request.
    """

    __slots__ = (
        "commit_index", "conflict_index", "conflict_term", "match_index", "reject_index",
        "round", "success",
    )  # fmt: skip
    FIELDS = fields(
        *Message.FIELDS,
        ("success", bool), ("match_index", int), ("reject_index", int),
        ("conflict_index", int), ("conflict_term", int | None), ("round", int),
        ("commit_index", int),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, success: bool, match_index: int = 0,
        reject_index: int = 0, conflict_index: int = 0, conflict_term: int | None = None,
        round: int = 0, commit_index: int = 0, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.success: Final = success
        self.match_index: Final = match_index
        self.reject_index: Final = reject_index
        self.conflict_index: Final = conflict_index
        self.conflict_term: Final = conflict_term
        self.round: Final = round
        self.commit_index: Final = commit_index


class Heartbeat(Message):
    """An empty round from the leader: asserts leadership, carries a safe commit index
    (never beyond what the follower is known to match) and a round stamp."""

    __slots__ = ("commit", "round")
    FIELDS = fields(*Message.FIELDS, ("commit", int), ("round", int))

    def __init__(
        self, src: str, dst: str, term: int, commit: int, round: int = 0, *, cluster: str = ""
    ) -> None:
        super().__init__(src, dst, term, cluster=cluster)
        self.commit: Final = commit
        self.round: Final = round


class HeartbeatResponse(Message):
    """Reply to :class:`Heartbeat`, echoing its round stamp, with the follower's commit index."""

    __slots__ = ("commit_index", "round")
    FIELDS = fields(*Message.FIELDS, ("round", int), ("commit_index", int))

    def __init__(
        self, src: str, dst: str, term: int, round: int = 0, commit_index: int = 0, *,
        cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.round: Final = round
        self.commit_index: Final = commit_index


class TimeoutNow(Message):
    """Leadership transfer (dissertation §3.10): start an election at once."""

    __slots__ = ()


class ClusterMismatch(Message):
    """A server refuses a message from a server of another cluster (its ``cluster`` is
    the refusing server's identity). Never answered."""

    __slots__ = ()


class ReadIndexRequest(Message):
    """A follower asks the leader for a read index (dissertation §6.4, follower reads):
    ``ticket`` names the batch of reads it asks for, and ``incarnation`` the life of the
    follower that asks (it changes at every restart); both come back in the answer,
    which the follower takes only from the leader it asked, in the term it asked in."""

    __slots__ = ("incarnation", "ticket")
    FIELDS = fields(*Message.FIELDS, ("ticket", int), ("incarnation", int))

    def __init__(
        self, src: str, dst: str, term: int, ticket: int, incarnation: int = 0, *,
        cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.ticket: Final = ticket
        self.incarnation: Final = incarnation


class ReadIndexResponse(Message):
    """The leader's answer to :class:`ReadIndexRequest`: once it has confirmed it still
    leads, the index the follower must apply up to before answering (``ok``); or a
    refusal (it no longer leads). ``incarnation`` is the
    :attr:`ReadIndexRequest.incarnation` it answers."""

    __slots__ = ("incarnation", "index", "ok", "ticket")
    FIELDS = fields(
        *Message.FIELDS, ("ticket", int), ("index", int), ("ok", bool), ("incarnation", int)
    )

    def __init__(
        self, src: str, dst: str, term: int, ticket: int, index: int = 0, ok: bool = False,
        incarnation: int = 0, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.ticket: Final = ticket
        self.index: Final = index
        self.ok: Final = ok
        self.incarnation: Final = incarnation


class InstallSnapshot(Message):
    """One chunk of the leader's snapshot (dissertation §5.3): ``data`` holds the bytes
    ``offset`` to ``offset + len(data)`` of the snapshot of the log up to ``index`` (whose
    entry had ``snapshot_term``), ``size`` bytes in all, with the configuration in force
    at ``index``. The last chunk is the one that reaches ``size``; a chunk past it is
    malformed.

    A transfer is identified by its sender, its term, ``index`` and ``transfer`` (a
    number the leader draws for each transfer it starts): chunks of two transfers are
    never joined. ``checksum`` is the CRC-32 of the whole snapshot
    (:func:`~trioraft._core.ready.snapshot_checksum`): reassembled bytes that do not
    match it are discarded and fetched again."""

    __slots__ = (
        "checksum", "config", "data", "index", "offset", "size", "snapshot_term", "transfer"
    )  # fmt: skip
    FIELDS = fields(
        *Message.FIELDS,
        ("index", int), ("snapshot_term", int), ("config", Config), ("offset", int),
        ("size", int), ("data", bytes), ("checksum", int), ("transfer", int),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, index: int, snapshot_term: int, config: Config,
        offset: int, size: int, data: bytes, checksum: int = 0, transfer: int = 0, *,
        cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.index: Final = index
        self.snapshot_term: Final = snapshot_term
        self.config: Final = config
        self.offset: Final = offset
        self.size: Final = size
        self.data: Final = data
        self.checksum: Final = checksum
        self.transfer: Final = transfer


class InstallSnapshotResponse(Message):
    """Reply to :class:`InstallSnapshot`, about the snapshot at ``index``: the follower
    holds its first ``offset`` bytes; ``done``, it installed it; ``gap``, the chunk did
    not follow what it holds (or it discarded what it held) and the leader resends from
    ``offset``; ``transfer`` is the :attr:`InstallSnapshot.transfer` it answers."""

    __slots__ = ("done", "gap", "index", "offset", "transfer")
    FIELDS = fields(
        *Message.FIELDS,
        ("index", int), ("offset", int), ("done", bool), ("gap", bool), ("transfer", int),
    )  # fmt: skip

    def __init__(
        self, src: str, dst: str, term: int, index: int, offset: int, done: bool = False,
        gap: bool = False, transfer: int = 0, *, cluster: str = "",
    ) -> None:  # fmt: skip
        super().__init__(src, dst, term, cluster=cluster)
        self.index: Final = index
        self.offset: Final = offset
        self.done: Final = done
        self.gap: Final = gap
        self.transfer: Final = transfer
