"""The Raft node: every rule of the algorithm, and no I/O.

A :class:`RaftNode` consumes events (a message arrived, the timer fired, a client
proposes, a read is requested) with the current time passed in, and keeps everything in
memory. What the runtime must do about it (persist, send, apply, answer) comes out of one
call, :meth:`RaftNode.ready`, which returns a :class:`~trioraft._core.ready.Ready`; the
runtime does it, in order, then calls :meth:`RaftNode.advance` (etcd-io/raft's
Ready/Advance contract, see :mod:`trioraft._core.ready`). The node never writes storage
itself: it only ever *asks* for a write, and messages that acknowledge something travel in
the same Ready as the write they depend on, so they leave only once it is durable.

All Raft timing lives here too: :attr:`RaftNode.deadline` is when :meth:`RaftNode.tick`
must be called next (election timeouts, heartbeats, CheckQuorum, transfer and catch-up
deadlines, snapshot transfer retries). The node never imports trio, never reads a clock
and draws randomness only from the ``random.Random`` it is given, so it runs the same way
every time it is given the same inputs.

References: "Figure 2" is the Raft paper's summary of the algorithm; "§x.y" are sections
of the paper (§5) or of Ongaro's dissertation (§3.10, §4, §5.3 snapshots, §6, §9).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import Any

from .._errors import (
    ConfigChangeInProgress,
    MalformedMessage,
    NotLeader,
    NotVoter,
    RaftError,
    TransferFailed,
    UnknownServer,
)
from .log import RaftLog
from .messages import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .options import CoreOptions, lease_length
from .progress import Progress, ProgressMode
from .ready import HardState, PersistedState, Ready, Snapshot, SoftState

__all__ = [
    "MAX_CATCH_UP_ROUNDS",
    "CatchUp",
    "CatchUpState",
    "LeaderNotReady",
    "RaftNode",
    "Role",
    "TransferInProgress",
]

INF = math.inf
#: Most committed entries handed to the runtime in one Ready (it applies them in one go).
APPLY_BATCH = 1024
#: Requests for a read index a follower keeps in flight at once (§6.4): the reads that
#: arrive while they are answered go in the next one, without waiting for those answers.
MAX_READ_REQUESTS = 4


class Role(enum.Enum):
    """A server's role in its current term."""

    FOLLOWER = "follower"
    #: Running a PreVote round (dissertation §9.6): it has not changed its term yet.
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class TransferInProgress(RaftError):
    """The leader is handing over leadership and takes no new entries (§3.10)."""


class LeaderNotReady(RaftError):
    """The leader has not yet committed an entry of its own term (its no-op).

    Membership changes wait for it (the fix to single-server changes described on the
    raft-dev list and in the dissertation's errata).
    """


#: Most replication rounds a learner gets to catch up before its promotion is abandoned.
MAX_CATCH_UP_ROUNDS = 10
#: Leader ticks (each the longest election timeout) a removed server that does not
#: answer is still told of its removal; if it campaigns later, it is told again.
RETIRING_TICKS = 5


class CatchUpState(enum.Enum):
    """Where the catch-up of a learner stands."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class CatchUp:
    """The leader's record of one learner being caught up (dissertation §4.2.1)."""

    __slots__ = (
        "foreign_cluster",
        "last_progress",
        "match",
        "reason",
        "round_end",
        "round_start",
        "rounds",
        "state",
    )

    def __init__(self, round_end: int, round_start: float) -> None:
        self.state = CatchUpState.PENDING
        self.rounds = 1
        self.round_end = round_end
        self.round_start = round_start
        self.last_progress = round_start
        self.match = 0
        self.reason = ""
        #: When the learner refused to follow because it belongs to another cluster: the
        #: identity of that cluster.
        self.foreign_cluster = ""

    def fail(self, reason: str) -> None:
        self.state = CatchUpState.FAILED
        self.reason = reason


class _ReadRequest:
    """A follower's request for a read index, in flight for a batch of reads (§6.4)."""

    __slots__ = ("leader", "reads", "retry_at", "ticket")

    def __init__(self, ticket: int, leader: str, retry_at: float, reads: list[int]) -> None:
        self.ticket = ticket
        self.leader = leader
        self.retry_at = retry_at
        self.reads = reads


class _Incoming:
    """A snapshot a follower is receiving, chunk by chunk (kept as received, joined
    once at the end: one copy of the snapshot, not one per chunk)."""

    __slots__ = ("chunks", "held", "key")

    def __init__(self, key: tuple[int, int, int]) -> None:
        self.key = key
        self.chunks: list[bytes] = []
        self.held = 0

    def add(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.held += len(data)


class RaftNode:
    """One server's Raft state machine. Call its methods from one thread at a time."""

    def __init__(
        self,
        name: str,
        options: CoreOptions,
        rng: random.Random,
        now: float,
        state: PersistedState | None = None,
        *,
        compaction: bool = True,
    ) -> None:
        self.name = name
        self.options = options
        self._rng = rng
        self._now = now
        #: Whether the node asks for snapshots (the state machine can take them).
        self.compaction = compaction
        #: No snapshot is asked for below this applied index: the last one failed.
        self._snapshot_retry_at = 0
        self._restore_state(state if state is not None else PersistedState())

        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self._outbox: list[Message] = []
        self._init_reads()
        #: Things worth a log line (messages refused from another cluster, ...).
        self._notices: list[str] = []
        #: Servers that refused to follow this leader because they belong to another
        #: cluster (or, on a follower, that it refused): name -> that cluster's identity.
        self.foreign: dict[str, str] = {}

        self._election_deadline = INF
        # §6.4.1: a server restarting in a term it persisted may have acknowledged a
        # leader's round just before it stopped, and has forgotten when: with lease_reads
        # it counts its start as a contact with a leader (see _in_lease).
        self._last_leader_contact = now if options.lease_reads and self.term > 0 else -INF
        #: With lease_reads, when a candidate may count its own vote (§6.4.1, _campaign).
        self._own_vote_from = -INF
        self._votes: dict[str, bool] = {}
        self._campaign_force = False
        self._incoming: _Incoming | None = None
        # Leader state.
        self.progress: dict[str, Progress] = {}
        self._retiring: dict[str, int] = {}  # removed peers still told of their removal
        self._round = 0  # round stamp, carried by every message to followers
        self._leader_tick_at = INF
        self._replication_due = False
        #: Learners being caught up before promotion (§4.2.1), by name.
        self.catch_ups: dict[str, CatchUp] = {}
        self._stepping_down = False  # removed from the configuration: handing over
        #: Bumped whenever a catch-up, a transfer or a learner's first answer changes
        #: state (the runtime wakes its waiters on it).
        self.change_count = 0
        self.transfer_target: str | None = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        self._soft_key_handed: tuple[Any, ...] = ()
        self._reset_election_timer(now)

    def _init_reads(self) -> None:
        """The state of linearizable reads (§6.4, §6.4.1), empty."""
        self._read_states: list[tuple[int, int]] = []  # confirmed: (ticket, read index)
        self._failed_reads: list[int] = []
        #: Reads waiting for a quorum round: (round stamp, ticket, follower or None).
        self._pending_reads: list[tuple[int, int, str | None]] = []
        self._next_ticket = 0
        #: On a follower (§6.4): reads waiting to be asked of the leader, in one request.
        self._read_batch: list[int] = []
        #: On a follower: its requests for a read index in flight, by ticket, oldest first
        #: (at most :data:`MAX_READ_REQUESTS`).
        self._read_requests: dict[int, _ReadRequest] = {}
        #: On a leader: when the first message of each round stamp was sent (§6.4.1).
        self._round_sent: dict[int, float] = {}
        self._lease_until = -INF

    def _restore_state(self, state: PersistedState) -> None:
        hs = state.hard_state
        self.term = hs.term
        self.voted_for = hs.voted_for
        self.cluster_id = hs.cluster_id
        self.base_config = hs.base_config or Config(voters=self.options.initial_config)
        self.log = RaftLog()
        self.log.reset(state.log_index, state.log_term, state.entries)
        self.snapshot = state.snapshot
        base = (0, self.base_config)
        if state.snapshot is not None:
            base = (state.snapshot.index, state.snapshot.config)
        # Every configuration in the log after the base one, oldest first. The last one
        # is in force as soon as it is appended (§4.1).
        self._configs: list[tuple[int, Config]] = [base]
        for entry in state.entries:
            if entry.kind is EntryKind.CONFIG and entry.index > base[0]:
                self._configs.append((entry.index, entry.data))
        #: Highest index applied by the runtime (the snapshot's, on a restart).
        self.applied = base[0]
        self._applied_handed = base[0]
        #: Highest index known committed (persisted, so a restart can apply at once).
        self.commit_index = max(hs.commit, base[0])
        # What the storage holds: the hard state last handed out, the first entry not
        # yet handed out, the last entry known durable.
        self._hs_key = (hs.term, hs.voted_for, hs.commit, hs.cluster_id, hs.base_config)
        self._unstable_from = self.log.last_index + 1
        self._stable_index = self.log.last_index
        self._pending_snapshot: Snapshot | None = None
        self._restore = False
        self._pending_compact: tuple[int, int] | None = None
        self._truncate_from: int | None = None

    # ------------------------------------------------------------------ state
    @property
    def config(self) -> Config:
        """The configuration in force: the latest one in the log, committed or not (§4.1)."""
        return self._configs[-1][1]

    @property
    def config_index(self) -> int:
        """Log index of the configuration in force."""
        return self._configs[-1][0]

    @property
    def committed_config(self) -> Config:
        """The latest configuration whose entry this server knows to be committed."""
        return self._config_at(self.commit_index)

    def _config_at(self, index: int) -> Config:
        for at, config in reversed(self._configs):
            if at <= index:
                return config
        return self._configs[0][1]

    @property
    def is_voter(self) -> bool:
        """Whether this server votes in its current configuration."""
        return self.name in self.config.voters

    @property
    def can_campaign(self) -> bool:
        """Whether this server starts elections when its timer fires.

        A voter of its latest configuration does. So does a voter of the latest
        *committed* one that an uncommitted entry removes (§4.2.2): the change is not in
        force for good until it commits, and the server removed by it may hold the only
        log that can commit it, as a leader outside Cnew does. Votes are always counted
        in the latest configuration, so its own vote does not count.
        """
        name = self.name
        return name in self.config.voters or (
            self.config_index > self.commit_index and name in self.committed_config.voters
        )

    @property
    def quorum(self) -> int:
        """How many voters make a quorum, with the ``min_majority`` floor."""
        return self.config.quorum(self.options.min_majority)

    @property
    def snapshot_index(self) -> int:
        """Index of the latest snapshot (0 if none)."""
        return self.snapshot.index if self.snapshot is not None else 0

    @property
    def deadline(self) -> float:
        """When the runtime must call :meth:`tick` next (``inf``: never)."""
        if self.role is not Role.LEADER:
            deadline = self._election_deadline
            if self.role is Role.CANDIDATE and self._own_vote_from != -INF:
                deadline = min(deadline, self._own_vote_from)  # count it then (tick)
            if self._read_requests:
                oldest = next(iter(self._read_requests.values()))
                return min(deadline, oldest.retry_at)
            return deadline
        deadline = min(self._leader_tick_at, self._transfer_deadline)
        interval = self.options.heartbeat_interval
        for pr in self.progress.values():
            due = pr.last_sent + interval
            if due < deadline:
                deadline = due
        return deadline

    @property
    def unsent_entries(self) -> int:
        """How many entries were appended since the last :meth:`ready` handed entries
        out (to persist and to replicate)."""
        return self.log.last_index - self._unstable_from + 1

    @property
    def committed_in_term(self) -> bool:
        """Whether this leader has committed an entry of its own term (§5.4.2, §6.4)."""
        return self.log.term_at(self.commit_index) == self.term

    def election_timeout(self) -> float:
        """A fresh randomized election timeout (§5.2)."""
        return self._rng.uniform(
            self.options.min_election_timeout, self.options.max_election_timeout
        )

    def _reset_election_timer(self, now: float) -> None:
        # §5.2: a follower that hears nothing for an election timeout starts an election.
        # Servers that do not vote (learners, servers not yet added, removed servers)
        # never time out: they wait to be told by a leader (§4.2.2).
        if self.can_campaign:
            self._election_deadline = now + self.election_timeout()
        else:
            self._election_deadline = INF

    def _in_lease(self, now: float) -> bool:
        # §4.2.3 (and §9.6 for PreVote): a server that heard from a current leader less
        # than a minimum election timeout ago does not help depose it.
        if not self.options.check_quorum:
            return False
        if self.role is Role.LEADER:
            return True
        if self.leader is None and not self.options.lease_reads:
            return False
        # §6.4.1: a leader's lease counts on every server that acknowledged its round to
        # help elect no one else for a minimum election timeout, even a server that has
        # stopped following it since (trigger_election makes a follower a candidate at
        # once). With lease_reads, the window runs from the last contact with a leader,
        # whether or not one is known now.
        return now - self._last_leader_contact < self.options.min_election_timeout

    # ---------------------------------------------------------- Ready/Advance
    def _hard_state(self) -> HardState:
        return HardState(
            self.term, self.voted_for, self.commit_index, self.cluster_id, self.base_config
        )

    def _hard_key(self) -> tuple[Any, ...]:
        return (self.term, self.voted_for, self.commit_index, self.cluster_id, self.base_config)

    def _soft_key(self) -> tuple[Any, ...]:
        return (
            self.role,
            self.term,
            self.leader,
            self.commit_index,
            self.transfer_target,
            self._configs[-1][0],
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
        key, durable = self._hard_key(), self._hs_key
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
        sync = self.needs_sync()
        if key != self._hs_key:
            changed = self._hard_state()
            self._hs_key = key
        last = self.log.last_index
        entries = tuple(self.log.slice(self._unstable_from, last))
        self._unstable_from = last + 1
        committed = self._committed_to_apply()
        take_snapshot = self._snapshot_due(committed)
        rd = Ready(
            hard_state=changed,
            snapshot=self._pending_snapshot,
            restore=self._restore,
            compact=self._pending_compact,
            truncate_from=self._truncate_from,
            entries=entries,
            messages=tuple(self._outbox),
            committed=committed,
            reads=tuple(self._read_states),
            failed_reads=tuple(self._failed_reads),
            take_snapshot=take_snapshot,
            notices=tuple(self._notices),
            soft=SoftState(*self._soft_key()),
            early=early and self._pending_snapshot is None and not take_snapshot,
            sync=sync,
        )
        self._soft_key_handed = self._soft_key()
        self._pending_snapshot = None
        self._restore = False
        self._pending_compact = None
        self._truncate_from = None
        self._outbox = []
        self._read_states = []
        self._failed_reads = []
        self._notices = []
        return rd

    def _committed_to_apply(self) -> tuple[Entry, ...]:
        hi = min(self.commit_index, self._applied_handed + APPLY_BATCH)
        if hi <= self._applied_handed:
            return ()
        committed = tuple(self.log.slice(self._applied_handed + 1, hi))
        self._applied_handed = hi
        return committed

    def _snapshot_due(self, committed: tuple[Entry, ...]) -> bool:
        # §5: snapshot once snapshot_threshold entries were applied since the last one
        # (and since the last attempt that failed).
        return (
            self.compaction
            and bool(committed)
            and committed[-1].index - self.snapshot_index >= self.options.snapshot_threshold
            and committed[-1].index >= self._snapshot_retry_at
        )

    def snapshot_failed(self, index: int) -> None:
        """The runtime could not take the snapshot at ``index`` (the state machine's
        ``snapshot()`` raised, or its value cannot be encoded): ask again once another
        ``snapshot_threshold`` entries are applied, not at every Ready until then."""
        self._snapshot_retry_at = index + self.options.snapshot_threshold

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

    def snapshot_taken(self, index: int, data: bytes) -> Snapshot:
        """The runtime snapshotted the state machine after applying entry ``index``
        (``data``: the encoded state). The next Ready persists it and compacts the log,
        keeping ``snapshot_trailing`` entries behind it (§5.1)."""
        if index <= self.snapshot_index:
            assert self.snapshot is not None
            return self.snapshot
        if index > self._applied_handed:
            raise ValueError(f"cannot snapshot at {index}: only {self._applied_handed} applied")
        term = self.log.term_at(index)
        assert term is not None, f"entry {index} to snapshot is not in the log"
        config = self._config_at(index)
        snapshot = Snapshot(index, term, config, data, self.cluster_id)
        self.snapshot = snapshot
        self._pending_snapshot = snapshot
        self._restore = False
        self._configs = [(index, config)] + [(i, c) for i, c in self._configs if i > index]
        cut = index - self.options.snapshot_trailing
        if cut > self.log.snapshot_index:
            cut_term = self.log.term_at(cut)
            assert cut_term is not None
            self.log.compact(cut, cut_term)
            self._pending_compact = (cut, cut_term)
        return snapshot

    # ---------------------------------------------------------------- input
    def step(self, m: Message, now: float) -> None:
        """Handle one message from another server."""
        handler = _HANDLERS.get(type(m))
        if handler is None:
            raise MalformedMessage(f"not a Raft message: {m!r}")
        if m.dst != self.name:
            raise MalformedMessage(f"message for {m.dst!r} delivered to {self.name!r}: {m!r}")
        if not isinstance(m.term, int) or m.term < 0:
            raise MalformedMessage(f"message with an invalid term: {m!r}")
        if not isinstance(m.cluster, str):
            raise MalformedMessage(f"message with an invalid cluster identity: {m!r}")
        self._now = now
        if isinstance(m, ClusterMismatch) or (
            m.cluster != self.cluster_id and m.cluster and self.cluster_id
        ):
            self._on_foreign(m)
            return
        if (
            self.role is Role.LEADER
            and isinstance(m, RequestVote)
            and m.src not in self.config.members
            and m.src not in self._retiring
        ):
            # §4.2.2: a removed server campaigns because it never learnt of its removal
            # (it was down, or the leader that removed it is gone): tell it.
            self._retiring[m.src] = self.config_index
            self._sync_progress()
        if m.term > self.term:
            if not self._on_newer_term(m, now):
                return
        elif m.term < self.term:
            self._reject_stale(m)
            return
        handler(self, m, now)

    def _on_newer_term(self, m: Message, now: float) -> bool:
        # Figure 2: a message from a newer term turns any server into a follower of that
        # term. Three exceptions keep PreVote and disruption protection sound. Returns
        # whether the message is to be handled further.
        if isinstance(m, RequestVote):
            if not m.force and self._in_lease(now):
                # §4.2.3: ignore elections while a leader is known to be alive.
                self._send(
                    VoteResponse(
                        self.name, m.src, self.term, False, m.pre_vote, cluster=self.cluster_id
                    )
                )
                return False
            if not m.pre_vote:
                self._become_follower(m.term, None, now)
        elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
            pass  # granted pre-votes carry the term we would campaign in (§9.6)
        else:
            leader = (
                m.src
                if isinstance(m, (AppendEntries, Heartbeat, TimeoutNow, InstallSnapshot))
                else None
            )
            self._become_follower(m.term, leader, now)
        return True

    def _reject_stale(self, m: Message) -> None:
        # Figure 2: reject requests from older terms, telling the sender our term so a
        # stale leader or candidate steps down. Stale responses are dropped.
        if isinstance(m, AppendEntries):
            reply: Message = AppendResponse(
                self.name,
                m.src,
                self.term,
                False,
                reject_index=m.prev_log_index,
                commit_index=self.commit_index,
                cluster=self.cluster_id,
            )
        elif isinstance(m, Heartbeat):
            reply = HeartbeatResponse(
                self.name, m.src, self.term, m.round, self.commit_index, cluster=self.cluster_id
            )
        elif isinstance(m, RequestVote):
            reply = VoteResponse(
                self.name, m.src, self.term, False, m.pre_vote, cluster=self.cluster_id
            )
        elif isinstance(m, InstallSnapshot):
            reply = InstallSnapshotResponse(
                self.name, m.src, self.term, m.index, 0, cluster=self.cluster_id
            )
        elif isinstance(m, ReadIndexRequest):
            reply = ReadIndexResponse(
                self.name, m.src, self.term, m.ticket, cluster=self.cluster_id
            )
        else:
            return
        self._send(reply)

    def _on_foreign(self, m: Message) -> None:
        # Cluster identity: a server never takes part in another cluster's log.
        if isinstance(m, ClusterMismatch):
            if (
                self.role is Role.LEADER
                and m.src in self.progress
                and m.cluster
                and m.cluster != self.cluster_id
            ):
                self._record_foreign_refusal(m.src, m.cluster)
            return
        if isinstance(m, (AppendEntries, Heartbeat, RequestVote, TimeoutNow, InstallSnapshot)):
            if m.src not in self.foreign:
                self.foreign[m.src] = m.cluster
                self._notices.append(
                    f"refused messages from {m.src!r} of cluster {m.cluster}: this server "
                    f"belongs to cluster {self.cluster_id}"
                )
            self._send(ClusterMismatch(self.name, m.src, self.term, cluster=self.cluster_id))

    def _record_foreign_refusal(self, name: str, cluster: str) -> None:
        if self.foreign.get(name) != cluster:
            self.foreign[name] = cluster
            self._notices.append(
                f"{name!r} belongs to another cluster (identity {cluster}) and refuses to "
                f"follow this leader of cluster {self.cluster_id}"
            )
            self.change_count += 1
        catch_up = self.catch_ups.get(name)
        if catch_up is not None and catch_up.state is CatchUpState.PENDING:
            catch_up.foreign_cluster = cluster
            catch_up.fail(f"it belongs to another cluster (identity {cluster})")
            self.change_count += 1

    def _on_cluster_mismatch(self, m: Message, now: float) -> None:
        self._on_foreign(m)  # never reached: step() hands these to _on_foreign first

    def tick(self, now: float) -> None:
        """The timer reached :attr:`deadline`."""
        self._now = now
        if now < self.deadline:
            return
        if self.role is Role.LEADER:
            self._tick_leader(now)
            return
        if self._read_requests:
            self._retry_read_requests(now)
        if self.role is Role.CANDIDATE and -INF < self._own_vote_from <= now:
            self._own_vote_from = -INF
            if self._tally(now) or now < self._election_deadline:
                return  # the lease its own vote waited for has run out: counted now
        if now < self._election_deadline:
            return
        if self.can_campaign:
            self._campaign(now, pre=self.options.pre_vote, force=False)
        else:
            self._election_deadline = INF

    def _tick_leader(self, now: float) -> None:
        if now >= self._transfer_deadline:
            self._abort_transfer()
            if self._stepping_down:
                self._become_follower(self.term, None, now)  # no one took over in time
                return
        interval = self.options.heartbeat_interval
        if any(now >= pr.last_sent + interval for pr in self.progress.values()):
            self._round += 1  # a new round: its acknowledgements renew the lease (§6.4.1)
        for pr in self.progress.values():
            if now >= pr.last_sent + interval:
                # Nothing sent for a heartbeat interval: a heartbeat is due, and in
                # snapshot mode, the chunks in flight are presumed lost (§5.3). It counts
                # as sent now (it leaves with the next Ready), so the deadline moves on
                # even while the runtime waits for its storage.
                pr.heartbeat_wanted = True
                pr.last_sent = now
                if pr.mode is ProgressMode.SNAPSHOT:
                    self._snapshot_stalled(pr, now)
                self._replication_due = True
        if now >= self._leader_tick_at:
            self._leader_tick(now)

    def _snapshot_stalled(self, pr: Progress, now: float) -> None:
        if now - pr.snapshot_progress_at > self.options.max_election_timeout:
            # No progress for an election timeout: start over, with the latest snapshot.
            pr.become_snapshot(self.snapshot_index, now)
        else:
            pr.snapshot_sent = pr.snapshot_acked  # resend what was not acknowledged

    # ------------------------------------------------------------ elections
    def trigger_election(self, now: float) -> None:
        """Start an election now, skipping PreVote (ExRaft's ``trigger_election``).

        Voters answer it even if they heard from a leader recently: it was asked for.
        Not with ``lease_reads``: then a leader's lease is respected, by the voters and
        by this server's own vote (§6.4.1, :meth:`_campaign`).
        """
        if not self.can_campaign:
            raise NotVoter(f"{self.name!r} is not a voter in its configuration {self.config}")
        self._now = now
        # With lease reads, a forced election must not break a leader's lease: voters
        # may refuse it while they hear from their leader (§6.4.1).
        self._campaign(now, pre=False, force=not self.options.lease_reads)

    def _campaign(self, now: float, *, pre: bool, force: bool) -> None:
        self._campaign_force = force
        self._leave_leadership()
        if pre:
            # §9.6 PreVote: ask whether we could win before disturbing anyone's term.
            self.role = Role.PRE_CANDIDATE
            vote_term = self.term + 1
        else:
            # §5.2: increment the term, vote for ourselves, ask everyone else. The vote
            # is persisted (in the same Ready) before any RequestVote leaves.
            self.term += 1
            self.voted_for = self.name
            self.role = Role.CANDIDATE
            vote_term = self.term
        self.leader = None
        self._fail_remote_reads()
        self._votes = {self.name: True}
        # §6.4.1: with lease_reads, a candidate that acknowledged a leader's round less
        # than a minimum election timeout ago (only trigger_election starts one that
        # early) counts its own vote only once that leader's lease has run out. A forced
        # campaign is a transfer's, whose leader stopped serving lease reads when it began.
        self._own_vote_from = (
            self._last_leader_contact + self.options.min_election_timeout
            if not pre and not force and self.options.lease_reads and self._in_lease(now)
            else -INF
        )
        self._reset_election_timer(now)
        if self._tally(now):
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for peer in self.config.voters:
            if peer != self.name:
                self._send(
                    RequestVote(
                        self.name,
                        peer,
                        vote_term,
                        last_index,
                        last_term,
                        pre,
                        force,
                        cluster=self.cluster_id,
                    )
                )

    def _log_up_to_date(self, m: RequestVote) -> bool:
        # §5.4.1: the candidate's log must be at least as up-to-date as ours: a later
        # last term, or the same last term and at least as long.
        return (m.last_log_term, m.last_log_index) >= (self.log.last_term, self.log.last_index)

    def _on_request_vote(self, m: RequestVote, now: float) -> None:
        if m.pre_vote:
            # §9.6: grant a pre-vote to a candidate whose next term would be newer, whose
            # log is up to date, unless we hear from a live leader. Nothing is persisted.
            grant = (
                m.term > self.term
                and self._log_up_to_date(m)
                and (m.force or not self._in_lease(now))
            )
            term = m.term if grant else self.term
            self._send(VoteResponse(self.name, m.src, term, grant, True, cluster=self.cluster_id))
            return
        # Here m.term == self.term. Figure 2: one vote per term, first come first served
        # (a server already following a leader in this term has nothing to vote for).
        can_vote = self.voted_for == m.src or (self.voted_for is None and self.leader is None)
        grant = can_vote and self._log_up_to_date(m)
        if grant and self.voted_for is None and not m.force and self.options.lease_reads:
            # §6.4.1: a server that learnt this term from elsewhere (a reply) may still be
            # in the window of the leader it heard from last: it does not help depose it.
            grant = not self._in_lease(now)
        if grant:
            # Figure 2: votedFor is persisted before the vote is granted (same Ready).
            self.voted_for = m.src
            self._reset_election_timer(now)  # §5.2: granting a vote resets the timer
        self._send(VoteResponse(self.name, m.src, self.term, grant, False, cluster=self.cluster_id))

    def _on_vote_response(self, m: VoteResponse, now: float) -> None:
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE:
                return
            if m.term != (self.term + 1 if m.granted else self.term):
                return  # an answer to an older round
        elif self.role is not Role.CANDIDATE or m.term != self.term:
            return
        if m.src in self.config.voters:
            self._votes[m.src] = m.granted
        self._tally(now)

    def _tally(self, now: float) -> bool:
        """Count votes; act on a won or lost election. True if the round is decided."""
        voters = self.config.voters
        granted = sum(1 for v in voters if self._votes.get(v) is True)
        if now < self._own_vote_from and self._votes.get(self.name) is True:
            granted -= 1  # not yet: it would break a lease (§6.4.1, see _campaign)
        rejected = sum(1 for v in voters if self._votes.get(v) is False)
        quorum = self.quorum
        if granted >= quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(now, pre=False, force=self._campaign_force)
            else:
                self._become_leader(now)
            return True
        if rejected > len(voters) - quorum:
            # The election can no longer be won: wait as a follower for the next timeout.
            self.role = Role.FOLLOWER
            return True
        return False

    def _become_follower(self, term: int, leader: str | None, now: float) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
        self._leave_leadership()
        self.role = Role.FOLLOWER
        self.leader = leader
        self._fail_remote_reads()
        if leader is not None:
            self._last_leader_contact = now
        self._reset_election_timer(now)

    def _leave_leadership(self) -> None:
        if self.role is not Role.LEADER:
            return
        self.progress = {}
        self._retiring = {}
        for _, ticket, requester in self._pending_reads:
            if requester is None:
                self._failed_reads.append(ticket)
            else:
                self._send(ReadIndexResponse(self.name, requester, self.term, ticket,
                                             cluster=self.cluster_id))  # fmt: skip
        self._pending_reads = []
        self._round_sent = {}
        self._lease_until = -INF
        self._leader_tick_at = INF
        self._replication_due = False
        self.transfer_target = None
        self._transfer_deadline = INF
        self._stepping_down = False
        for catch_up in self.catch_ups.values():
            if catch_up.state is CatchUpState.PENDING:
                catch_up.fail("leadership was lost")
        self.catch_ups = {}
        self.change_count += 1

    def _become_leader(self, now: float) -> None:
        self.role = Role.LEADER
        self.leader = self.name
        self._round = 0
        self.progress = {}
        # §4.2.2: servers removed by configurations in our log may not know it (they
        # were down, or their leader is gone): tell them, until they know it committed.
        members = self.config.members
        self._retiring = {
            name: self.config_index
            for _, cfg in self._configs
            for name in cfg.members
            if name not in members and name != self.name
        }
        self.foreign = {}
        self._sync_progress()
        self._leader_tick_at = now + self.options.max_election_timeout
        # §5.4.2 / §6.4: a new leader commits a no-op of its own term, which commits
        # everything before it and lets it serve reads. The very first entry of a new
        # cluster carries the cluster's identity.
        identity = None
        if self.log.last_index == 0 and not self.cluster_id:
            identity = f"{self._rng.getrandbits(64):016x}"
        self._append(EntryKind.NOOP, identity)

    def _leader_tick(self, now: float) -> None:
        """Every election timeout (the longest) while leading."""
        self._leader_tick_at = now + self.options.max_election_timeout
        self._tick_retiring()
        timeout = self.options.max_election_timeout
        for name, catch_up in self.catch_ups.items():
            # §4.2.1: abandon a catch-up that makes no progress for an election timeout.
            if catch_up.state is CatchUpState.PENDING and now - catch_up.last_progress > timeout:
                catch_up.fail(f"{name!r} made no progress for an election timeout")
                self.change_count += 1
        if not self.options.check_quorum:
            return
        # §6.2 CheckQuorum: a leader that has not heard from a quorum within an election
        # timeout steps down, so a partitioned leader stops serving clients.
        active = 1 if self.is_voter else 0
        for peer in self.config.voters:
            pr = self.progress.get(peer)
            if pr is not None:
                active += pr.recent_active
                pr.recent_active = False
        if active < self.quorum:
            self._become_follower(self.term, None, now)

    def _tick_retiring(self) -> None:
        for name in list(self._retiring):
            pr = self.progress.get(name)
            if pr is None:
                continue
            pr.idle_ticks = 0 if pr.recent_active else pr.idle_ticks + 1
            pr.recent_active = False
            if pr.idle_ticks >= RETIRING_TICKS:
                self._retire_done(name)  # gone for now; told again if it campaigns

    # ------------------------------------------------------------ replication
    def heartbeat_now(self) -> None:
        """On a leader: send every follower a heartbeat (or what else is due) in the next
        Ready, now rather than when its heartbeat interval ends (etcd's MsgBeat)."""
        if self.role is not Role.LEADER:
            return
        for pr in self.progress.values():
            pr.heartbeat_wanted = True
        self._replication_due = True

    def _on_append_entries(self, m: AppendEntries, now: float) -> None:
        self._follow(m.src, now)
        prev, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        if prev < self.commit_index:
            # Entries up to our commit index are committed and therefore in the leader's
            # log too (Leader Completeness, §5.4): skip them rather than compare.
            skip = self.commit_index - prev
            if skip >= len(entries):
                self._send_append_response(m, True, self.commit_index)
                return
            entries = entries[skip:]
            prev = self.commit_index
        elif not self.log.matches(prev, prev_term):
            self._reject_append(m)
            return
        self._append_from_leader(entries, now)
        last_new = prev + len(entries)
        # Figure 2 (AppendEntries 5): commitIndex = min(leaderCommit, index of last new entry).
        if m.leader_commit > self.commit_index:
            self._commit_to(min(m.leader_commit, last_new), now)
        # The acknowledgement leaves only once the entries are durable (same Ready).
        self._send_append_response(m, True, last_new)

    def _send_append_response(self, m: AppendEntries, success: bool, match: int) -> None:
        self._send(
            AppendResponse(
                self.name,
                m.src,
                self.term,
                success,
                match,
                round=m.round,
                commit_index=self.commit_index,
                cluster=self.cluster_id,
            )
        )

    def _reject_append(self, m: AppendEntries) -> None:
        # Figure 2 (AppendEntries 2): reply false if the log has no entry at prevLogIndex
        # with prevLogTerm. The hint lets the leader skip a term's worth of entries per
        # round trip instead of one entry (§5.3, "fast backup").
        prev = m.prev_log_index
        if prev > self.log.last_index:
            conflict_index, conflict_term = self.log.last_index + 1, None
        else:
            conflict_term = self.log.term_at(prev)
            conflict_index = max(self.log.first_index_of_term(prev), self.commit_index + 1)
        self._send(
            AppendResponse(
                self.name,
                m.src,
                self.term,
                False,
                reject_index=prev,
                conflict_index=conflict_index,
                conflict_term=conflict_term,
                round=m.round,
                commit_index=self.commit_index,
                cluster=self.cluster_id,
            )
        )

    def _append_from_leader(self, entries: tuple[Entry, ...], now: float) -> None:
        log = self.log
        was_voter = self.can_campaign
        for i, entry in enumerate(entries):
            existing = log.term_at(entry.index)
            if existing == entry.term:
                continue  # already held (a duplicate or reordered message)
            if existing is not None:
                # Figure 2 (AppendEntries 3): a conflicting entry and all that follow it
                # are deleted. Committed entries never conflict (State Machine Safety).
                if entry.index <= self.commit_index:
                    raise AssertionError(
                        f"Raft safety violated on {self.name}: leader overwrites committed "
                        f"entry {entry.index} (commit index {self.commit_index})"
                    )
                self._truncate(entry.index)
            # Figure 2 (AppendEntries 4): append any new entries not already in the log.
            new = entries[i:] if i else entries
            log.extend(new)
            for added in new:
                if added.kind is EntryKind.CONFIG:
                    self._configs.append((added.index, added.data))
            if self.can_campaign != was_voter:
                # Joined or left the voters (or a truncation undid a change): the
                # election timer starts or stops accordingly (§4.1).
                self._reset_election_timer(now)
            return

    def _truncate(self, index: int) -> None:
        """Drop entries from ``index`` on (in memory now; from storage in the next Ready,
        which rewrites the log from the first entry it hands out)."""
        self.log.truncate_after(index - 1)
        while self._configs[-1][0] >= index:
            self._configs.pop()  # §4.1: fall back to the previous configuration
        self._unstable_from = min(self._unstable_from, index)
        self._stable_index = min(self._stable_index, index - 1)

    def _follow(self, leader: str, now: float) -> None:
        """A message from the leader of our term: follow it and restart the timer."""
        if self.role is Role.LEADER:
            raise AssertionError(
                f"Raft safety violated: {leader!r} and {self.name!r} both lead term {self.term}"
            )
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader, now)  # §5.2: a candidate defers
        if self.leader != leader:
            self.leader = leader
            self._fail_remote_reads()
        self._last_leader_contact = now
        self._reset_election_timer(now)

    def _on_heartbeat(self, m: Heartbeat, now: float) -> None:
        self._follow(m.src, now)
        # The leader sends min(match, commit): entries up to it are known to match ours.
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, self.log.last_index), now)
        self._send(
            HeartbeatResponse(
                self.name, m.src, self.term, m.round, self.commit_index, cluster=self.cluster_id
            )
        )

    def _on_timeout_now(self, m: TimeoutNow, now: float) -> None:
        # §3.10: the leader hands over: campaign at once, skipping PreVote, and ask voters
        # to ignore their leader lease for this election.
        self._follow(m.src, now)
        if self.can_campaign:
            self._campaign(now, pre=False, force=True)

    def _on_append_response(self, m: AppendResponse, now: float) -> None:
        pr = self._heard_from(m.src, m.round, m.commit_index)
        if pr is None:
            return
        if m.success:
            first = pr.match == 0
            advanced = pr.acknowledge(m.match_index)
            if pr.mode is ProgressMode.PROBE:
                pr.become_replicate()
            if advanced:
                if first:
                    self.change_count += 1  # its first answer (a new learner waits for it)
                self._maybe_commit(now)
                self._after_match(m.src, now)
        elif m.reject_index > pr.match and (
            pr.mode is ProgressMode.REPLICATE or m.reject_index == pr.next - 1
        ):
            # A rejection of what we last sent (older ones are stale: the logs are
            # known to match beyond them, or a later probe has been sent since).
            if m.conflict_term is not None:
                last = self.log.last_index_of_term(m.conflict_term)
                next_index = last + 1 if last is not None else m.conflict_index
            else:
                next_index = m.conflict_index
            pr.become_probe(min(next_index, m.reject_index))
        self._check_reads()

    def _heard_from(self, name: str, stamp: int, commit: int) -> Progress | None:
        """Book-keeping common to every answer a leader receives; the peer's progress,
        or None if there is nothing more to do."""
        if self.role is not Role.LEADER:
            return None
        pr = self.progress.get(name)
        if pr is None:
            return None
        pr.recent_active = True
        self._replication_due = True
        if stamp > pr.acked_round:
            pr.acked_round = stamp
        if commit > pr.commit:
            pr.commit = commit
            if name in self._retiring:
                self._check_retired(name)
                if name not in self.progress:
                    self._check_reads()
                    return None
        return pr

    def _on_heartbeat_response(self, m: HeartbeatResponse, now: float) -> None:
        pr = self._heard_from(m.src, m.round, m.commit_index)
        if pr is None:
            return
        if pr.mode is ProgressMode.PROBE:
            pr.probe_sent = False  # the probe or its answer may be lost: allow another
        elif (
            pr.mode is ProgressMode.REPLICATE
            and pr.match < self.log.last_index
            and pr.match == pr.heartbeat_match
        ):
            # No progress over a whole heartbeat round while entries are outstanding:
            # messages were lost. Probe again from what is known to match.
            pr.become_probe(pr.match + 1)
        pr.heartbeat_match = pr.match
        self._check_reads()

    def _replicate_all(self) -> None:
        self._replication_due = False
        now = self._now
        self._round_sent.setdefault(self._round, now)
        for peer, pr in self.progress.items():
            for _ in range(self.options.max_inflight + 1):
                message = self._next_message(peer, pr)
                if message is None:
                    break
                pr.last_sent = now
                self._outbox.append(message)

    def _next_message(self, peer: str, pr: Progress) -> Message | None:
        """The next message to send to ``peer``, or ``None`` if nothing is due: entries
        it lacks (batched up to ``max_entries_per_message``, pipelined up to
        ``max_inflight`` messages), snapshot chunks, else a heartbeat when one is due or
        a read waits."""
        if pr.mode is not ProgressMode.SNAPSHOT and self._entries_due(pr):
            if pr.next - 1 < self.log.snapshot_index:
                # §5.3: the entries it needs are compacted away: send the snapshot.
                pr.become_snapshot(self.snapshot_index, self._now)
            else:
                return self._append_entries(peer, pr)
        if pr.mode is ProgressMode.SNAPSHOT:
            chunk = self._snapshot_chunk(peer, pr)
            if chunk is not None:
                return chunk
        if pr.heartbeat_wanted:
            pr.heartbeat_wanted = False
            commit = min(pr.match, self.commit_index)
            return Heartbeat(
                self.name, peer, self.term, commit, self._round, cluster=self.cluster_id
            )
        return None

    def _append_entries(self, peer: str, pr: Progress) -> AppendEntries:
        log = self.log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        assert prev_term is not None, f"entry {prev} needed by {peer!r} is not in the log"
        hi = min(log.last_index, pr.next + self.options.max_entries_per_message - 1)
        entries = tuple(log.slice(pr.next, hi))
        if pr.mode is ProgressMode.PROBE:
            pr.probe_sent = True
        else:
            pr.next = hi + 1
            pr.inflight.append(hi)
        pr.heartbeat_wanted = False
        return AppendEntries(
            self.name,
            peer,
            self.term,
            prev,
            prev_term,
            entries,
            self.commit_index,
            self._round,
            cluster=self.cluster_id,
        )

    def _snapshot_chunk(self, peer: str, pr: Progress) -> InstallSnapshot | None:
        snapshot = self.snapshot
        assert snapshot is not None, f"{peer!r} needs a snapshot and there is none"
        if pr.snapshot_index != snapshot.index:
            pr.become_snapshot(snapshot.index, self._now)  # a newer one: send that
        size = len(snapshot.data)
        chunk_size = self.options.snapshot_chunk_size
        window = self.options.max_inflight * chunk_size
        sent = pr.snapshot_sent
        if sent >= max(size, 1) or sent - pr.snapshot_acked >= window:
            return None
        data = snapshot.data[sent : sent + chunk_size]
        pr.snapshot_sent = sent + max(len(data), 1)
        pr.heartbeat_wanted = False
        return InstallSnapshot(
            self.name,
            peer,
            self.term,
            snapshot.index,
            snapshot.term,
            snapshot.config,
            sent,
            size,
            data,
            cluster=self.cluster_id,
        )

    def _entries_due(self, pr: Progress) -> bool:
        if pr.mode is ProgressMode.PROBE:
            return not pr.probe_sent
        return pr.next <= self.log.last_index and len(pr.inflight) < self.options.max_inflight

    def _maybe_commit(self, now: float) -> None:
        # Figure 2 (leaders): commit N if a quorum has matchIndex >= N and log[N] is of
        # the current term. §5.4.2: never count replicas of an older term's entry. The
        # leader counts itself only for entries it has made durable.
        voters = self.config.voters
        quorum = self.quorum
        if quorum > len(voters):
            return
        mine = self._stable_index
        matches = sorted(
            (mine if v == self.name else (self.progress[v].match if v in self.progress else 0))
            for v in voters
        )
        candidate = matches[len(matches) - quorum]
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self._commit_to(candidate, now)

    def _commit_to(self, index: int, now: float) -> None:
        self.commit_index = index
        if not self.cluster_id:
            self._fix_identity()
        if self.role is not Role.LEADER:
            if self._election_deadline != INF and not self.can_campaign:
                self._election_deadline = INF  # its removal is committed (§4.2.2)
            return
        self._replication_due = True  # followers learn the new commit index
        self._check_reads()
        if self.config_index <= index:
            # The configuration in force is committed. Removed servers that know it
            # need nothing more from us (§4.2.2).
            for peer in list(self._retiring):
                self._check_retired(peer)
            if not self.is_voter and not self._stepping_down:
                # §4.2.2: a leader removed from the configuration leads until the change
                # commits, then hands over (§3.10: the most up-to-date voter is brought
                # up to date and told to campaign) and steps down.
                self._stepping_down = True
                target = self._best_transfer_target()
                if target is None:
                    self._become_follower(self.term, None, now)
                else:
                    self._begin_transfer(target, now)

    def _fix_identity(self) -> None:
        # The cluster's identity is the data of its first entry (a no-op of the first
        # leader); it is fixed once that entry is known committed.
        if self.commit_index < 1 or self.log.first_index != 1:
            return
        first = self.log.entry(1)
        if first.kind is EntryKind.NOOP and isinstance(first.data, str) and first.data:
            self.cluster_id = first.data

    def _check_retired(self, peer: str) -> None:
        # A removed server is told until it knows that the configuration without it is
        # committed (then it stops campaigning for good, §4.2.2).
        cfg_index = self._retiring.get(peer)
        pr = self.progress.get(peer)
        if cfg_index is None:
            return
        if pr is None or (pr.commit >= cfg_index and self.commit_index >= cfg_index):
            self._retire_done(peer)

    def _retire_done(self, peer: str) -> None:
        self._retiring.pop(peer, None)
        self.progress.pop(peer, None)

    def _after_match(self, peer: str, now: float) -> None:
        pr = self.progress.get(peer)
        if pr is None:
            return  # a commit just now may have ended our leadership or its retirement
        catch_up = self.catch_ups.get(peer)
        if catch_up is not None and catch_up.state is CatchUpState.PENDING:
            self._catch_up_progress(catch_up, pr.match, now)
        if (
            peer == self.transfer_target
            and not self._timeout_now_sent
            and pr.match == self.log.last_index
        ):
            self._timeout_now_sent = True
            self._send(TimeoutNow(self.name, peer, self.term, cluster=self.cluster_id))
            if self._stepping_down:
                # A removed leader hears nothing more from the cluster: step down now.
                self._become_follower(self.term, None, now)

    # -------------------------------------------------------------- snapshots
    def _on_install_snapshot(self, m: InstallSnapshot, now: float) -> None:
        self._follow(m.src, now)
        if m.index <= self.commit_index:
            # It already holds everything the snapshot covers (committed, so matching).
            self._send_snapshot_response(m, m.size, done=True)
            return
        incoming = self._incoming
        key = (m.index, m.snapshot_term, m.size)
        if incoming is None or incoming.key != key:
            if m.offset != 0:
                self._send_snapshot_response(m, 0, gap=True)
                return
            incoming = self._incoming = _Incoming(key)
        held = incoming.held
        if m.offset > held:
            self._send_snapshot_response(m, held, gap=True)  # a chunk was lost: resend
            return
        incoming.add(m.data if m.offset == held else m.data[held - m.offset :])
        if incoming.held < m.size:
            self._send_snapshot_response(m, incoming.held)
            return
        self._incoming = None
        data = b"".join(incoming.chunks)
        self._install_snapshot(Snapshot(m.index, m.snapshot_term, m.config, data, m.cluster), now)
        # Acknowledged once the snapshot is durable (the same Ready persists it).
        self._send_snapshot_response(m, m.size, done=True)

    def _install_snapshot(self, snapshot: Snapshot, now: float) -> None:
        # §5.3 (Figure 13): if the log holds the snapshot's last entry, keep what follows
        # it; otherwise discard the whole log. Either way, the state machine is reset
        # from the snapshot and everything up to it counts as committed and applied.
        was_voter = self.can_campaign
        index, term = snapshot.index, snapshot.term
        keep = self.log.term_at(index) == term and index <= self.log.last_index
        retained = self.log.slice(index + 1, self.log.last_index) if keep else []
        self.log.reset(index, term, retained)
        if not keep:
            self._truncate_from = index + 1
            self._stable_index = index
        self._unstable_from = max(self._unstable_from, index + 1)
        self._pending_compact = (index, term)
        self._pending_snapshot = snapshot
        self._restore = True
        self.snapshot = snapshot
        self._configs = [(index, snapshot.config)] + [
            (e.index, e.data) for e in retained if e.kind is EntryKind.CONFIG
        ]
        self.commit_index = max(self.commit_index, index)
        self._applied_handed = index
        if not self.cluster_id and snapshot.cluster_id:
            self.cluster_id = snapshot.cluster_id
        if self.can_campaign != was_voter:
            self._reset_election_timer(now)

    def _send_snapshot_response(
        self, m: InstallSnapshot, offset: int, *, done: bool = False, gap: bool = False
    ) -> None:
        self._send(
            InstallSnapshotResponse(
                self.name, m.src, self.term, m.index, offset, done, gap, cluster=self.cluster_id
            )
        )

    def _on_install_snapshot_response(self, m: InstallSnapshotResponse, now: float) -> None:
        pr = self._heard_from(m.src, 0, 0)
        if pr is None:
            return
        if pr.mode is not ProgressMode.SNAPSHOT or m.index != pr.snapshot_index:
            if m.done and m.index > pr.match and pr.mode is ProgressMode.SNAPSHOT:
                self._snapshot_installed(m.src, pr, m.index, now)  # an older one: fine
            return
        if m.done:
            self._snapshot_installed(m.src, pr, m.index, now)
            return
        if m.offset > pr.snapshot_acked:
            pr.snapshot_acked = m.offset
            pr.snapshot_progress_at = now
        if m.gap:
            pr.snapshot_sent = max(m.offset, pr.snapshot_acked)  # resend from its offset

    def _snapshot_installed(self, peer: str, pr: Progress, index: int, now: float) -> None:
        pr.acknowledge(index)
        pr.become_probe(index + 1)
        self._maybe_commit(now)
        self._after_match(peer, now)

    # --------------------------------------------------------------- proposals
    def _append(self, kind: EntryKind, data: Any) -> Entry:
        entry = Entry(self.term, self.log.last_index + 1, kind, data)
        self.log.append(entry)
        self._replication_due = True
        return entry

    def propose(self, command: Any, now: float) -> Entry:
        """Append a client command to the leader's log; returns its entry. It commits once
        a quorum holds it durably (the leader itself counts once it persisted it)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        self._now = now
        return self._append(EntryKind.COMMAND, command)

    def propose_entry(self, kind: EntryKind, data: Any, now: float) -> Entry:
        """Append an entry of a client session (§6.3: ``SESSION`` or ``CLIENT``)."""
        if kind not in (EntryKind.SESSION, EntryKind.CLIENT):
            raise ValueError(f"not a client entry kind: {kind}")
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        self._now = now
        return self._append(kind, data)

    def _wanted_peers(self) -> list[str]:
        return [p for p in self.config.members if p != self.name] + list(self._retiring)

    def _sync_progress(self) -> None:
        next_index = self.log.last_index + 1
        wanted = self._wanted_peers()
        for peer in wanted:
            if peer not in self.progress:
                self.progress[peer] = Progress(next_index)
        for peer in list(self.progress):
            if peer not in wanted:
                del self.progress[peer]
        self._replication_due = True

    def change_config(self, config: Config, now: float) -> Entry:
        """Append a new configuration (dissertation §4.1: one server at a time, in force
        from the moment it is appended). Raises if a change is already in progress."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        if not self.committed_in_term:
            raise LeaderNotReady("the leader has not committed an entry of its term yet")
        if self.config_index > self.commit_index:
            raise ConfigChangeInProgress(
                f"the configuration change at index {self.config_index} is not committed yet"
            )
        old = self.config
        self._check_change(old, config)
        self._now = now
        index = self.log.last_index + 1
        for peer in old.members:
            if peer not in config.members and peer != self.name:
                self._retiring[peer] = index
        for peer in config.members:
            if peer not in old.members and peer != self.name:
                # A server joining (or rejoining under a name removed earlier) may have
                # any log, or none: what the leader knew of that name means nothing now.
                self._retiring.pop(peer, None)
                self.progress[peer] = Progress(index)
                self.foreign.pop(peer, None)
        self._configs.append((index, config))
        entry = self._append(EntryKind.CONFIG, config)
        self._sync_progress()
        return entry

    def _check_change(self, old: Config, config: Config) -> None:
        changed = set(old.voters) ^ set(config.voters)
        changed |= set(old.learners) ^ set(config.learners)
        if len(changed) > 1:
            raise ValueError(f"one server at a time: {sorted(changed)} would change at once")
        if not config.voters:
            raise ValueError("cannot remove the last voter")
        floor = self.options.min_majority or 0
        if len(config.voters) < len(old.voters) and len(config.voters) < floor:
            raise ValueError(
                f"cannot go from {len(old.voters)} to {len(config.voters)} voters: "
                f"min_majority={floor} needs at least {floor} voters, or no quorum could "
                "ever form again"
            )

    def add_server_config(self, name: str, voter: bool, address: str | None = None) -> Config:
        """The configuration that adds ``name`` (as a voter, or a learner), reachable at
        ``address`` if given (else at the address it had, if any)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"server names are non-empty strings, got {name!r}")
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"an address is a non-empty 'host:port' string, got {address!r}")
        cfg = self.config
        if name in cfg.voters:
            raise ValueError(f"{name!r} is already a voter")
        if name in cfg.learners and not voter:
            raise ValueError(f"{name!r} is already a learner")
        learners = [n for n in cfg.learners if n != name]
        addresses = dict(cfg.addresses)
        if address is not None:
            addresses[name] = address
        if voter:
            return Config(voters=(*cfg.voters, name), learners=learners, addresses=addresses)
        return Config(voters=cfg.voters, learners=(*learners, name), addresses=addresses)

    def remove_server_config(self, name: str) -> Config:
        """The configuration without ``name``."""
        cfg = self.config
        if name not in cfg.members:
            raise UnknownServer(f"{name!r} is not a member of the cluster {cfg}")
        if cfg.voters == (name,):
            raise ValueError(f"cannot remove {name!r}: it is the last voter")
        return Config(
            voters=[n for n in cfg.voters if n != name],
            learners=[n for n in cfg.learners if n != name],
            addresses={n: a for n, a in cfg.addresses if n != name},
        )

    # ------------------------------------------------------------------ reads
    def request_read(self, now: float) -> int:
        """Start a linearizable read; returns its ticket.

        On the leader (§6.4 ReadIndex): when a quorum has acknowledged a message sent
        after the request, and the no-op of this term has committed, ``(ticket, read
        index)`` comes out in a Ready's ``reads`` (at once while a lease holds, §6.4.1).
        On a follower with ``follower_reads``: it asks the leader for the read index.
        If leadership is lost first, the ticket comes out in ``failed_reads``.
        """
        self._now = now
        if self.role is not Role.LEADER:
            if not (self.options.follower_reads and self.leader and self.role is Role.FOLLOWER):
                raise NotLeader(self.leader)
            self._next_ticket += 1
            ticket = self._next_ticket
            # Asked in the next Ready, with every read that comes before it (one request
            # per pass of the runtime, not one per read).
            self._read_batch.append(ticket)
            return ticket
        self._next_ticket += 1
        self._read_for(self._next_ticket, None, now)
        return self._next_ticket

    def _read_for(self, ticket: int, requester: str | None, now: float) -> None:
        """A leader serves a read: at once under a lease, else after a quorum round."""
        if self._lease_holds(now) or self._vouched_for_by(requester):
            self._answer_read(ticket, requester, self.commit_index)
            return
        self._round += 1
        self._pending_reads.append((self._round, ticket, requester))
        voters = self.config.voters
        for peer in voters:
            pr = self.progress.get(peer)
            if pr is not None:
                pr.heartbeat_wanted = True
                self._replication_due = True
        if len(voters) == 1:
            # No one else can have acknowledged a round not yet sent: only a leader that
            # is the one voter answers now (its quorum is itself).
            self._check_reads()

    def _vouched_for_by(self, requester: str | None) -> bool:
        """Whether a follower's request for a read index is, with this leader, a quorum's
        word that no other leader existed when its reads began (§6.4, a round saved).

        The request left after its reads began, in this term (a request of another term
        is refused before it gets here): so its sender had voted in no later term then,
        nor had this leader, which still leads that term. If the two are a quorum of
        voters (three voters, say), no leader of a later term could have been elected
        before the reads began, and every entry committed by then is in this leader's
        commit index: a valid read index, with no heartbeat round. The no-op of the term
        must have committed, as for every read."""
        if requester is None or not self.committed_in_term:
            return False
        voters = self.config.voters
        return (requester in voters) + (self.name in voters) >= self.quorum

    def _answer_read(self, ticket: int, requester: str | None, index: int) -> None:
        if requester is None:
            self._read_states.append((ticket, index))
        else:
            self._send(ReadIndexResponse(self.name, requester, self.term, ticket, index, True,
                                         cluster=self.cluster_id))  # fmt: skip

    def _lease_holds(self, now: float) -> bool:
        return self.options.lease_reads and now < self.lease_until

    def lease_read_index(self, now: float) -> int | None:
        """With ``lease_reads``, on a leader whose lease holds at ``now`` (§6.4.1): the
        read index of a read starting now (the commit index), with no round and no
        Ready; else ``None`` (use :meth:`request_read`)."""
        # lease_until's conditions, the cheapest first: this is every lease read's path.
        if (
            now < self._lease_until
            and self.options.lease_reads
            and self.role is Role.LEADER
            and self.transfer_target is None
            and self.committed_in_term
        ):
            return self.commit_index
        return None

    @property
    def lease_until(self) -> float:
        """Until when this leader is sure no other leader can be elected (§6.4.1): a
        quorum acknowledged a round sent at T, and voters refuse elections for a minimum
        election timeout after hearing from their leader (with CheckQuorum); less a margin
        for clock drift. ``-inf`` when not leading, before its no-op commits, before a
        round of its own is acknowledged, and while it hands leadership over."""
        if (
            self.role is not Role.LEADER
            or not self.committed_in_term
            or self.transfer_target is not None
        ):
            return -INF
        return self._lease_until

    def _quorum_acked_round(self) -> float:
        voters = self.config.voters
        quorum = self.quorum
        if quorum > len(voters):
            return 0
        acked = sorted(
            (INF if v == self.name else (self.progress[v].acked_round if v in self.progress else 0))
            for v in voters
        )
        return acked[len(acked) - quorum]

    def _check_reads(self) -> None:
        confirmed = self._quorum_acked_round()
        self._extend_lease(confirmed)
        if not self._pending_reads or not self.committed_in_term:
            return  # §6.4: reads wait until the leader has committed its no-op
        pending = self._pending_reads
        n = 0
        while n < len(pending) and pending[n][0] <= confirmed:
            _, ticket, requester = pending[n]
            self._answer_read(ticket, requester, self.commit_index)
            n += 1
        if n:
            del pending[:n]

    def _extend_lease(self, confirmed: float) -> None:
        # §6.4.1: the lease runs from the send time of the round a quorum acknowledged,
        # shortened for clock drift (options.lease_length derives how much).
        duration = lease_length(self.options)
        if confirmed == INF:  # a quorum of one: no one else can ever be elected
            self._lease_until = INF
            return
        sent = self._round_sent.get(int(confirmed))
        if sent is not None:
            self._lease_until = max(self._lease_until, sent + duration)
        for old in [s for s in self._round_sent if s < confirmed]:
            del self._round_sent[old]

    def _on_read_index_request(self, m: ReadIndexRequest, now: float) -> None:
        # §6.4: a follower's read: confirm leadership as for one of our own, then tell it
        # the index to apply up to.
        if self.role is not Role.LEADER:
            self._send(ReadIndexResponse(self.name, m.src, self.term, m.ticket,
                                         cluster=self.cluster_id))  # fmt: skip
            return
        self._read_for(m.ticket, m.src, now)

    def _send_read_request(self, now: float) -> None:
        """A follower asks its leader for a read index for every read waiting, in one
        request, unless :data:`MAX_READ_REQUESTS` are already in flight (an answer then
        sends the next): the leader sees one request per batch however many reads there
        are, and a batch does not wait for the answer to the one before it."""
        if not self._read_batch or len(self._read_requests) >= MAX_READ_REQUESTS:
            return
        if self.leader is None or self.role is not Role.FOLLOWER:
            self._failed_reads.extend(self._read_batch)
            self._read_batch = []
            return
        self._next_ticket += 1
        retry_at = now + self.options.min_election_timeout
        request = _ReadRequest(self._next_ticket, self.leader, retry_at, self._read_batch)
        self._read_requests[request.ticket] = request
        self._read_batch = []
        self._send(ReadIndexRequest(self.name, request.leader, self.term, request.ticket,
                                    cluster=self.cluster_id))  # fmt: skip

    def _on_read_index_response(self, m: ReadIndexResponse, now: float) -> None:
        request = self._read_requests.pop(m.ticket, None)
        if request is None:
            return  # an answer to a request given up on, or a duplicate
        if m.ok:
            # Each read in the batch began before the request left: the leader's index,
            # confirmed after that, is a valid read index for all of them (§6.4).
            self._read_states.extend((ticket, m.index) for ticket in request.reads)
        else:
            self._failed_reads.extend(request.reads)
        self._send_read_request(now)

    def _retry_read_requests(self, now: float) -> None:
        """Requests with no answer for an election timeout (the request or the answer
        was lost): ask again, for their reads and any waiting, in one request."""
        late = [t for t, r in self._read_requests.items() if now >= r.retry_at]
        if not late:
            return
        reads = [read for t in late for read in self._read_requests.pop(t).reads]
        self._read_batch[:0] = sorted(reads)
        self._send_read_request(now)

    def _fail_remote_reads(self) -> None:
        """Reads asked of a leader we no longer follow will not be answered: fail them
        (reads not yet asked go to the new leader, or fail if there is none)."""
        for ticket, request in list(self._read_requests.items()):
            if request.leader != self.leader:
                del self._read_requests[ticket]
                self._failed_reads.extend(request.reads)
        if self._read_batch:
            self._send_read_request(self._now)

    # ------------------------------------------------------ leadership transfer
    def _best_transfer_target(self) -> str | None:
        best: tuple[int, str] | None = None
        for peer in self.config.voters:
            pr = self.progress.get(peer)
            if peer != self.name and pr is not None:
                # Most up to date first; the name breaks ties so the choice is deterministic.
                key = (pr.match, peer)
                if best is None or key[0] > best[0]:
                    best = key
        return best[1] if best is not None else None

    def transfer_leadership(self, target: str | None, now: float) -> str:
        """Begin handing leadership to ``target`` (§3.10); returns the chosen target.

        Proposals are refused until it completes or is abandoned after an election
        timeout. The target is sent TimeoutNow once its log matches the leader's.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target is None:
            target = self._best_transfer_target()
            if target is None:
                raise TransferFailed("there is no other voter to hand leadership to")
        elif target not in self.config.voters:
            if target in self.config.learners:
                raise NotVoter(f"{target!r} is a learner and cannot lead")
            raise UnknownServer(f"{target!r} is not a voter of the cluster {self.config}")
        if target == self.name:
            return target
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        self._now = now
        self._begin_transfer(target, now)
        return target

    def _begin_transfer(self, target: str, now: float) -> None:
        self.transfer_target = target
        self._transfer_deadline = now + self.options.max_election_timeout
        self._timeout_now_sent = False
        self.change_count += 1
        self._replication_due = True
        self._after_match(target, now)

    def _abort_transfer(self) -> None:
        self.transfer_target = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        self.change_count += 1

    # ------------------------------------------------------------- catch-up
    def start_catch_up(self, name: str, now: float) -> CatchUp:
        """Begin bringing learner ``name`` up to date before it may vote (§4.2.1).

        The leader replicates in rounds: each round ends when the learner holds every
        entry the leader had when the round began. When a round takes no longer than an
        election timeout, the learner is caught up. The catch-up fails after
        ``MAX_CATCH_UP_ROUNDS`` rounds, or when the learner makes no progress for an
        election timeout.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if name not in self.config.learners:
            raise UnknownServer(f"{name!r} is not a learner of the cluster {self.config}")
        catch_up = CatchUp(round_end=self.log.last_index, round_start=now)
        self.catch_ups[name] = catch_up
        pr = self.progress[name]
        if pr.match >= catch_up.round_end:
            self._catch_up_progress(catch_up, pr.match, now)
        return catch_up

    def _catch_up_progress(self, catch_up: CatchUp, match: int, now: float) -> None:
        if match > catch_up.match:
            catch_up.match = match
            catch_up.last_progress = now
        if match < catch_up.round_end:
            return
        if now - catch_up.round_start <= self.options.min_election_timeout:
            catch_up.state = CatchUpState.DONE
        elif catch_up.rounds >= MAX_CATCH_UP_ROUNDS:
            catch_up.fail(f"still behind after {catch_up.rounds} rounds of replication")
        else:
            catch_up.rounds += 1
            catch_up.round_end = self.log.last_index
            catch_up.round_start = now
            if match < catch_up.round_end:
                return
            # The learner already holds what the new round would send: that round
            # takes no time, so it is caught up (an idle cluster moves it no further).
            catch_up.state = CatchUpState.DONE
        self.change_count += 1

    # ------------------------------------------------------------------ misc
    def _send(self, m: Message) -> None:
        self._outbox.append(m)


_HANDLERS: dict[type, Callable[[RaftNode, Any, float], None]] = {
    RequestVote: RaftNode._on_request_vote,
    VoteResponse: RaftNode._on_vote_response,
    AppendEntries: RaftNode._on_append_entries,
    AppendResponse: RaftNode._on_append_response,
    Heartbeat: RaftNode._on_heartbeat,
    HeartbeatResponse: RaftNode._on_heartbeat_response,
    TimeoutNow: RaftNode._on_timeout_now,
    InstallSnapshot: RaftNode._on_install_snapshot,
    InstallSnapshotResponse: RaftNode._on_install_snapshot_response,
    ReadIndexRequest: RaftNode._on_read_index_request,
    ReadIndexResponse: RaftNode._on_read_index_response,
    ClusterMismatch: RaftNode._on_cluster_mismatch,
}
