"""The state every room of the node shares (:class:`NodeState`), and what every room may
ask of it: the configuration in force and its quorum rule, whether this server votes and
may campaign, the election timer, and sending.

Owns: the node's state as it starts or restarts (term, vote, log, configurations, commit
and apply indexes), and the declarations of the transitions the rooms call across
(each implemented in its room: the node's :mod:`~trioraft._core.node`, :mod:`.reads`,
:mod:`.replication`...). A room reads this state; it changes only the part its
docstring names.
"""

from __future__ import annotations

import random
from typing import Any

from .confchange import (
    CatchUp,
    ConfigHistory,
    MembershipChange,
)
from .log import RaftLog
from .messages import (
    Config,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
)
from .options import CoreOptions
from .progress import Progress
from .quorum import Quorum
from .ready import PersistedState, Snapshot, SoftState
from .types import INF, IncomingSnapshot, ReadRequest, Role, mypyc_attr

__all__ = ["NodeState"]


@mypyc_attr(allow_interpreted_subclasses=True)
class NodeState:
    """The node's state, shared by its rooms (see the module's documentation)."""

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
        self._init_transfers()
        # Leader state.
        self.progress: dict[str, Progress] = {}
        self._retiring: dict[str, int] = {}  # removed peers still told of their removal
        self._round = 0  # round stamp, carried by every message to followers
        self._leader_tick_at = INF
        self._replication_due = False
        #: Learners being caught up before promotion (§4.2.1), by name.
        self.catch_ups: dict[str, CatchUp] = {}
        #: The ``set_members`` change under way on this leader, if any (§4.3).
        self.membership_change: MembershipChange | None = None
        self._stepping_down = False  # removed from the configuration: handing over
        #: Bumped whenever a catch-up, a transfer or a learner's first answer changes
        #: state (the runtime wakes its waiters on it).
        self.change_count = 0
        self._soft_key_handed: tuple[Any, ...] = ()
        self._soft_handed: SoftState | None = None
        self._reset_election_timer(now)

    def _init_transfers(self) -> None:
        """The state of transfers: of snapshots (§5.3) and of leadership (§3.10), none."""
        #: On a follower: the snapshot it is receiving.
        self._incoming: IncomingSnapshot | None = None
        #: Snapshot transfers this node started as leader (each chunk names its transfer).
        self._transfers = 0
        self.transfer_target: str | None = None
        self._transfer_deadline = INF
        self._timeout_now_sent = False
        #: This leader told another server to take over (TimeoutNow): it serves no lease
        #: read for the rest of its term, even if the transfer is abandoned (§3.10, §6.4.1).
        self._handed_over = False

    def _init_reads(self) -> None:
        """The state of linearizable reads (§6.4, §6.4.1), empty."""
        self._read_states: list[tuple[int, int]] = []  # confirmed: (ticket, read index)
        self._failed_reads: list[int] = []
        #: Reads waiting for a quorum round: (round stamp, ticket, a follower's request
        #: or None for a read of this server's own).
        self._pending_reads: list[tuple[int, int, ReadIndexRequest | None]] = []
        self._next_ticket = 0
        #: On a follower (§6.4): reads waiting to be asked of the leader, in one request.
        self._read_batch: list[int] = []
        #: On a follower: its requests for a read index in flight, by ticket, oldest first
        #: (at most :data:`MAX_READ_REQUESTS`).
        self._read_requests: dict[int, ReadRequest] = {}
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
        # Every configuration in the log after the base one: the last one is in force
        # as soon as it is appended (§4.1).
        self.configs = ConfigHistory(*base)
        for entry in state.entries:
            if entry.kind is EntryKind.CONFIG and entry.index > base[0]:
                self.configs.append(entry.index, entry.data)
        self._quorum_of: tuple[Config | None, Quorum] = (None, Quorum(()))
        #: Highest index applied by the runtime (the snapshot's, on a restart).
        self.applied = base[0]
        self._applied_handed = base[0]
        #: Highest index known committed (persisted, so a restart can apply at once).
        self.commit_index = max(hs.commit, base[0])
        # What the storage holds: the hard state last handed out, the first entry not
        # yet handed out, the last entry known durable.
        #: Lives of this server that asked a leader for a read index (§6.4): see
        #: :meth:`_count_life`.
        self.incarnation = hs.incarnation
        self._incarnation_tag = -1
        self._hs_key = (
            hs.term, hs.voted_for, hs.commit, hs.cluster_id, hs.base_config, hs.incarnation
        )  # fmt: skip
        self._unstable_from = self.log.last_index + 1
        self._stable_index = self.log.last_index
        self._pending_snapshot: Snapshot | None = None
        self._restore = False
        self._pending_compact: tuple[int, int] | None = None
        self._truncate_from: int | None = None

    @property
    def config(self) -> Config:
        """The configuration in force: the latest one in the log, committed or not (§4.1)."""
        return self.configs.current

    @property
    def config_index(self) -> int:
        """Log index of the configuration in force."""
        return self.configs.index

    @property
    def quorum(self) -> int:
        """How many of the (new) voters make a quorum, with the ``min_majority`` floor
        (while joint, as many of the outgoing ones too: :meth:`_quorum`)."""
        return self.config.quorum(self.options.min_majority)

    def _quorum(self) -> Quorum:
        """The quorum rule of the configuration in force (of both its voter sets while
        joint, §4.3)."""
        config, quorum = self._quorum_of
        if config is not self.configs.current:
            config = self.configs.current
            quorum = Quorum(config.voters, config.outgoing, self.options.min_majority)
            self._quorum_of = (config, quorum)
        return quorum

    @property
    def committed_config(self) -> Config:
        """The latest configuration whose entry this server knows to be committed."""
        return self._config_at(self.commit_index)

    def _config_at(self, index: int) -> Config:
        return self.configs.at(index)

    @property
    def is_voter(self) -> bool:
        """Whether this server votes in its current configuration (in either voter set
        while it is joint)."""
        return self.name in self.config.all_voters

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
        return name in self.config.all_voters or (
            self.config_index > self.commit_index and name in self.committed_config.all_voters
        )

    @property
    def snapshot_index(self) -> int:
        """Index of the latest snapshot (0 if none)."""
        return self.snapshot.index if self.snapshot is not None else 0

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

    def _append(self, kind: EntryKind, data: Any) -> Entry:
        entry = Entry(self.term, self.log.last_index + 1, kind, data)
        self.log.append(entry)
        self._replication_due = True
        return entry

    def _send(self, m: Message) -> None:
        self._outbox.append(m)

    # The transitions and checks the rooms call across, each implemented in its room.
    def _abort_transfer(self) -> None:
        raise NotImplementedError

    def _advance_change(self) -> None:
        raise NotImplementedError

    def _after_match(self, peer: str, now: float) -> None:
        raise NotImplementedError

    def _answer_request(self, request: ReadIndexRequest, index: int | None = None) -> None:
        raise NotImplementedError

    def _append_config(self, config: Config) -> Entry:
        raise NotImplementedError

    def _become_follower(self, term: int, leader: str | None, now: float) -> None:
        raise NotImplementedError

    def _become_leader(self, now: float) -> None:
        raise NotImplementedError

    def _begin_transfer(self, target: str, now: float) -> None:
        raise NotImplementedError

    def _best_transfer_target(self) -> str | None:
        raise NotImplementedError

    def _campaign(self, now: float, *, pre: bool, force: bool) -> None:
        raise NotImplementedError

    def _catch_up_progress(self, catch_up: CatchUp, match: int, now: float) -> None:
        raise NotImplementedError

    def _check_reads(self) -> None:
        raise NotImplementedError

    def _check_retired(self, peer: str) -> None:
        # A removed server is told until it knows that the configuration without it is
        # committed (then it stops campaigning for good, §4.2.2).
        raise NotImplementedError

    def _commit_to(self, index: int, now: float) -> None:
        raise NotImplementedError

    def _fail_remote_reads(self) -> None:
        raise NotImplementedError

    def _fix_identity(self) -> None:
        # The cluster's identity is the data of its first entry (a no-op of the first
        # leader); it is fixed once that entry is known committed.
        raise NotImplementedError

    def _follow(self, leader: str, now: float) -> None:
        raise NotImplementedError

    def _heard_from(self, name: str, stamp: int, commit: int) -> Progress | None:
        raise NotImplementedError

    def _leave_leadership(self) -> None:
        raise NotImplementedError

    def _maybe_commit(self, now: float) -> None:
        # Figure 2 (leaders): commit N if a quorum has matchIndex >= N and log[N] is of
        # the current term. §5.4.2: never count replicas of an older term's entry. The
        # leader counts itself only for entries it has made durable.
        # While joint, a quorum of each voter set holds it (§4.3).
        raise NotImplementedError

    def _on_foreign(self, m: Message) -> None:
        # Cluster identity: a server never takes part in another cluster's log.
        raise NotImplementedError

    def _read_answer(
        self, request: ReadIndexRequest, index: int = 0, ok: bool = False
    ) -> ReadIndexResponse:
        raise NotImplementedError

    def _replicate_all(self) -> None:
        raise NotImplementedError

    def _retry_read_requests(self, now: float) -> None:
        raise NotImplementedError

    def _send_read_request(self, now: float) -> None:
        raise NotImplementedError

    def _snapshot_chunk(self, peer: str, pr: Progress) -> InstallSnapshot | None:
        raise NotImplementedError

    def _snapshot_due(self, committed: tuple[Entry, ...]) -> bool:
        # §5: snapshot once snapshot_threshold entries were applied since the last one
        # (and since the last attempt that failed).
        raise NotImplementedError

    def _snapshot_stalled(self, pr: Progress, now: float) -> None:
        raise NotImplementedError

    def _start_transfer(self, pr: Progress, now: float) -> None:
        raise NotImplementedError

    def _sync_progress(self) -> None:
        raise NotImplementedError

    def _tally(self, now: float) -> bool:
        raise NotImplementedError

    def _tick_retiring(self) -> None:
        raise NotImplementedError
