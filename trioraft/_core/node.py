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

The node is built of rooms, each a file with what it owns and what it may not touch in its
documentation (see docs/design.rst's map): :mod:`.base` (the shared state),
:mod:`.unstable` (Ready/Advance), :mod:`.elections`, :mod:`.follower`,
:mod:`.replication`, :mod:`.snapshots`, :mod:`.reads`, :mod:`.membership` (with the pure
rules of :mod:`.confchange`), and :mod:`.quorum`, the one place a majority is computed.
This module puts them together: the node's transitions between roles, ``step`` and
``tick``, proposals.

The rooms stand in one line of single inheritance, ``RaftNode`` < :class:`.Elections` <
:class:`.Following` < :class:`.Replication` < :class:`.Snapshots` < :class:`.Reads` <
:class:`.Membership` < :class:`.ReadyCycle` < :class:`.NodeState`: the method resolution
order the mixins they were had, in a shape a compiled (mypyc) class can take, as it has
one base. The order is mechanical, not a hierarchy: a room calls across only through the
transitions :mod:`.base` declares, as before.

References: "Figure 2" is the Raft paper's summary of the algorithm; "§x.y" are sections
of the paper (§5) or of Ongaro's dissertation (§3.10, §4, §5.3 snapshots, §6, §9).
"""

from __future__ import annotations

from collections.abc import Callable, KeysView
from typing import Any

from .._errors import (
    MalformedMessage,
    NotLeader,
)
from .confchange import (
    MAX_CATCH_UP_ROUNDS,
    CatchUp,
    CatchUpState,
    ChangePhase,
    MembershipChange,
)
from .elections import Elections
from .messages import (
    AppendEntries,
    AppendResponse,
    ClusterMismatch,
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
from .progress import ProgressMode
from .ready import NodeStatus
from .types import INF, MAX_TERM_GAP, LeaderNotReady, Role, TransferInProgress, mypyc_attr

__all__ = [
    "MAX_CATCH_UP_ROUNDS",
    "CatchUp",
    "CatchUpState",
    "ChangePhase",
    "LeaderNotReady",
    "MembershipChange",
    "RaftNode",
    "Role",
    "TransferInProgress",
]


# A test may run an interpreted subclass of the node (testing._pure: a test's
# stand-in for one of its methods); every class of its line must allow it.
@mypyc_attr(allow_interpreted_subclasses=True)
class RaftNode(Elections):
    """One server's Raft state machine. Call its methods from one thread at a time."""

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

    def step(self, m: object, now: float) -> None:
        """Handle one message from another server (:class:`~trioraft.MalformedMessage`
        for anything that is not a well-formed Raft message for this server)."""
        handler = _HANDLERS.get(type(m))
        if handler is None or not isinstance(m, Message):
            raise MalformedMessage(f"not a Raft message: {m!r}")
        if m.dst != self.name:
            raise MalformedMessage(f"message for {m.dst!r} delivered to {self.name!r}: {m!r}")
        if not isinstance(m.term, int) or m.term < 0:
            raise MalformedMessage(f"message with an invalid term: {m!r}")
        if m.term > self.term + MAX_TERM_GAP:
            # A term no run of elections could have reached while this server was away:
            # taken, it would leave the cluster few or no terms to elect in (terms are
            # bounded on the wire), so one bad message could end all elections.
            raise MalformedMessage(
                f"message from {m.src!r} with term {m.term}, over {MAX_TERM_GAP} above "
                f"this server's ({self.term})"
            )
        if not isinstance(m.cluster, str):
            raise MalformedMessage(f"message with an invalid cluster identity: {m!r}")
        self._now = now
        if type(m) is InstallSnapshot and not 0 <= m.offset <= m.offset + len(m.data) <= m.size:
            # §5.3: a chunk holds bytes of a snapshot of the size it declares, no more.
            # Refused (a buggy or forged sender): it changes nothing, not even the term.
            self._notices.append(
                f"refused an InstallSnapshot from {m.src!r}: it holds bytes {m.offset} to "
                f"{m.offset + len(m.data)} of a snapshot of {m.size} bytes"
            )
            return
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
                self.name,
                m.src,
                self.term,
                m.index,
                0,
                transfer=m.transfer,
                cluster=self.cluster_id,
            )
        elif isinstance(m, ReadIndexRequest):
            reply = self._read_answer(m)
        else:
            return
        self._send(reply)

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

    def _become_follower(self, term: int, leader: str | None, now: float) -> None:
        if term > self.term:
            self.term = term
            self.voted_for = None
            self._incoming = None  # an older term's snapshot transfer: never resumed
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
        for _, ticket, request in self._pending_reads:
            if request is None:
                self._failed_reads.append(ticket)
            else:
                self._answer_request(request)  # a refusal: it no longer leads
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
        change = self.membership_change
        if change is not None:
            # Entries of the change may be in others' logs: the next leader may complete
            # it (a joint configuration always is, §4.3), so its outcome is unknown.
            change.fail("leadership was lost", unknown=change.entries > 0)
            self.membership_change = None
        self.change_count += 1

    def _become_leader(self, now: float) -> None:
        self.role = Role.LEADER
        self.leader = self.name
        self._round = 0
        self._handed_over = False
        self.progress = {}
        # §4.2.2: servers removed by configurations in our log may not know it (they
        # were down, or their leader is gone): tell them, until they know it committed.
        members = self.config.members
        self._retiring = {
            name: self.config_index
            for cfg in self.configs.all()
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
                self._advance_change()
        if not self.options.check_quorum:
            return
        # §6.2 CheckQuorum: a leader that has not heard from a quorum within an election
        # timeout steps down, so a partitioned leader stops serving clients.
        active = {self.name}
        for peer in self.config.all_voters:
            pr = self.progress.get(peer)
            if pr is not None:
                if pr.recent_active:
                    active.add(peer)
                pr.recent_active = False
        if not self._quorum().reached(active.__contains__):
            self._become_follower(self.term, None, now)

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
        if self.config_index <= index and self.config.joint:
            # §4.3: C_old,new is committed: C_new follows at once, on any leader.
            self._append_config(self.config.leave_joint())
            return
        self._advance_change()
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

    # The runtime's facade: besides the events above and the Ready/Advance cycle, the
    # runtime reads only the node's live soft state (role, term, leader, commit_index,
    # transfer_target, lease_until, deadline, unsent_entries, applied, snapshot_index)
    # and what these report (its rooms add their own: :meth:`awaiting_first_answer`,
    # :meth:`transfer_outcome`, :meth:`unknown_outcomes`).
    def status(self) -> NodeStatus:
        """What this node reports of itself (etcd's ``RawNode.Status``)."""
        cfg = self.config
        log = self.log
        return NodeStatus(
            role=self.role,
            term=self.term,
            leader=self.leader,
            commit_index=self.commit_index,
            last_log_index=log.last_index,
            log_length=log.last_index - log.snapshot_index,
            snapshot_index=self.snapshot_index,
            config=cfg,
            match_index=(
                {p: pr.match for p, pr in self.progress.items() if p in cfg.members}
                if self.role is Role.LEADER
                else {}
            ),
            transfer_target=self.transfer_target,
            cluster_id=self.cluster_id,
        )

    def followers(self) -> KeysView[str]:
        """On a leader, the servers it replicates to (a live view; empty elsewhere)."""
        return self.progress.keys()

    def entries_from(self, index: int) -> list[Entry]:
        """The log's entries from ``index`` (or from its first held, if compacted) to its
        last."""
        log = self.log
        return log.slice(max(index, log.first_index), log.last_index)

    def foreign_identity(self, name: str) -> str | None:
        """The identity of the other cluster ``name`` belongs to, if it refused to follow
        this leader for that reason (or this server refused it); else ``None``."""
        return self.foreign.get(name)


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
