"""Raft's messages and log entries: frozen attrs classes, no behaviour.

Every message carries its sender (``src``), its addressee (``dst``), the sender's
``term`` (Figure 2: "if RPC request or response contains term T > currentTerm...") and
the identity of the sender's cluster (``cluster``, empty until the cluster's first entry
is committed), so that servers of different clusters never mix their logs.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

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


def _sorted_names(names: Any) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


def _sorted_pairs(pairs: Any) -> tuple[tuple[str, str], ...]:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted((str(name), str(address)) for name, address in items))


def _optional_names(names: Any) -> tuple[str, ...] | None:
    return None if names is None else _sorted_names(names)


@attrs.frozen
class Config:
    """A cluster membership: who votes and who only listens (learners), and the network
    addresses of members added with one (so that every member can reach them).

    While a change of several voters is under way (joint consensus, dissertation §4.3),
    ``outgoing`` holds the voters of the configuration being left (C_old), and
    ``voters`` those of the one being entered (C_new): elections and commitment then
    need a majority of each. ``outgoing`` is ``None`` otherwise. ``learners`` are C_new's
    (a voter being made a learner is an outgoing voter and a learner while joint).

    Names are kept sorted so that iterating a configuration never depends on hashing.
    """

    voters: tuple[str, ...] = attrs.field(converter=_sorted_names, default=())
    learners: tuple[str, ...] = attrs.field(converter=_sorted_names, default=())
    addresses: tuple[tuple[str, str], ...] = attrs.field(converter=_sorted_pairs, default=())
    outgoing: tuple[str, ...] | None = attrs.field(converter=_optional_names, default=None)

    def __attrs_post_init__(self) -> None:
        # A learner may be an outgoing voter: a voter made a learner votes with C_old
        # until the change leaves the joint configuration, and is a learner in C_new.
        both = set(self.learners) & set(self.voters)
        if both:
            raise ValueError(f"servers cannot be both voter and learner: {sorted(both)}")

    @property
    def joint(self) -> bool:
        """Whether this is a joint configuration (C_old,new, §4.3)."""
        return self.outgoing is not None

    @property
    def all_voters(self) -> tuple[str, ...]:
        """Every server that votes in this configuration: of both sets while joint."""
        if self.outgoing is None:
            return self.voters
        return tuple(sorted(set(self.voters) | set(self.outgoing)))

    @property
    def members(self) -> tuple[str, ...]:
        """Voters (of both sets while joint) and learners, sorted."""
        return tuple(sorted(set(self.all_voters) | set(self.learners)))

    def address_of(self, name: str) -> str | None:
        """The address ``name`` was added with, if any."""
        for member, address in self.addresses:
            if member == name:
                return address
        return None

    def quorum(self, min_majority: int | None) -> int:
        """Votes (or acknowledgements) needed of the (new) voters:
        ``max(min_majority or 0, len(voters)//2 + 1)``. While joint, the outgoing voters
        need as many of theirs (see :class:`~trioraft._core.quorum.Quorum`)."""
        return max(min_majority or 0, len(self.voters) // 2 + 1)

    def as_list(self) -> list[Any]:
        """This configuration as plain lists (how frames and stores hold it):
        ``[voters, learners, addresses]``, and the outgoing voters last while joint."""
        out = [list(self.voters), list(self.learners), [list(p) for p in self.addresses]]
        if self.outgoing is not None:
            out.append(list(self.outgoing))
        return out

    @classmethod
    def from_list(cls, value: list[Any]) -> Config:
        """The configuration :meth:`as_list` made (raises on anything else)."""
        outgoing = value[3] if len(value) == 4 else None
        return cls(voters=value[0], learners=value[1], addresses=value[2], outgoing=outgoing)

    def leave_joint(self) -> Config:
        """C_new: this joint configuration's incoming voters, learners and addresses
        (without the addresses of servers no longer in it)."""
        members = set(self.voters) | set(self.learners)
        addresses = [(n, a) for n, a in self.addresses if n in members]
        return Config(voters=self.voters, learners=self.learners, addresses=addresses)


class EntryKind(enum.Enum):
    """What a log entry holds."""

    NOOP = "noop"  # appended by a new leader at the start of its term (§5.4.2, §6.4)
    COMMAND = "command"  # a user command for the state machine
    CONFIG = "config"  # a new membership (dissertation §4.1)
    SESSION = "session"  # a client opens a session (dissertation §6.3): data [time]
    #: A client's numbered command (§6.3): data [client id, seq, lowest unanswered, time,
    #: command]; applied at most once per (client id, seq).
    CLIENT = "client"


@attrs.frozen
class Entry:
    """One log entry. ``data`` is the command, or a :class:`Config` for CONFIG entries."""

    term: int
    index: int
    kind: EntryKind = EntryKind.COMMAND
    data: Any = None


@attrs.frozen
class Message:
    """Base class of every message between servers."""

    src: str
    dst: str
    term: int
    #: The sender's cluster identity ("" while it has none).
    cluster: str = attrs.field(default="", kw_only=True)


@attrs.frozen
class RequestVote(Message):
    """RequestVote RPC (Figure 2), also used for PreVote (dissertation §9.6).

    A pre-vote carries the term the candidate *would* use (its term + 1) and changes no
    state anywhere. ``force`` is set by leadership transfer and ``trigger_election``: such
    a request is not refused because the voter heard from a leader recently (§3.10, §4.2.3).
    """

    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    force: bool = False


@attrs.frozen
class VoteResponse(Message):
    """Reply to :class:`RequestVote`: ``granted`` is the vote; for a pre-vote, whether a
    real election would get it (§9.6)."""

    granted: bool
    pre_vote: bool = False


@attrs.frozen
class AppendEntries(Message):
    """AppendEntries RPC (Figure 2). ``round`` is the leader's round stamp: a quorum
    acknowledging a round confirms reads (§6.4) and renews the lease (§6.4.1)."""

    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    round: int = 0


@attrs.frozen
class AppendResponse(Message):
    """Reply to :class:`AppendEntries`.

    On success ``match_index`` is the last index known to match the leader's log. On
    rejection, ``reject_index`` is the rejected ``prev_log_index`` and ``conflict_index``
    / ``conflict_term`` let the leader skip a whole term of entries per round trip.
    """

    success: bool
    match_index: int = 0
    reject_index: int = 0
    conflict_index: int = 0
    conflict_term: int | None = None
    round: int = 0
    #: The follower's commit index once it handled the request.
    commit_index: int = 0


@attrs.frozen
class Heartbeat(Message):
    """An empty round from the leader: asserts leadership, carries a safe commit index
    (never beyond what the follower is known to match) and a round stamp."""

    commit: int
    round: int = 0


@attrs.frozen
class HeartbeatResponse(Message):
    """Reply to :class:`Heartbeat`, echoing its round stamp, with the follower's commit index."""

    round: int = 0
    commit_index: int = 0


@attrs.frozen
class TimeoutNow(Message):
    """Leadership transfer (dissertation §3.10): start an election at once."""


@attrs.frozen
class ClusterMismatch(Message):
    """A server refuses a message from a server of another cluster (its ``cluster`` is
    the refusing server's identity). Never answered."""


@attrs.frozen
class ReadIndexRequest(Message):
    """A follower asks the leader for a read index (dissertation §6.4, follower reads):
    ``ticket`` names the batch of reads it asks for, and ``incarnation`` the life of the
    follower that asks (it changes at every restart); both come back in the answer,
    which the follower takes only from the leader it asked, in the term it asked in."""

    ticket: int
    incarnation: int = 0


@attrs.frozen
class ReadIndexResponse(Message):
    """The leader's answer to :class:`ReadIndexRequest`: once it has confirmed it still
    leads, the index the follower must apply up to before answering (``ok``); or a
    refusal (it no longer leads)."""

    ticket: int
    index: int = 0
    ok: bool = False
    #: The :attr:`ReadIndexRequest.incarnation` this answers.
    incarnation: int = 0


@attrs.frozen
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

    index: int
    snapshot_term: int
    config: Config
    offset: int
    size: int
    data: bytes
    checksum: int = 0
    transfer: int = 0


@attrs.frozen
class InstallSnapshotResponse(Message):
    """Reply to :class:`InstallSnapshot`, about the snapshot at ``index``."""

    index: int
    #: The follower holds the first ``offset`` bytes of the snapshot.
    offset: int
    #: The follower installed the snapshot.
    done: bool = False
    #: The chunk did not follow what the follower holds (or the follower discarded what
    #: it held): the leader resends from ``offset``.
    gap: bool = False
    #: The transfer (:attr:`InstallSnapshot.transfer`) this answers.
    transfer: int = 0
