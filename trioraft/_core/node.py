"""The Raft node: every rule of the algorithm, and no I/O.

A :class:`RaftNode` consumes events (a message arrived, the timer fired, a client
proposes, a read is requested) with the current time passed in, updates its persistent
state in its :class:`~trioraft.MemoryStorage` *before* anything leaves it, and leaves
what the runtime has to do in plain attributes: messages in :attr:`RaftNode.outbox`,
confirmed reads in :attr:`RaftNode.ready_reads`, the next timer deadline in
:attr:`RaftNode.deadline`, the commit index to apply up to in
:attr:`RaftNode.commit_index`. It never imports trio, never reads a clock and draws
randomness only from the ``random.Random`` it is given, so it runs the same way every
time it is given the same inputs.

References: "Figure 2" is the Raft paper's summary of the algorithm; "§x.y" are sections
of the paper (§5) or of Ongaro's dissertation (§3.10, §4, §6, §9).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import (
    ConfigChangeInProgress,
    MalformedMessage,
    NotLeader,
    NotVoter,
    RaftError,
    TransferFailed,
    UnknownServer,
)
from .messages import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
    Config,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from .options import ServerOptions
from .progress import Progress, ProgressMode

if TYPE_CHECKING:
    from .._storage import MemoryStorage

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


class RaftNode:
    """One server's Raft state machine. Call its methods from one thread at a time."""

    def __init__(
        self,
        name: str,
        storage: MemoryStorage,
        options: ServerOptions,
        rng: random.Random,
        now: float,
    ) -> None:
        self.name = name
        self.storage = storage
        self.options = options
        self._rng = rng
        self.log = storage.log
        if storage.base_config is None:
            storage.base_config = Config(voters=options.initial_config)
        # Every configuration in the log, oldest first; the base one sits at the
        # snapshot index. The last one is in force as soon as it is appended (§4.1).
        base_index = storage.snapshot.index if storage.snapshot is not None else 0
        base = storage.snapshot.config if storage.snapshot is not None else storage.base_config
        self._configs: list[tuple[int, Config]] = [(base_index, base)]
        for entry in self.log.slice(self.log.first_index, self.log.last_index):
            if entry.kind is EntryKind.CONFIG:
                self._configs.append((entry.index, entry.data))

        self.role = Role.FOLLOWER
        self.leader: str | None = None
        #: Highest index known committed (persisted, so a restart can apply at once).
        self.commit_index = storage.commit_index
        #: Messages to send, in order. The runtime empties it.
        self.outbox: list[Message] = []
        #: Reads confirmed by a quorum: (seq, read index). The runtime empties it.
        self.ready_reads: list[tuple[int, int]] = []
        #: Reads dropped because leadership was lost. The runtime empties it.
        self.failed_reads: list[int] = []
        #: Things worth a log line (messages refused from another cluster, ...). The
        #: runtime empties it.
        self.notices: list[str] = []
        #: Servers that refused to follow this leader because they belong to another
        #: cluster: name -> that cluster's identity (kept while leading).
        self.foreign: dict[str, str] = {}

        self._election_deadline = INF
        self._last_leader_contact = -INF
        self._votes: dict[str, bool] = {}
        self._campaign_force = False
        # Leader state.
        self.progress: dict[str, Progress] = {}
        self._retiring: dict[str, int] = {}  # removed peers still told of their removal
        self._seq = 0  # read round stamp, carried by every message to followers
        self._pending_reads: list[int] = []
        self._leader_tick_at = INF
        #: Learners being caught up before promotion (§4.2.1), by name.
        self.catch_ups: dict[str, CatchUp] = {}
        self._stepping_down = False  # removed from the configuration: handing over
        #: Bumped whenever a catch-up or a transfer changes state (the runtime watches it).
        self.events = 0
        self.transfer_target: str | None = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        self._reset_election_timer(now)

    # ------------------------------------------------------------------ state
    @property
    def cluster_id(self) -> str:
        """The identity of this server's cluster ("" until its first entry commits).

        The first leader of a new cluster writes a fresh identity into its first entry;
        it becomes every server's identity once that entry is known committed, and is
        persisted. Messages carry it; a server refuses messages of another cluster.
        """
        return self.storage.cluster_id

    @property
    def term(self) -> int:
        """The current term (persisted)."""
        return self.storage.term

    @property
    def voted_for(self) -> str | None:
        """Who this server voted for in the current term (persisted)."""
        return self.storage.voted_for

    def _set_hard_state(self, term: int, voted_for: str | None) -> None:
        # Figure 2: currentTerm and votedFor are persisted before responding to RPCs.
        self.storage.term = term
        self.storage.voted_for = voted_for

    @property
    def config(self) -> Config:
        """The configuration in force: the latest one in the log, committed or not (§4.1)."""
        return self._configs[-1][1]

    @property
    def config_index(self) -> int:
        """Log index of the configuration in force."""
        return self._configs[-1][0]

    @property
    def is_voter(self) -> bool:
        """Whether this server votes in its current configuration."""
        return self.name in self.config.voters

    @property
    def committed_config(self) -> Config:
        """The latest configuration whose entry this server knows to be committed."""
        commit = self.commit_index
        for index, config in reversed(self._configs):
            if index <= commit:
                return config
        return self._configs[0][1]

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
    def deadline(self) -> float:
        """When the runtime must call :meth:`tick` next (``inf``: never)."""
        if self.role is Role.LEADER:
            return min(self._leader_tick_at, self._transfer_deadline)
        return self._election_deadline

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
        if not self.options.check_quorum or self.leader is None:
            return False
        if self.role is Role.LEADER:
            return True
        return now - self._last_leader_contact < self.options.min_election_timeout

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
            # Figure 2: a message from a newer term turns any server into a follower of
            # that term. Three exceptions keep PreVote and disruption protection sound.
            if isinstance(m, RequestVote):
                if not m.force and self._in_lease(now):
                    # §4.2.3: ignore elections while a leader is known to be alive.
                    self._send(
                        VoteResponse(
                            self.name, m.src, self.term, False, m.pre_vote, cluster=self.cluster_id
                        )
                    )
                    return
                if not m.pre_vote:
                    self._become_follower(m.term, None, now)
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign in (§9.6)
            else:
                leader = m.src if isinstance(m, (AppendEntries, Heartbeat, TimeoutNow)) else None
                self._become_follower(m.term, leader, now)
        elif m.term < self.term:
            # Figure 2: reject requests from older terms, telling the sender our term so
            # a stale leader or candidate steps down. Stale responses are dropped.
            if isinstance(m, AppendEntries):
                self._send(
                    AppendResponse(
                        self.name,
                        m.src,
                        self.term,
                        False,
                        reject_index=m.prev_log_index,
                        commit_index=self.commit_index,
                        cluster=self.cluster_id,
                    )
                )
            elif isinstance(m, Heartbeat):
                self._send(
                    HeartbeatResponse(
                        self.name,
                        m.src,
                        self.term,
                        m.seq,
                        self.commit_index,
                        cluster=self.cluster_id,
                    )
                )
            elif isinstance(m, RequestVote):
                self._send(
                    VoteResponse(
                        self.name, m.src, self.term, False, m.pre_vote, cluster=self.cluster_id
                    )
                )
            return
        handler(self, m, now)

    def _on_foreign(self, m: Message) -> None:
        # Cluster identity: a server never takes part in another cluster's log.
        if isinstance(m, ClusterMismatch):
            if (
                self.role is Role.LEADER
                and m.src in self.progress
                and m.cluster
                and m.cluster != self.cluster_id
            ):
                if self.foreign.get(m.src) != m.cluster:
                    self.foreign[m.src] = m.cluster
                    self.notices.append(
                        f"{m.src!r} belongs to another cluster (identity {m.cluster}) and "
                        f"refuses to follow this leader of cluster {self.cluster_id}"
                    )
                    self.events += 1
                catch_up = self.catch_ups.get(m.src)
                if catch_up is not None and catch_up.state is CatchUpState.PENDING:
                    catch_up.foreign_cluster = m.cluster
                    catch_up.fail(f"it belongs to another cluster (identity {m.cluster})")
                    self.events += 1
            return
        if isinstance(m, (AppendEntries, Heartbeat, RequestVote, TimeoutNow)):
            if m.src not in self.foreign:
                self.foreign[m.src] = m.cluster
                self.notices.append(
                    f"refused messages from {m.src!r} of cluster {m.cluster}: this server "
                    f"belongs to cluster {self.cluster_id}"
                )
            self._send(ClusterMismatch(self.name, m.src, self.term, cluster=self.cluster_id))

    def _on_foreign_handler(self, m: Message, now: float) -> None:
        self._on_foreign(m)  # never reached: step() hands these to _on_foreign first

    def tick(self, now: float) -> None:
        """The timer reached :attr:`deadline`."""
        if now < self.deadline:
            return
        if self.role is Role.LEADER:
            if now >= self._transfer_deadline:
                self._abort_transfer()
                if self._stepping_down:
                    self._become_follower(self.term, None, now)  # no one took over in time
                    return
            if now >= self._leader_tick_at:
                self._leader_tick(now)
            return
        if self.can_campaign:
            self._campaign(now, pre=self.options.pre_vote, force=False)
        else:
            self._election_deadline = INF

    # ------------------------------------------------------------ elections
    def trigger_election(self, now: float) -> None:
        """Start an election now, skipping PreVote (ExRaft's ``trigger_election``).

        Voters answer it even if they heard from a leader recently: it was asked for.
        """
        if not self.can_campaign:
            raise NotVoter(f"{self.name!r} is not a voter in its configuration {self.config}")
        self._campaign(now, pre=False, force=True)

    def _campaign(self, now: float, *, pre: bool, force: bool) -> None:
        self._campaign_force = force
        self._leave_leadership()
        if pre:
            # §9.6 PreVote: ask whether we could win before disturbing anyone's term.
            self.role = Role.PRE_CANDIDATE
            vote_term = self.term + 1
        else:
            # §5.2: increment the term, vote for ourselves, ask everyone else.
            self._set_hard_state(self.term + 1, self.name)
            self.role = Role.CANDIDATE
            vote_term = self.term
        self.leader = None
        self._votes = {self.name: True}
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
            self._send(
                VoteResponse(
                    self.name,
                    m.src,
                    m.term if grant else self.term,
                    grant,
                    True,
                    cluster=self.cluster_id,
                )
            )
            return
        # Here m.term == self.term. Figure 2: one vote per term, first come first served
        # (a server already following a leader in this term has nothing to vote for).
        can_vote = self.voted_for == m.src or (self.voted_for is None and self.leader is None)
        grant = can_vote and self._log_up_to_date(m)
        if grant:
            self._set_hard_state(self.term, m.src)
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
            self._set_hard_state(term, None)
        self._leave_leadership()
        self.role = Role.FOLLOWER
        self.leader = leader
        if leader is not None:
            self._last_leader_contact = now
        self._reset_election_timer(now)

    def _leave_leadership(self) -> None:
        if self.role is not Role.LEADER:
            return
        self.progress = {}
        self._retiring = {}
        self.failed_reads.extend(self._pending_reads)
        self._pending_reads = []
        self._leader_tick_at = INF
        self.transfer_target = None
        self._transfer_deadline = INF
        self._stepping_down = False
        for catch_up in self.catch_ups.values():
            if catch_up.state is CatchUpState.PENDING:
                catch_up.fail("leadership was lost")
        self.catch_ups = {}
        self.events += 1

    def _become_leader(self, now: float) -> None:
        self.role = Role.LEADER
        self.leader = self.name
        self._last_leader_contact = now
        self._seq = 0
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
        self._maybe_commit(now)  # alone in the cluster, it is committed at once

    def _leader_tick(self, now: float) -> None:
        """Every election timeout (the longest) while leading."""
        self._leader_tick_at = now + self.options.max_election_timeout
        timeout = self.options.max_election_timeout
        for name in list(self._retiring):
            pr = self.progress.get(name)
            if pr is None:
                continue
            pr.idle_ticks = 0 if pr.recent_active else pr.idle_ticks + 1
            pr.recent_active = False
            if pr.idle_ticks >= RETIRING_TICKS:
                self._retire_done(name)  # gone for now; told again if it campaigns
        for name, catch_up in self.catch_ups.items():
            # §4.2.1: abandon a catch-up that makes no progress for an election timeout.
            if catch_up.state is CatchUpState.PENDING and now - catch_up.last_progress > timeout:
                catch_up.fail(f"{name!r} made no progress for an election timeout")
                self.events += 1
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

    # ------------------------------------------------------------ replication
    def _on_append_entries(self, m: AppendEntries, now: float) -> None:
        self._follow(m.src, now)
        prev, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        if prev < self.commit_index:
            # Entries up to our commit index are committed and therefore in the leader's
            # log too (Leader Completeness, §5.4): skip them rather than compare.
            skip = self.commit_index - prev
            if skip >= len(entries):
                self._send(
                    AppendResponse(
                        self.name,
                        m.src,
                        self.term,
                        True,
                        self.commit_index,
                        seq=m.seq,
                        commit_index=self.commit_index,
                        cluster=self.cluster_id,
                    )
                )
                return
            entries = entries[skip:]
            prev = self.commit_index
        elif not self.log.matches(prev, prev_term):
            # Figure 2 (AppendEntries 2): reply false if the log has no entry at
            # prevLogIndex with prevLogTerm. The hint lets the leader skip a term's worth
            # of entries per round trip instead of one entry (§5.3, "fast backup").
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
                    reject_index=m.prev_log_index,
                    conflict_index=conflict_index,
                    conflict_term=conflict_term,
                    seq=m.seq,
                    commit_index=self.commit_index,
                    cluster=self.cluster_id,
                )
            )
            return
        self._append_from_leader(entries, now)
        last_new = prev + len(entries)
        # Figure 2 (AppendEntries 5): commitIndex = min(leaderCommit, index of last new entry).
        if m.leader_commit > self.commit_index:
            self._commit_to(min(m.leader_commit, last_new), now)
        self._send(
            AppendResponse(
                self.name,
                m.src,
                self.term,
                True,
                last_new,
                seq=m.seq,
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
                log.truncate_after(entry.index - 1)
                while self._configs[-1][0] >= entry.index:
                    self._configs.pop()  # §4.1: fall back to the previous configuration
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

    def _follow(self, leader: str, now: float) -> None:
        """A message from the leader of our term: follow it and restart the timer."""
        if self.role is Role.LEADER:
            raise AssertionError(
                f"Raft safety violated: {leader!r} and {self.name!r} both lead term {self.term}"
            )
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader, now)  # §5.2: a candidate defers
        self.leader = leader
        self._last_leader_contact = now
        self._reset_election_timer(now)

    def _on_heartbeat(self, m: Heartbeat, now: float) -> None:
        self._follow(m.src, now)
        # The leader sends min(match, commit): entries up to it are known to match ours.
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, self.log.last_index), now)
        self._send(
            HeartbeatResponse(
                self.name, m.src, self.term, m.seq, self.commit_index, cluster=self.cluster_id
            )
        )

    def _on_timeout_now(self, m: TimeoutNow, now: float) -> None:
        # §3.10: the leader hands over: campaign at once, skipping PreVote, and ask voters
        # to ignore their leader lease for this election.
        self._follow(m.src, now)
        if self.can_campaign:
            self._campaign(now, pre=False, force=True)

    def _on_append_response(self, m: AppendResponse, now: float) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
        if m.commit_index > pr.commit:
            pr.commit = m.commit_index
            if m.src in self._retiring:
                self._check_retired(m.src)
                if m.src not in self.progress:
                    return
        if m.success:
            first = pr.match == 0
            advanced = pr.acknowledge(m.match_index)
            if first and advanced:
                self.events += 1  # its first answer (a new learner waits for it)
            if pr.mode is ProgressMode.PROBE:
                pr.become_replicate()
            if advanced:
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

    def _on_heartbeat_response(self, m: HeartbeatResponse, now: float) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        if m.seq > pr.acked_seq:
            pr.acked_seq = m.seq
        if m.commit_index > pr.commit:
            pr.commit = m.commit_index
            if m.src in self._retiring:
                self._check_retired(m.src)
                if m.src not in self.progress:
                    self._check_reads()
                    return
        if pr.mode is ProgressMode.PROBE:
            pr.probe_sent = False  # the probe or its answer may be lost: allow another
        elif pr.match < self.log.last_index and pr.match == pr.heartbeat_match:
            # No progress over a whole heartbeat round while entries are outstanding:
            # messages were lost. Probe again from what is known to match.
            pr.become_probe(pr.match + 1)
        pr.heartbeat_match = pr.match
        self._check_reads()

    def replicate(self, peer: str, now: float, heartbeat_due: bool) -> Message | None:
        """The next message to send to ``peer``, or ``None`` if nothing is due.

        Used by the leader's per-peer replication task: entries the follower lacks
        (batched up to ``max_entries_per_message``, pipelined up to ``max_inflight``
        messages in flight), else a heartbeat when one is due or a read waits.
        """
        if self.role is not Role.LEADER:
            return None
        pr = self.progress.get(peer)
        if pr is None:
            return None
        log = self.log
        if self._entries_due(pr):
            prev = pr.next - 1
            prev_term = log.term_at(prev)
            if prev_term is None:
                raise AssertionError(f"entry {prev} needed by {peer!r} was compacted")
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
                self._seq,
                cluster=self.cluster_id,
            )
        if heartbeat_due or pr.heartbeat_wanted:
            pr.heartbeat_wanted = False
            return Heartbeat(
                self.name,
                peer,
                self.term,
                min(pr.match, self.commit_index),
                self._seq,
                cluster=self.cluster_id,
            )
        return None

    def _entries_due(self, pr: Progress) -> bool:
        if pr.mode is ProgressMode.PROBE:
            return not pr.probe_sent
        return pr.next <= self.log.last_index and len(pr.inflight) < self.options.max_inflight

    def has_pending(self, peer: str) -> bool:
        """Whether :meth:`replicate` has something for ``peer`` without a heartbeat being
        due (the runtime wakes a replication task only then)."""
        pr = self.progress.get(peer)
        return (
            pr is not None
            and self.role is Role.LEADER
            and (pr.heartbeat_wanted or self._entries_due(pr))
        )

    def _maybe_commit(self, now: float) -> None:
        # Figure 2 (leaders): commit N if a quorum has matchIndex >= N and log[N] is of
        # the current term. §5.4.2: never count replicas of an older term's entry.
        voters = self.config.voters
        quorum = self.quorum
        if quorum > len(voters):
            return
        last = self.log.last_index
        matches = sorted(
            (last if v == self.name else (self.progress[v].match if v in self.progress else 0))
            for v in voters
        )
        candidate = matches[len(matches) - quorum]
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self._commit_to(candidate, now)

    def _commit_to(self, index: int, now: float) -> None:
        self.commit_index = index
        self.storage.commit_index = index
        if not self.storage.cluster_id:
            self._fix_identity()
        if self.role is not Role.LEADER:
            if self._election_deadline != INF and not self.can_campaign:
                self._election_deadline = INF  # its removal is committed (§4.2.2)
            return
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
            self.storage.cluster_id = first.data

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

    # --------------------------------------------------------------- proposals
    def _append(self, kind: EntryKind, data: Any) -> Entry:
        entry = Entry(self.term, self.log.last_index + 1, kind, data)
        self.log.append(entry)
        return entry

    def propose(self, command: Any, now: float) -> Entry:
        """Append a client command to the leader's log; returns its entry."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise TransferInProgress(f"leadership is being transferred to {self.transfer_target!r}")
        entry = self._append(EntryKind.COMMAND, command)
        if len(self.config.voters) == 1:
            self._maybe_commit(now)  # a single-voter cluster commits at once
        return entry

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
        index = self.log.last_index + 1
        for peer in old.members:
            if peer not in config.members and peer != self.name:
                self._retiring[peer] = index
        next_index = self.log.last_index + 1
        for peer in config.members:
            if peer not in old.members and peer != self.name:
                # A server joining (or rejoining under a name removed earlier) may have
                # any log, or none: what the leader knew of that name means nothing now.
                self._retiring.pop(peer, None)
                self.progress[peer] = Progress(next_index)
                self.foreign.pop(peer, None)
        self._configs.append((index, config))
        entry = self._append(EntryKind.CONFIG, config)
        self._sync_progress()
        self._maybe_commit(now)
        return entry

    def add_server_config(self, name: str, voter: bool) -> Config:
        """The configuration that adds ``name`` (as a voter, or a learner)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"server names are non-empty strings, got {name!r}")
        cfg = self.config
        if name in cfg.voters:
            raise ValueError(f"{name!r} is already a voter")
        if name in cfg.learners and not voter:
            raise ValueError(f"{name!r} is already a learner")
        learners = [n for n in cfg.learners if n != name]
        if voter:
            return Config(voters=(*cfg.voters, name), learners=learners)
        return Config(voters=cfg.voters, learners=(*learners, name))

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
        )

    # ------------------------------------------------------------------ reads
    def request_read(self, now: float) -> int:
        """Start a linearizable read (§6.4 ReadIndex); returns its ticket (``seq``).

        When a quorum has acknowledged a message sent after the request, and the no-op
        of this term has committed, ``(seq, read_index)`` appears in :attr:`ready_reads`.
        If leadership is lost first, ``seq`` appears in :attr:`failed_reads`.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        self._seq += 1
        self._pending_reads.append(self._seq)
        for peer in self.config.voters:
            pr = self.progress.get(peer)
            if pr is not None:
                pr.heartbeat_wanted = True
        self._check_reads()
        return self._seq

    def _check_reads(self) -> None:
        if not self._pending_reads or not self.committed_in_term:
            return  # §6.4: reads wait until the leader has committed its no-op
        voters = self.config.voters
        quorum = self.quorum
        if quorum > len(voters):
            return
        acked = sorted(
            (INF if v == self.name else (self.progress[v].acked_seq if v in self.progress else 0))
            for v in voters
        )
        confirmed = acked[len(acked) - quorum]
        pending = self._pending_reads
        n = 0
        while n < len(pending) and pending[n] <= confirmed:
            self.ready_reads.append((pending[n], self.commit_index))
            n += 1
        if n:
            del pending[:n]

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
        self._begin_transfer(target, now)
        return target

    def _begin_transfer(self, target: str, now: float) -> None:
        self.transfer_target = target
        self._transfer_deadline = now + self.options.max_election_timeout
        self._timeout_now_sent = False
        self.events += 1
        self._after_match(target, now)

    def _abort_transfer(self) -> None:
        self.transfer_target = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        self.events += 1

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
            return
        self.events += 1

    # ------------------------------------------------------------------ misc
    def _send(self, m: Message) -> None:
        self.outbox.append(m)

    def take_outbox(self) -> list[Message]:
        """Return and clear the messages to send."""
        out = self.outbox
        self.outbox = []
        return out


_HANDLERS: dict[type, Callable[[RaftNode, Any, float], None]] = {
    RequestVote: RaftNode._on_request_vote,
    VoteResponse: RaftNode._on_vote_response,
    AppendEntries: RaftNode._on_append_entries,
    AppendResponse: RaftNode._on_append_response,
    Heartbeat: RaftNode._on_heartbeat,
    HeartbeatResponse: RaftNode._on_heartbeat_response,
    TimeoutNow: RaftNode._on_timeout_now,
    ClusterMismatch: RaftNode._on_foreign_handler,
}
