"""The Trio runtime: a server's tasks, and the :class:`Server` handle users call.

The runtime makes no Raft decisions. It feeds the core (:class:`~trioraft._core.RaftNode`)
events with the current time, and carries out what the core hands it in a
:class:`~trioraft._core.ready.Ready`, in order: persist (and wait until durable), send,
apply, answer; then it tells the core it is done. Its tasks:

* the receive loop: messages from the transport into the core;
* the timer: one cancel scope whose deadline follows the core's;
* the ready loop: the Ready/Advance cycle above (one storage sync per cycle, so whatever
  arrived while the disk was busy is written together: group commit);
* while leading, a leader-only nursery with one replication task per peer, which sends
  what the core has decided to send that peer, and is cancelled the moment leadership
  is lost.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import math
import random
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._clock import TRIO_CLOCK
from ._core.messages import Config, Entry, EntryKind, InstallSnapshot, Message
from ._core.node import (
    CatchUpState,
    ChangePhase,
    LeaderNotReady,
    MembershipChange,
    RaftNode,
    Role,
    TransferInProgress,
)
from ._core.ready import PersistedState, Ready, SoftState
from ._errors import (
    CatchUpFailed,
    MalformedMessage,
    NotLeader,
    OutcomeUnknown,
    ServerFailed,
    ServerStopped,
    StoppedOutcomeUnknown,
    TransferFailed,
    WrongCluster,
)
from ._glue import (
    CallbackWaiter,
    DueCallbacks,
    Hooks,
    Signal,
    Waiter,
    WriteCallback,
    check_machine,
    decode_snapshot,
    encode_snapshot,
    machine_snapshots,
)
from ._histogram import (
    APPLY_LAG_BUCKETS,
    WRITE_LATENCY_BUCKETS,
    Histogram,
    HistogramCounts,
)
from ._network.base import Endpoint, Transport
from ._options import ServerOptions
from ._protocol import ClientRequest
from ._sessions import ClusterClock, Sessions
from ._storage import DiskStorage, MemoryStorage, Storage, stage
from ._storage.base import passing
from ._views import read_only

__all__ = [
    "Server",
    "ServerStatistics",
    "Status",
    "TraceEvent",
    "check_machine",
    "open_server",
    "serve",
    "start_server",
]

logger = logging.getLogger("trioraft")

#: A write that brings the entries not yet handed out to this many carries out the Ready
#: itself (on an immediate storage, with nothing else under way): writes proposed in one
#: scheduler pass go to replication in pieces of this many, so replies, commits and the
#: writers' wake-ups flow as a pipeline of pieces instead of one round of the whole pass.
#: With thousands of writes in flight a round is long, and the leader says nothing to
#: its followers meanwhile (at 4,096, in one process on the machine of the performance
#: page: the longest silence fell from 100-191 ms, against a minimum election timeout of
#: 150 ms, to 54-123 ms, with no fewer writes/s).
FLUSH_EVERY = 512

_MISSING: Any = object()


class _Replicator:
    """A leader's replication task for one peer: its cancel scope, its queue, and how
    many messages wait in that queue.

    A message to a peer with nothing waiting leaves at once from the task that made it
    (the ready loop, a writer flushing, a receive task): the transports' ``send`` never
    blocks, so this keeps the core's order and holds up no other peer, and it sends
    before the rest of that task's work. A hop through this task would wait for the
    next pass of Trio's scheduler, after every task woken meanwhile: with thousands of
    writers woken by one commit, a leader then said nothing to its followers for up to
    160 ms, more than the shortest election timeout (and one write at a time took
    longer; docs/performance.rst has the figures).

    A snapshot chunk (InstallSnapshot, dissertation §5) is queued instead, and so is
    every message to that peer after it while any waits: the task that made it goes on,
    and the chunk is encoded and sent from this peer's task, so a snapshot on its way to
    one follower never delays what the others are sent."""

    __slots__ = ("queue", "scope", "waiting")

    def __init__(self, queue: trio.MemorySendChannel[Message]) -> None:
        self.queue = queue
        self.scope = trio.CancelScope()
        #: Messages queued and not sent yet.
        self.waiting = 0


def _all_checks(*checks: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """One check that runs each of ``checks`` (``None``s left out) once."""
    distinct = list(dict.fromkeys(c for c in checks if c is not None))
    if len(distinct) <= 1:
        return distinct[0] if distinct else None

    def check_all(value: Any) -> None:
        for check in distinct:
            check(value)

    return check_all


#: The roles of a server that started an election in its term.
_CAMPAIGNING = (Role.CANDIDATE, Role.LEADER)

#: Election timeouts after which a server outside every configuration says it waits.
_WAIT_TO_BE_ADDED_TIMEOUTS = 3


@attrs.frozen
class Status:
    """A snapshot of one server's state, from :meth:`Server.status`."""

    name: str
    role: Role
    term: int
    leader: str | None
    commit_index: int
    last_applied: int
    last_log_index: int
    voters: frozenset[str]
    learners: frozenset[str]
    #: On a leader, each follower's match index (highest entry known replicated on it).
    match_index: Mapping[str, int] = attrs.field(factory=dict, eq=False, hash=False)
    #: On a leader handing over leadership, the server it hands over to.
    transfer_target: str | None = None
    #: This server is in no configuration it knows (neither voter nor learner): it was
    #: started without one, or removed, and does nothing until a leader adds it.
    waiting_to_be_added: bool = False
    #: The identity of the cluster this server belongs to ("" until it knows one).
    cluster_id: str = ""
    #: Index of the latest snapshot (0 before any).
    snapshot_index: int = 0
    #: While the configuration is joint (a change of several voters, §4.3): the voters
    #: being left (C_old's); ``voters`` are then C_new's. ``None`` otherwise.
    joint_voters: frozenset[str] | None = None


@attrs.frozen
class ServerStatistics:
    """Counters of one server, from :meth:`Server.statistics` (like
    ``trio.Lock.statistics()``)."""

    role: Role
    term: int
    commit_index: int
    last_applied: int
    #: Committed entries not yet applied.
    apply_lag: int
    #: Writes (and membership changes) waiting for their entry to be applied.
    writes_in_flight: int
    #: Linearizable reads waiting to be confirmed.
    reads_in_flight: int
    messages_sent: int
    messages_received: int
    #: Snapshots this server took, and installed from a leader.
    snapshots_taken: int
    snapshots_installed: int
    snapshot_index: int
    #: Entries held in the log (after the compaction point).
    log_length: int
    #: Elections this server started (the terms in which it campaigned).
    elections: int = 0
    #: Seconds from proposal to application of the writes this server committed as
    #: leader (its count: those writes).
    write_latency: HistogramCounts = attrs.field(factory=HistogramCounts)
    #: Committed entries not yet applied, seen each time this server applied a batch.
    apply_lag_entries: HistogramCounts = attrs.field(factory=HistogramCounts)


@attrs.frozen
class TraceEvent:
    """Something that happened on a server, for tracers (``tracer=`` option).

    ``kind`` is ``"role"`` (data: role, term, leader), ``"commit"`` (data: index),
    ``"propose"`` (data: index, term: a leader appended a client's write), ``"apply"``
    (data: index, term, kind) or ``"snapshot"`` (data: index, installed: taken here or
    installed from the leader). ``time`` is ``trio.current_time()``.
    """

    time: float
    server: str
    kind: str
    data: Mapping[str, Any] = attrs.field(eq=False, hash=False)


class Server:
    """The handle of a running trioraft server (returned by :func:`start_server`).

    Every method is called from Trio tasks of the same ``trio.run``. Leader-only calls
    raise :class:`~trioraft.NotLeader` elsewhere; every call on a stopped server raises
    :class:`~trioraft.ServerStopped`.
    """

    def __init__(
        self,
        name: str,
        machine: Any,
        endpoint: Endpoint,
        *,
        storage: Storage,
        options: ServerOptions,
        state: PersistedState,
    ) -> None:
        self._name = name
        #: The clock this server reads (the core's time, its timers and waits): Trio's
        #: unless the testing toolkit gave it one of its own.
        self._local_clock = options.clock if options.clock is not None else TRIO_CLOCK
        self._machine = machine
        self._snapshots = machine_snapshots(machine)
        self._endpoint = endpoint
        self._storage = storage
        self._options = options
        self._sessions = Sessions(options.session_timeout)
        self._clock = ClusterClock()
        self._last_stamp = 0.0  # the latest time this server stamped, as leader
        self._last_stamp_applied = 0.0
        if state.snapshot is not None:
            self._restore(state.snapshot.data)
        self._node = RaftNode(
            name,
            options.core(),
            random.Random(options.seed),
            self._local_clock.now(),
            state,
            compaction=self._snapshots,
        )
        self._last_applied = self._node.applied
        self._durable_snapshot = self._node.snapshot_index
        self._hooks = Hooks(machine)
        self._tracer: Callable[[TraceEvent], None] | None = options.tracer
        self._tracer_error: Exception | None = None
        #: What escaped a batch delivered by call (a tracer's report), to raise in a task.
        self._delivery_error: BaseException | None = None
        self._delivery_failed = trio.Event()
        self._traced_commit = self._node.commit_index
        #: What a query must pass (the network's rule: it may cross a process boundary).
        self._check_query: Callable[[Any], None] | None = getattr(endpoint, "check_value", None)
        #: What a command must pass: the network's rule and the storage's (DiskStorage
        #: keeps msgpack values), each checked once even where both are the same.
        self._check_value = _all_checks(self._check_query, getattr(storage, "check_value", None))
        self._learn: Callable[[Mapping[str, str]], None] | None = getattr(
            endpoint, "learn_addresses", None
        )
        #: The storage makes writes durable without waiting (MemoryStorage, no latency).
        self._immediate = isinstance(storage, MemoryStorage) and storage.immediate
        self._init_tasks()

    def _init_tasks(self) -> None:
        """The state of the server's tasks, callers and counters."""
        self._writes: dict[int, Waiter] = {}
        #: Outcomes of submit()'s writes, with their callbacks, to call after the Ready.
        self._callbacks_due: DueCallbacks = []
        self._reads: dict[int, Waiter] = {}
        self._changed = trio.Event()
        self._kicked = Signal()
        self._timer_scope = trio.CancelScope()
        #: The core's deadline the timer sleeps until, on this server's clock.
        self._timer_at = math.inf
        self._scope = trio.CancelScope()
        self._finished = trio.Event()
        self._stopped = False
        #: Set when the server stopped itself because an internal invariant broke.
        self._failure: ServerFailed | None = None
        self._led_term: int | None = None
        self._leader_scope: trio.CancelScope | None = None
        self._leader_nursery: trio.Nursery | None = None
        self._replicators: dict[str, _Replicator] = {}
        self._nursery: trio.Nursery | None = None
        self._soft: SoftState | None = None
        self._role = self._node.role
        #: Bodies of ``leadership()``: (term, their cancel scope).
        self._leaderships: list[tuple[int, trio.CancelScope]] = []
        #: The queues of the running role_changes() loops.
        self._role_watchers: list[collections.deque[Status]] = []
        #: Set when a change of role, term or leader is queued for the watchers, and at
        #: the end (their own signal: the one for every Ready would wake them per batch).
        self._role_event = trio.Event()
        #: The ready loop is carrying out a Ready.
        self._busy = False
        self._sent = 0
        self._received = 0
        self._snapshots_taken = 0
        self._snapshots_installed = 0
        #: For statistics() and trioraft.metrics: a few additions per write, no more.
        self._elections = 0
        self._election_term = 0
        self._write_latency = Histogram(WRITE_LATENCY_BUCKETS)
        self._latencies: list[float] = []  # of the batch being applied
        self._apply_lag = Histogram(APPLY_LAG_BUCKETS)
        self._applied_at = 0.0  # when the entries being applied were applied

    def __repr__(self) -> str:
        node = self._node
        state = "stopped" if self._stopped else node.role.value
        return f"<trioraft.Server {self._name!r} {state} term={node.term} leader={node.leader!r}>"

    # ---------------------------------------------------------------- public
    name: str = read_only("_name", "This server's name.")
    storage: Any = read_only(
        "_storage",
        "This server's storage (a :class:`~trioraft.MemoryStorage` unless another was given; "
        "reuse it to restart the server).",
    )
    machine: Any = read_only("_machine", "This server's state machine instance.")
    stopped: bool = read_only("_stopped", "Whether the server has stopped.")
    failure: ServerFailed | None = read_only(
        "_failure", "If the server stopped itself because an internal invariant broke: why."
    )

    def leader(self) -> str | None:
        """The leader's name as this server knows it, or ``None``."""
        return self._node.leader

    def status(self) -> Status:
        """A frozen :class:`Status` of this server."""
        node = self._node
        cfg = node.config
        leading = node.role is Role.LEADER
        return Status(
            name=self._name,
            role=node.role,
            term=node.term,
            leader=node.leader,
            commit_index=node.commit_index,
            last_applied=self._last_applied,
            last_log_index=node.log.last_index,
            voters=frozenset(cfg.voters),
            learners=frozenset(cfg.learners),
            match_index=(
                {p: pr.match for p, pr in node.progress.items() if p in cfg.members}
                if leading
                else {}
            ),
            transfer_target=node.transfer_target,
            waiting_to_be_added=self._name not in cfg.members,
            cluster_id=node.cluster_id,
            snapshot_index=node.snapshot_index,
            joint_voters=None if cfg.outgoing is None else frozenset(cfg.outgoing),
        )

    def _check_command(self, command: Any) -> None:
        """What a command must pass before it is appended (for :meth:`write` and
        :meth:`submit`): the machine's ``validate``, and the network's and the storage's
        value checks."""
        self._hooks.validate(command)
        if self._check_value is not None:
            self._check_value(command)

    async def write(self, command: Any) -> Any:
        """Replicate ``command``, apply it everywhere, and return the state machine's reply.

        Leader only (:class:`~trioraft.NotLeader` elsewhere). If the server loses its
        leadership or stops before the entry commits, raises
        :class:`~trioraft.OutcomeUnknown`: the command may or may not be applied. An
        exception raised by the state machine's ``write`` is raised here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        node = self._node
        if node.role is not Role.LEADER:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise NotLeader(node.leader)
        self._check_command(command)
        while True:
            try:
                started = trio.current_time()  # the write's latency is real time
                entry = node.propose(command, self._local_clock.now())
                break
            except TransferInProgress:
                await self._wait_changed()  # §3.10: writes wait out a leadership transfer
                if node.role is not Role.LEADER:
                    # Handed over: redirect to whoever took over, once known.
                    with trio.move_on_at(self._after(self._options.max_election_timeout)):
                        while node.leader is None:
                            await self._wait_changed()
                    raise NotLeader(node.leader) from None
            except NotLeader:
                await trio.lowlevel.cancel_shielded_checkpoint()
                raise
        if self._tracer is not None:
            self._trace("propose", index=entry.index, term=entry.term)
        # _await_entry, inlined: the hottest wait of all, one coroutine frame fewer.
        # A proposal moves no deadline: wake the ready loop, which follows the timer.
        waiter = Waiter(entry.term, started)
        writes = self._writes
        writes[entry.index] = waiter
        self._kicked.set()
        if node.unsent_entries >= FLUSH_EVERY and self._immediate and not self._busy:
            self._ready_now()  # replicate these now: do not wait for the other writers
        try:
            return await waiter.wait()
        finally:
            if writes.get(entry.index) is waiter:
                del writes[entry.index]

    def submit(self, command: Any, callback: WriteCallback) -> int:
        """Start a write of ``command`` without waiting for it; ``callback(result)`` is
        called with its outcome (an :class:`outcome.Outcome`: ``result.unwrap()`` returns
        the state machine's reply, or raises what :meth:`write` would have raised). Returns
        the write's log index.

        For many writes in flight with no task each (a bulk load; a pipeline that keeps
        thousands of writes going, each completion submitting the next): a task per
        :meth:`write` costs a task switch and a few frames per write, a callback none.

        The callback is called exactly once: after the Ready in which the write was
        applied, or in which it failed (:class:`~trioraft.OutcomeUnknown` when leadership
        is lost before it commits, :class:`~trioraft.NotLeader` if a newer leader replaced
        the entry, the state machine's exception, or
        :class:`~trioraft.StoppedOutcomeUnknown` when the server stops). It runs in one of
        the server's tasks, between two Readys: a plain function that must not block. It
        may call :meth:`submit` again. An exception it raises is logged and dropped.

        Raises at once, as :meth:`write` would: :class:`~trioraft.NotLeader` (also while
        this leader hands its leadership over, when :meth:`write` would wait),
        :class:`~trioraft.ServerStopped`, and the errors of a command that cannot be
        replicated (``TypeError`` on TCP, the machine's ``validate``). Being a plain
        function, it is not a Trio checkpoint.
        """
        self._check_running()
        if not callable(callback):  # else the outcome would be lost, and only logged
            raise TypeError(f"callback must be callable, got {callback!r}")
        node = self._node
        if node.role is not Role.LEADER:
            raise NotLeader(node.leader)
        self._check_command(command)
        started = trio.current_time()
        try:
            entry = node.propose(command, self._local_clock.now())
        except TransferInProgress:
            raise NotLeader(None, "leadership is being handed over; retry") from None
        if self._tracer is not None:
            self._trace("propose", index=entry.index, term=entry.term)
        self._writes[entry.index] = CallbackWaiter(
            entry.term, callback, self._callbacks_due, started
        )
        self._kicked.set()  # as for write(): a proposal moves no deadline
        return entry.index

    def _run_callbacks(self) -> None:
        """Give submitted writes their outcomes (a callback may submit again: those
        outcomes come after a later Ready)."""
        due = self._callbacks_due
        while due:
            batch = due[:]
            del due[:]
            for callback, result in batch:
                try:
                    callback(result)
                except Exception:
                    logger.exception("%s: a write's callback raised", self._name)

    async def read(self, query: Any) -> Any:
        """A linearizable read (§6.4 ReadIndex): the leader confirms it still leads with a
        round of heartbeats (or, with ``lease_reads``, not while its lease holds, §6.4.1),
        waits until it has applied everything committed when the read began, then answers
        ``machine.read(query)``. Leader only, unless ``follower_reads``: a follower then
        asks the leader for the read index, waits until it has applied that far, and
        answers locally."""
        if self._check_query is not None:
            self._check_query(query)  # TypeError naming the type, at the call
        node = self._node
        if node.options.lease_reads:
            await trio.lowlevel.checkpoint()
            # §6.4.1 fast path: under the lease the read index is the commit index, and
            # once that is applied the answer needs no round, no Ready, no task switch.
            if not self._stopped:
                index = node.lease_read_index(self._local_clock.now())
                if index is not None and self._last_applied >= index:
                    return self._machine.read(query)
            self._check_running()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_running()
        try:
            ticket = node.request_read(self._local_clock.now())
        except NotLeader:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise
        waiter = Waiter()
        self._reads[ticket] = waiter
        self._kicked.set()  # a read moves no deadline: the ready loop follows the timer
        try:
            read_index = await waiter.wait()
        finally:
            self._reads.pop(ticket, None)
        while self._last_applied < read_index:
            await self._wait_changed()
        return self._machine.read(query)

    async def read_dirty(self, query: Any) -> Any:
        """Answer ``machine.read(query)`` from this server's state at once (may be stale)."""
        if self._check_query is not None:
            self._check_query(query)
        await trio.lowlevel.checkpoint()
        self._check_running()
        return self._machine.read(query)

    async def await_leader(self) -> str:
        """Wait until this server knows of a leader (or is one); return its name."""
        await trio.lowlevel.checkpoint()
        while True:
            self._check_running()
            leader = self._node.leader
            if leader is not None:
                return leader
            await self._wait_changed()

    async def add_server(
        self, name: str, *, voter: bool = True, address: str | None = None
    ) -> None:
        """Add ``name`` to the cluster; returns once the change is committed. Leader only.

        With ``voter=True`` (the default) the server joins as a learner first, the
        leader replicates its log to it, and only once it has caught up (a replication
        round that completes within an election timeout, dissertation §4.2.1) is it
        promoted to voter, so a new empty server never holds up commits or elections.
        On an existing learner, this promotes it. If it does not catch up,
        :class:`~trioraft.CatchUpFailed` is raised and it stays a learner.
        With ``voter=False`` it joins as a non-voting learner and stays one; the call
        then waits (at most an election timeout) for the learner's first answer.

        A server that belongs to another cluster (its storage holds another cluster's
        identity) refuses to follow: :class:`~trioraft.WrongCluster` is raised, and it
        stays a learner until removed.

        Changes happen one at a time: a change requested while another is uncommitted
        raises :class:`~trioraft.ConfigChangeInProgress`. A change requested before the
        leader has committed an entry of its term waits for that first.

        ``address`` (``"host:port"``) is where the new member listens, on a TCP network:
        it travels in the configuration entry, so every member (including one restarted
        later) can reach it.
        """
        await trio.lowlevel.checkpoint()
        self._check_running()
        if not isinstance(voter, bool):  # voter="no" would add a voter
            raise TypeError(f"voter must be True or False, got {voter!r}")
        node = self._node
        if address is not None:
            self._learn_addresses({name: address})
        if not voter:
            await self._change_config(lambda: node.add_server_config(name, False, address))
            await self._first_answer(name)
            return
        if name not in node.config.learners:
            node.add_server_config(name, True, address)  # validates before any change
            await self._change_config(lambda: node.add_server_config(name, False, address))
        self._check_foreign(name)
        await self._catch_up(name)
        await self._change_config(lambda: node.add_server_config(name, True))

    async def _catch_up(self, name: str) -> None:
        """§4.2.1: replicate to the learner ``name`` until it has caught up, or raise."""
        catch_up = self._node.start_catch_up(name, self._local_clock.now())
        self._kick()
        try:
            while catch_up.state is CatchUpState.PENDING:
                await self._wait_changed()
        except ServerStopped as exc:
            if type(exc) is not ServerStopped:  # ServerFailed says more: keep it
                raise
            # The learner entry is in the log: this change is under way, not refused.
            raise StoppedOutcomeUnknown(
                f"server {self._name!r} stopped while {name!r} was catching up: it may be "
                "a learner now, and was not promoted to voter"
            ) from None
        self._check_foreign(name)
        if catch_up.state is CatchUpState.FAILED:
            raise CatchUpFailed(
                f"{name!r} did not catch up with the leader's log ({catch_up.reason}); "
                "it remains a learner"
            )

    async def _first_answer(self, name: str) -> None:
        # A learner that belongs to another cluster refuses at its first message: wait
        # for its first answer (a healthy one answers within a round trip).
        node = self._node
        with trio.move_on_at(self._after(self._options.max_election_timeout)):
            while node.role is Role.LEADER and name not in node.foreign:
                pr = node.progress.get(name)
                if pr is None or pr.match > 0:
                    break
                await self._wait_changed()
        self._check_foreign(name)

    def _check_foreign(self, name: str) -> None:
        foreign = self._node.foreign.get(name)
        if foreign is not None:
            raise WrongCluster(
                f"{name!r} belongs to another cluster (identity {foreign}; this cluster is "
                f"{self._node.cluster_id}) and refuses to follow this leader. It remains a "
                f"learner: remove it with remove_server({name!r}) and add a server with "
                "empty storage instead"
            )

    async def set_members(
        self,
        voters: Collection[str],
        *,
        learners: Collection[str] = (),
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Make the configuration exactly ``voters`` and ``learners``, in one call;
        returns once the final configuration is committed. Leader only.

        New servers are caught up as learners first (dissertation §4.2.1). A change other
        than adding or removing exactly one voter (a swap of one voter for another counts
        as two) goes through joint consensus (§4.3): the configuration C_old,new, in
        which elections and commits need a majority of the old voters *and* of the new,
        then C_new, appended automatically once C_old,new commits. Replacing every server
        of a cluster in one call works; a leader not among the new voters hands over and
        steps down once C_new commits.

        Raises ``ValueError`` for an empty ``voters``, a server in both sets, or fewer
        voters than ``min_majority``; :class:`~trioraft.ChangeInProgress` while another
        change is under way (from this call until C_new commits, catch-up included, a
        later ``set_members``, ``add_server`` or ``remove_server`` raises it);
        :class:`~trioraft.CatchUpFailed` if a new server does not catch up (it stays a
        learner); :class:`~trioraft.OutcomeUnknown` if leadership was lost after the
        change began (the next leader may complete it). On TCP, ``addresses`` maps new
        servers' names to their ``"host:port"``.
        """
        await trio.lowlevel.checkpoint()
        self._check_running()
        if addresses is not None:
            if not isinstance(addresses, Mapping):
                raise TypeError(f"addresses must be a mapping, got {type(addresses).__name__}")
            self._learn_addresses(dict(addresses))
        node = self._node
        while True:
            try:
                change = node.set_members(voters, learners, addresses, trio.current_time())
                break
            except (LeaderNotReady, TransferInProgress):
                await self._wait_changed()  # wait for this term's no-op to commit
        self._kick()
        await self._await_change(change)

    async def _await_change(self, change: MembershipChange) -> None:
        """Wait for a ``set_members`` change to complete; raise what it failed of."""
        try:
            while change.active:
                await self._wait_changed()
        except ServerStopped as exc:
            if type(exc) is not ServerStopped or not change.entries:
                raise
            raise StoppedOutcomeUnknown(
                f"server {self._name!r} stopped during the change to {change.target}: the "
                "next leader may complete it"
            ) from None
        if change.phase is ChangePhase.FAILED:
            for name in change.newcomers:
                self._check_foreign(name)
            if change.unknown:
                raise OutcomeUnknown(
                    f"leadership was lost during the change to {change.target}: the next "
                    "leader may complete it, or not"
                )
            if change.left_behind is not None:
                raise CatchUpFailed(
                    f"{change.reason}; the change was not made ({change.left_behind!r} "
                    "remains a learner)"
                )
            raise NotLeader(self._node.leader)

    async def remove_server(self, name: str) -> None:
        """Remove ``name`` from the cluster; returns once the change is committed.
        A leader that removes itself hands over leadership and steps down afterwards."""
        await self._change_config(lambda: self._node.remove_server_config(name))

    async def trigger_election(self) -> None:
        """Start an election on this server now (it must be a voter). When this returns
        the server is a candidate of a new term (or already the leader of one). With
        ``lease_reads``, a leader's lease is respected: neither this server's own vote
        nor others' help elect it until a minimum election timeout after each last
        heard from a leader (§6.4.1; see the ``lease_reads`` option)."""
        await trio.lowlevel.checkpoint()
        self._check_running()
        self._node.trigger_election(self._local_clock.now())
        self._kick()

    async def transfer_leadership(self, name: str | None = None) -> str:
        """Hand leadership to ``name`` (default: the most up-to-date voter), §3.10.

        The leader stops taking writes (they wait), brings the target's log up to date
        and tells it to start an election at once. Returns the new leader's name once it
        leads; raises :class:`~trioraft.TransferFailed` if that does not happen in time
        (the old leader then resumes if it still can). Leader only.
        """
        await trio.lowlevel.checkpoint()
        self._check_running()
        node = self._node
        start = self._local_clock.now()
        target = node.transfer_leadership(name, start)
        self._kick()
        if target == self._name:
            return target
        with trio.move_on_at(
            self._local_clock.deadline(start + 2 * self._options.max_election_timeout)
        ):
            while True:
                if node.leader == target and node.role is not Role.LEADER:
                    return target
                if node.role is Role.LEADER and node.transfer_target is None:
                    raise TransferFailed(
                        f"{target!r} did not catch up within an election timeout; "
                        f"{self._name!r} remains the leader"
                    )
                if node.leader not in (None, target, self._name):
                    raise TransferFailed(f"{node.leader!r} was elected instead of {target!r}")
                await self._wait_changed()
        raise TransferFailed(f"{target!r} did not become leader in time")

    async def take_snapshot(self) -> int:
        """Snapshot the state machine now (dissertation §5), compact the log behind it,
        and return the snapshot's index once it is durable. The state machine must
        implement ``snapshot()`` and ``restore()`` (else :class:`TypeError`)."""
        await trio.lowlevel.checkpoint()
        self._check_running()
        if not self._snapshots:
            raise TypeError(
                f"{type(self._machine).__name__} does not implement snapshot() and restore()"
            )
        index = self._snapshot_now()
        self._kick()
        while self._durable_snapshot < index:
            await self._wait_changed()
        return index

    def statistics(self) -> ServerStatistics:
        """A frozen :class:`ServerStatistics` of this server (Trio's ``statistics()``)."""
        node = self._node
        return ServerStatistics(
            role=node.role,
            term=node.term,
            commit_index=node.commit_index,
            last_applied=self._last_applied,
            apply_lag=max(0, node.commit_index - self._last_applied),
            writes_in_flight=len(self._writes),
            reads_in_flight=len(self._reads),
            messages_sent=self._sent,
            messages_received=self._received,
            snapshots_taken=self._snapshots_taken,
            snapshots_installed=self._snapshots_installed,
            snapshot_index=node.snapshot_index,
            log_length=node.log.last_index - node.log.snapshot_index,
            elections=self._elections,
            write_latency=self._write_latency.counts(),
            apply_lag_entries=self._apply_lag.counts(),
        )

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[int]:
        """``async with server.leadership() as term:`` waits until this server leads,
        then runs the body inside a cancel scope that is cancelled as soon as it stops
        leading: it steps down, hands over, is removed or stopped, or its lease runs
        out (it has not heard from a quorum for about an election timeout, so another
        leader may soon be elected, §6.4.1). Once it has told a server to take over
        (leadership transfer, TimeoutNow), no body runs for the rest of that term, even
        if the transfer is abandoned. ``term`` is the term it leads.

        The body runs only once this leader has committed an entry of its term and a
        quorum has acknowledged a round of its own; so, with ``check_quorum`` (the
        default), no other server can lead while it runs.
        """
        node = self._node
        while True:
            self._check_running()
            if node.role is Role.LEADER and node.lease_until > self._local_clock.now():
                break
            await self._wait_changed()
        term = node.term
        entry = (term, trio.CancelScope(deadline=self._local_clock.deadline(node.lease_until)))
        self._leaderships.append(entry)
        try:
            with entry[1]:
                yield term
        finally:
            self._leaderships.remove(entry)

    async def terms(self) -> AsyncIterator[int]:
        """``async for term in server.terms():`` yields each term in which this server
        becomes leader (as :meth:`leadership` sees it), for code that restarts per term.
        Ends when the server stops."""
        last = 0
        while not self._stopped:
            node = self._node
            if (
                node.role is Role.LEADER
                and node.term > last
                and node.lease_until > self._local_clock.now()
            ):
                last = node.term
                yield last
                continue
            await self._changed.wait()

    async def role_changes(self) -> AsyncIterator[Status]:
        """``async for status in server.role_changes():`` this server's :meth:`status`
        now, then one for each change of its role, term or known leader, in order, as it
        happened (each is the status at that change). Ends when the server stops.

        For logs and dashboards (``python -m trioraft serve`` prints a line for each):
        unlike a ``tracer``, it costs nothing per write.
        """
        queue: collections.deque[Status] = collections.deque([self.status()])
        self._role_watchers.append(queue)
        last = None
        try:
            while True:
                while queue:
                    status = queue.popleft()
                    if (status.role, status.term, status.leader) != last:
                        last = (status.role, status.term, status.leader)
                        yield status
                if self._stopped:
                    return
                await self._role_event.wait()
        finally:
            self._role_watchers.remove(queue)

    async def aclose(self) -> None:
        """The same as :meth:`stop`, by Trio's name for it."""
        await self.stop()

    async def stop(self) -> None:
        """Stop the server: its tasks end, pending calls raise
        :class:`~trioraft.ServerStopped`, and it leaves the network. Its storage can then
        be given to a new server of the same name (crash-restart)."""
        self._scope.cancel()
        await self._finished.wait()

    # ------------------------------------------------------------- internals
    def _check_running(self) -> None:
        if self._stopped:
            if self._failure is not None:
                raise self._failure
            raise ServerStopped(f"server {self._name!r} is stopped")

    def _fail(self, exc: BaseException) -> None:
        """Stop this server because an internal invariant broke (never tear down the
        user's nursery): pending and later calls raise :class:`ServerFailed`."""
        if self._failure is None:
            failure = ServerFailed(
                f"server {self._name!r} stopped itself: an internal invariant broke: "
                f"{type(exc).__name__}: {exc}"
            )
            failure.__cause__ = exc
            self._failure = failure
            logger.error("%s", failure, exc_info=exc)
        self._scope.cancel()

    async def _wait_changed(self) -> None:
        await self._changed.wait()
        self._check_running()

    def _notify_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _wake_role_watchers(self) -> None:
        self._role_event.set()
        self._role_event = trio.Event()

    def _kick(self) -> None:
        """Something was handed to the core: wake the ready loop, follow the timer."""
        self._kicked.set()
        self._follow_timer()

    def _follow_timer(self) -> None:
        # Only ever earlier: a deadline that moved later (a leader's next heartbeat, after
        # every send) is left to the timer, which wakes at the old one, finds nothing
        # due and sleeps again; Trio's timer is not moved at every Ready.
        deadline = self._node.deadline
        if deadline < self._timer_at:
            self._timer_at = deadline
            self._timer_scope.deadline = self._local_clock.deadline(deadline)

    def _after(self, seconds: float) -> float:
        """The Trio deadline ``seconds`` of this server's clock from now."""
        return self._local_clock.after(seconds)

    def _clock_changed(self) -> None:
        """This server's clock changed its rate or jumped (a simulated cluster's): the
        timer and the ``leadership()`` bodies' deadlines move with it."""
        self._timer_scope.deadline = self._local_clock.deadline(self._timer_at)
        if self._leaderships:
            self._follow_leaderships()

    async def _await_entry(self, entry: Entry, started: float = 0.0) -> Any:
        waiter = Waiter(entry.term, started)
        self._writes[entry.index] = waiter
        self._kick()
        try:
            return await waiter.wait()
        finally:
            if self._writes.get(entry.index) is waiter:
                del self._writes[entry.index]

    async def _change_config(self, make: Callable[[], Config]) -> None:
        await trio.lowlevel.checkpoint()
        self._check_running()
        node = self._node
        while True:
            config = make()
            try:
                entry = node.change_config(config, self._local_clock.now())
                break
            except (LeaderNotReady, TransferInProgress):
                await self._wait_changed()  # wait for this term's no-op to commit
        await self._await_entry(entry)

    # ----------------------------------------------------------- ready loop
    async def _ready_loop(self) -> None:
        node = self._node
        while True:
            if not node.has_ready():
                await self._kicked.wait()
                continue
            self._busy = True
            try:
                self._kicked.clear()  # this Ready holds whatever the kicks were for
                rd = node.ready()
                early = rd.early and rd.must_persist and rd.sync
                if rd.must_persist:
                    self._stage(rd)  # without rd.sync: durable with the next sync
                    if early:  # §10.2.1: send and apply while the write is under way
                        self._send(rd.messages)
                        self._carry_out(rd)
                    if rd.sync:
                        await self._sync()
                    elif self._immediate:  # free: keep the commit index current
                        self._storage.sync_nowait()  # type: ignore[attr-defined]
                if early:
                    self._advance(rd)
                else:
                    self._finish(rd)
            finally:
                self._busy = False
            if node.has_ready():
                await trio.lowlevel.checkpoint()  # let others run between two Readys

    async def _sync(self) -> None:
        """Make what is staged durable. A sync that fails with an OS error that passes by
        itself (file descriptors exhausted: EMFILE, ENFILE) left it staged: try again
        after a pause, growing up to an election timeout, rather than stop the server.
        Nothing waiting on it (acknowledgements, the snapshot) goes on meanwhile."""
        delay = self._options.heartbeat_interval
        while True:
            try:
                await self._storage.sync()
                return
            except OSError as exc:
                if not passing(exc):
                    raise
                logger.warning(
                    "%s: storage %s could not be written (%s); trying again in %.2f s",
                    self._name, self._storage, exc.strerror or exc, delay,
                )  # fmt: skip
            await trio.sleep(delay)
            delay = min(2 * delay, self._options.max_election_timeout)

    def _ready_now(self) -> None:
        """Carry out a Ready at once, from the task that just fed the core, when nothing
        else is under way and nothing in it waits on the disk (the storage is immediate,
        or the Ready needs no sync: a newer commit index, messages, entries to apply); a
        task switch saved per batch of messages. Else leave it to the ready loop."""
        node = self._node
        if not node.has_ready():
            self._follow_timer()
            return
        if self._busy or (not self._immediate and node.needs_sync()):
            self._kick()
            return
        try:
            rd = node.ready()
            if rd.must_persist:
                self._stage(rd)  # durable at once (immediate), or with the next sync
                if self._immediate:
                    self._storage.sync_nowait()  # type: ignore[attr-defined]
                elif rd.sync:
                    raise AssertionError("a Ready that needs a sync was carried out at once")
            self._finish(rd)
        except Exception as exc:  # an internal invariant broke: stop this server only
            if exc is self._tracer_error:
                raise
            self._fail(exc)

    def _finish(self, rd: Ready) -> None:
        self._send(rd.messages)
        self._carry_out(rd)
        self._advance(rd)

    def _advance(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._durable_snapshot = max(self._durable_snapshot, rd.snapshot.index)
        node = self._node
        node.advance(rd)
        if self._callbacks_due:
            self._run_callbacks()
        if not self._busy and node.has_ready():
            self._kicked.set()  # carried out by another task: the loop takes what is left
        self._follow_timer()

    def _stage(self, rd: Ready) -> None:
        # Durable before anything that depends on it leaves (Figure 2: "before responding
        # to RPCs"; API: "nothing is acknowledged before it is durable").
        stage(self._storage, rd)

    def _send(self, messages: tuple[Message, ...]) -> None:
        if not messages:
            return
        if self._leader_nursery is not None and (
            self._replicators.keys() != self._node.progress.keys()
        ):
            self._sync_replicators()
        self._sent += len(messages)
        send = self._endpoint.send
        replicators = self._replicators
        for message in messages:
            replicator = replicators.get(message.dst)
            if replicator is None or not (replicator.waiting or type(message) is InstallSnapshot):
                # Nothing waits for this peer: the message leaves now, from this task
                # (before the rest of this Ready's work, and between writers woken
                # together; see _Replicator).
                send(message)
            else:
                replicator.waiting += 1
                replicator.queue.send_nowait(message)

    def _carry_out(self, rd: Ready) -> None:
        if rd.snapshot is not None and rd.restore:
            self._restore(rd.snapshot.data)
            self._last_applied = rd.snapshot.index
            self._snapshots_installed += 1
            self._trace_if("snapshot", index=rd.snapshot.index, installed=True)
        if rd.committed:
            self._applied_at = trio.current_time()
            self._apply_lag.observe(self._node.commit_index - self._last_applied)
        for entry in rd.committed:
            self._apply(entry)
        if self._latencies:
            self._write_latency.observe_all(self._latencies)
            self._latencies.clear()
        if rd.take_snapshot:
            with contextlib.suppress(Exception):  # logged; tried again later
                self._snapshot_now()
        for ticket, read_index in rd.reads:
            waiter = self._reads.get(ticket)
            if waiter is not None:
                waiter.resolve(read_index)
        for ticket in rd.failed_reads:
            waiter = self._reads.get(ticket)
            if waiter is not None:
                waiter.fail(
                    NotLeader(
                        self._node.leader, "leadership was lost before the read was confirmed"
                    )
                )
        for notice in rd.notices:
            logger.warning("%s: %s", self._name, notice)
        if rd.soft is not None and rd.soft != self._soft:
            self._soft_changed(rd.soft)
        if self._leaderships:
            self._follow_leaderships()
        self._notify_changed()

    def _follow_leaderships(self) -> None:
        # The bodies of leadership() run only while this server leads with its lease
        # (§6.4.1): the deadline follows the lease; losing the term cancels them at once.
        node = self._node
        for term, scope in self._leaderships:
            if node.role is not Role.LEADER or node.term != term:
                scope.cancel()
            else:
                scope.deadline = self._local_clock.deadline(node.lease_until)

    def _learn_addresses(self, addresses: Mapping[str, str]) -> None:
        if self._learn is not None and addresses:
            self._learn(addresses)

    def _keep_links(self, config: Config) -> None:
        # A transport that keeps links to peers keeps them to the configuration's
        # members only, once there is a configuration (a server waiting to be added
        # has none yet, and keeps the peers it was given).
        keep_only = getattr(self._endpoint, "keep_only", None)
        members = set(config.voters) | set(config.learners)
        if keep_only is not None and members:
            keep_only(members)

    def _soft_changed(self, soft: SoftState) -> None:
        old = self._soft
        self._soft = soft
        if old is None or old.config_index != soft.config_index:
            self._learn_addresses(dict(self._node.config.addresses))
            self._keep_links(self._node.config)
        role_changed = old is None or (old.role, old.term, old.leader) != (
            soft.role,
            soft.term,
            soft.leader,
        )
        if role_changed and self._role_watchers:
            status = self.status()
            for queue in self._role_watchers:
                queue.append(status)
            self._wake_role_watchers()
        if soft.role in _CAMPAIGNING and soft.term != self._election_term:
            # A term in which it campaigned (a candidate, or at once a leader: a single
            # voter wins within one step): an election it started.
            self._election_term = soft.term
            self._elections += 1
        if self._tracer is not None:
            if role_changed:
                self._trace("role", role=soft.role, term=soft.term, leader=soft.leader)
            if soft.commit != self._traced_commit:
                self._traced_commit = soft.commit
                self._trace("commit", index=soft.commit)
        node = self._node
        if node.role is Role.LEADER:
            if self._led_term != node.term:
                self._stop_leading()
                self._start_leading()
        elif self._led_term is not None:
            self._stop_leading()
        if node.role is not self._role:
            self._role = node.role
            self._hooks.role_changed(node.role)

    def _restore(self, data: bytes) -> None:
        machine_state, extra = decode_snapshot(data)
        restore = getattr(self._machine, "restore", None)
        if restore is None:
            raise TypeError(
                f"the storage holds a snapshot, but {type(self._machine).__name__} has no "
                "restore() method"
            )
        restore(machine_state)
        self._sessions.restore(extra.get("sessions", []))
        # The cluster time of the snapshot: the newest stamp it covers, which the next
        # snapshot records again even if no stamped entry is applied in between.
        self._observe_stamp(extra.get("clock", 0.0))

    def _snapshot_now(self) -> int:
        """Snapshot the machine at the last applied entry; hand it to the core."""
        index = self._last_applied
        try:
            extra = {"sessions": self._sessions.snapshot(), "clock": self._last_stamp_applied}
            data = encode_snapshot(self._machine.snapshot(), extra)
        except Exception as exc:
            self._node.snapshot_failed(index)
            logger.error(
                "%s: snapshot() failed at index %d (the log is not compacted; the next "
                "try comes after %d more entries): %r",
                self._name,
                index,
                self._options.snapshot_threshold,
                exc,
            )
            raise
        before = self._node.snapshot_index
        snapshot = self._node.snapshot_taken(index, data)
        if snapshot.index > before:
            self._snapshots_taken += 1
        self._trace_if("snapshot", index=snapshot.index, installed=False)
        return snapshot.index

    def _trace(self, event: str, **data: Any) -> None:
        assert self._tracer is not None
        try:
            self._tracer(TraceEvent(trio.current_time(), self._name, event, data))
        except Exception as exc:
            # A tracer's exception (the testing toolkit's InvariantViolation) is a
            # report for the program, not an internal failure of this server.
            self._tracer_error = exc
            raise

    def _trace_if(self, event: str, **data: Any) -> None:
        if self._tracer is not None:
            self._trace(event, **data)

    # -------------------------------------------------------------- leading
    def _start_leading(self) -> None:
        assert self._nursery is not None
        self._led_term = self._node.term
        # §6.3: stamps never go backwards along the log: run on from the newest stamp
        # this leader's log holds (applied or not), not counting the time since (no
        # leader may have run meanwhile).
        newest = self._newest_stamp()
        self._clock.rebase(self._local_clock.now(), newest)
        self._last_stamp = newest
        scope = trio.CancelScope()
        self._leader_scope = scope
        self._nursery.start_soon(self._lead, scope)

    def _stop_leading(self) -> None:
        if self._led_term is None:
            return
        self._led_term = None
        if self._leader_scope is not None:
            self._leader_scope.cancel()
        self._leader_scope = None
        self._leader_nursery = None
        for replicator in self._replicators.values():
            replicator.queue.close()
        self._replicators.clear()
        # Writes this leader appended that are not known committed may or may not
        # commit under the next leader: their outcome is unknown. Committed ones will be
        # applied (and answered) as usual.
        commit = self._node.commit_index
        for index in [i for i in self._writes if i > commit]:
            self._writes.pop(index).fail(
                OutcomeUnknown(
                    f"{self._name!r} lost leadership before entry {index} committed; "
                    "the write may or may not take effect"
                )
            )

    async def _lead(self, scope: trio.CancelScope) -> None:
        # Leadership can end (and a new term's begin) before this task first runs: only
        # the task of the leadership in force may install its nursery.
        with scope:
            async with trio.open_nursery() as nursery:
                if scope is not self._leader_scope:
                    return
                self._leader_nursery = nursery
                self._sync_replicators()
                await trio.sleep_forever()

    def _sync_replicators(self) -> None:
        nursery = self._leader_nursery
        if nursery is None:
            return
        progress = self._node.progress
        for peer in progress:
            if peer not in self._replicators:
                send, receive = trio.open_memory_channel[Message](math.inf)
                replicator = self._replicators[peer] = _Replicator(send)
                nursery.start_soon(self._replicate, replicator, receive)
        for peer in [p for p in self._replicators if p not in progress]:
            replicator = self._replicators.pop(peer)
            replicator.queue.close()
            replicator.scope.cancel()

    async def _replicate(
        self, replicator: _Replicator, messages: trio.MemoryReceiveChannel[Message]
    ) -> None:
        # One task per follower: it sends, in order, what waits for that follower (see
        # _Replicator), so a snapshot on its way to one never holds up the others.
        send = self._endpoint.send
        with replicator.scope:
            async for message in messages:
                replicator.waiting -= 1
                send(message)

    # ---------------------------------------------------------------- tasks
    async def _receive_loop(self) -> None:
        receive = self._endpoint.receive_batch
        while True:
            if not self._take_batch(await receive()):
                return

    def _take_batch(self, batch: list[Message]) -> bool:
        """Feed the core messages that arrived together, then carry out what they
        caused; ``False`` once an internal failure has stopped this server."""
        node = self._node
        self._received += len(batch)
        now = self._local_clock.now()
        for message in batch:
            if isinstance(message, ClientRequest):
                self._serve_client(message)
                continue
            try:
                node.step(message, now)
            except MalformedMessage as exc:
                logger.warning("%s: dropped a malformed message: %s", self._name, exc)
            except Exception as exc:
                self._fail(exc)
                return False
        self._ready_now()
        return True

    def _delivered(self, batch: list[Message]) -> None:
        """A transport that delivers by calling (TCP: from the task that read the
        connection, a task switch saved per batch) hands messages here. Nothing more
        is taken once the server failed or stopped (as the receive loop ends then)."""
        if self._stopped or self._failure is not None or self._delivery_error is not None:
            return
        try:
            self._take_batch(batch)
        except BaseException as exc:  # a tracer's report: raise it in this server's tasks
            if self._delivery_error is None:
                self._delivery_error = exc
                self._delivery_failed.set()

    async def _raise_delivery_error(self) -> None:
        await self._delivery_failed.wait()
        assert self._delivery_error is not None
        raise self._delivery_error

    async def _timer_loop(self) -> None:
        node = self._node
        clock = self._local_clock
        while True:
            self._timer_at = deadline = node.deadline  # on this server's clock
            with trio.CancelScope(deadline=clock.deadline(deadline)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            now = clock.now()
            if now >= node.deadline:
                try:
                    node.tick(now)
                except Exception as exc:
                    self._fail(exc)
                    return
                self._kick()

    def _serve_client(self, request: ClientRequest) -> None:
        if self._nursery is not None:
            from ._serving import serve_request

            self._nursery.start_soon(serve_request, self, self._endpoint, request)

    async def _watch_membership(self) -> None:
        # Legal but easy to get wrong: a server in no configuration does nothing until a
        # leader adds it. Say so once, a few election timeouts after start.
        await trio.sleep_until(
            self._after(_WAIT_TO_BE_ADDED_TIMEOUTS * self._options.max_election_timeout)
        )
        node = self._node
        if self._name not in node.config.members and node.leader is None:
            logger.warning(
                "%s: not a member of its configuration (voters: %s) and no leader has "
                "contacted it: it waits to be added (leader.add_server(%r))",
                self._name,
                ", ".join(sorted(node.config.voters)) or "none",
                self._name,
            )

    def _observe_stamp(self, stamp: float) -> None:
        self._last_stamp_applied = max(self._last_stamp_applied, stamp)
        self._clock.observe(stamp, self._local_clock.now())

    def _newest_stamp(self) -> float:
        """The newest stamp this server's log holds: the latest applied (or restored
        from a snapshot), or one of the entries not applied yet. A leader's log holds
        every entry before its own (it only appends), so stamping from it keeps the
        stamps of the log in order."""
        newest = self._last_stamp_applied
        log = self._node.log
        for entry in log.slice(max(self._last_applied + 1, log.first_index), log.last_index):
            if entry.kind is EntryKind.CLIENT:
                newest = max(newest, entry.data[3])
            elif entry.kind is EntryKind.SESSION:
                newest = max(newest, entry.data[0])
        return newest

    def _stamp(self) -> float:
        """The time a leader stamps into a client entry: the cluster's clock, never
        below an earlier stamp (so stamps grow along the log)."""
        stamp = max(self._clock.now(self._local_clock.now()), self._last_stamp)
        self._last_stamp = stamp
        return stamp

    async def open_session(self) -> int:
        """Open a client session (dissertation §6.3); returns the client's id. Leader
        only. Used by :func:`trioraft.open_client`."""
        return int(await self._propose_and_wait(EntryKind.SESSION, [self._stamp()]))

    async def write_in_session(self, client: int, seq: int, lowest: int, command: Any) -> Any:
        """Apply ``command`` as write number ``seq`` of session ``client`` (the client has
        seen every reply below ``lowest``): at most once, however often it is retried
        with the same command; with another command under a number already applied,
        :class:`~trioraft.WriteNumberReused`. Leader only. Used by
        :func:`trioraft.open_client`."""
        self._hooks.validate(command)
        data = [client, seq, lowest, self._stamp(), command]
        return await self._propose_and_wait(EntryKind.CLIENT, data)

    async def _propose_and_wait(self, kind: EntryKind, data: Any) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_running()
        if self._check_value is not None:
            self._check_value(data)
        while True:
            try:
                started = trio.current_time()  # the write's latency is real time
                entry = self._node.propose_entry(kind, data, self._local_clock.now())
                break
            except TransferInProgress:
                await self._wait_changed()
        return await self._await_entry(entry, started)

    def _expire_sessions(self, stamp: float) -> None:
        # Expiry is a function of the stamped time of the entry applied: every replica
        # expires the same sessions at the same log position, and tells its machine.
        for client in self._sessions.expire(stamp):
            self._hooks.session_expired(client)

    def _run_write(self, command: Any) -> tuple[Any, BaseException | None]:
        try:
            return self._machine.write(command), None
        except Exception as exc:
            # Deterministic state machines raise identically on every replica, so the
            # server goes on; the writer receives the exception.
            logger.debug("%s: write(%r) raised %r", self._name, command, exc)
            return None, exc

    def _apply(self, entry: Entry) -> None:
        value: Any = None
        error: BaseException | None = None
        kind = entry.kind
        if kind is EntryKind.COMMAND:
            value, error = self._run_write(entry.data)
        elif kind is EntryKind.CLIENT:
            # §6.3: a numbered command of a client session, applied at most once.
            client, seq, lowest, stamp, command = entry.data
            self._observe_stamp(stamp)
            self._expire_sessions(stamp)
            value, error = self._sessions.apply(
                client, seq, lowest, stamp, lambda: self._run_write(command), command
            )
        elif kind is EntryKind.SESSION:
            self._observe_stamp(entry.data[0])
            self._expire_sessions(entry.data[0])
            value = self._sessions.open(entry.index, entry.data[0])
        elif kind is EntryKind.CONFIG:
            self._hooks.membership_changed(entry.data)
        self._last_applied = entry.index
        if self._tracer is not None:
            self._trace("apply", index=entry.index, term=entry.term, kind=entry.kind.value)
        waiter = self._writes.pop(entry.index, None)
        if waiter is None:
            return
        if waiter.term != entry.term:
            waiter.fail(
                NotLeader(
                    self._node.leader,
                    "the entry was replaced by a newer leader's; it was not applied",
                )
            )
            return
        if kind is EntryKind.COMMAND or kind is EntryKind.CLIENT:
            self._latencies.append(self._applied_at - waiter.started)
        if error is not None:
            waiter.fail(error)
        else:
            waiter.resolve(value)

    async def _run(self, task_status: trio.TaskStatus[Server]) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    deliver_to = getattr(self._endpoint, "deliver_to", None)
                    if deliver_to is not None:
                        deliver_to(self._delivered)
                        nursery.start_soon(self._raise_delivery_error)
                    else:
                        nursery.start_soon(self._receive_loop)
                    nursery.start_soon(self._timer_loop)
                    nursery.start_soon(self._guarded_ready_loop)
                    nursery.start_soon(self._watch_membership)
                    self._local_clock.watch(self._clock_changed)
                    self._kick()
                    task_status.started(self)
        finally:
            self._shutdown()

    async def _guarded_ready_loop(self) -> None:
        try:
            await self._ready_loop()
        except Exception as exc:
            if exc is self._tracer_error:
                raise
            self._fail(exc)

    def _shutdown(self) -> None:
        self._stopped = True
        self._local_clock.unwatch(self._clock_changed)
        self._led_term = None
        why = f" ({self._failure})" if self._failure is not None else ""
        for index, waiter in sorted(self._writes.items()):
            waiter.fail(
                StoppedOutcomeUnknown(
                    f"server {self._name!r} stopped before entry {index} was applied; "
                    f"the write may or may not take effect{why}"
                )
            )
        self._writes.clear()
        self._run_callbacks()
        for waiter in self._reads.values():
            waiter.fail(self._failure or ServerStopped(f"server {self._name!r} stopped"))
        self._reads.clear()
        for _, scope in self._leaderships:
            scope.cancel()
        self._endpoint.close()
        self._storage.release()
        self._notify_changed()
        self._wake_role_watchers()
        self._finished.set()


def _check_storage(storage: Any) -> Storage:
    if not isinstance(storage, (MemoryStorage, DiskStorage)):
        raise ValueError(
            f"storage must be a trioraft.MemoryStorage or trioraft.DiskStorage, got {storage!r}"
        )
    return storage


async def serve(
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Run a trioraft server until it is stopped or cancelled (``nursery.start`` form).

    ``machine`` is a state machine class or factory, called as ``machine()`` when
    ``init_arg`` is omitted and ``machine(init_arg)`` otherwise. The :class:`Server`
    handle is passed to ``task_status.started()`` once the server is on the network.
    Options are those of :class:`~trioraft.ServerOptions`; an unknown or invalid one
    raises :class:`ValueError` before anything starts.
    """
    opts = ServerOptions.from_kwargs(options)
    if not isinstance(name, str) or not name:
        raise ValueError(f"server name must be a non-empty string, got {name!r}")
    storage = _check_storage(opts.storage if opts.storage is not None else MemoryStorage())
    if not callable(machine):
        raise TypeError(f"machine must be a state machine class or factory, got {machine!r}")
    if not callable(getattr(network, "register", None)):
        raise TypeError(
            "network must be a Transport (a MemoryNetwork, or the network of "
            f"open_tcp_network), got {type(network).__qualname__}"
        )
    instance = machine() if init_arg is _MISSING else machine(init_arg)
    check_machine(instance)
    await storage.acquire(name)
    try:
        state = await storage.load()
        endpoint = network.register(name)
    except BaseException:
        storage.release()
        raise
    try:
        server = Server(name, instance, endpoint, storage=storage, options=opts, state=state)
    except BaseException:
        endpoint.close()
        storage.release()
        raise
    await server._run(task_status)


async def start_server(
    nursery: trio.Nursery,
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    **options: Any,
) -> Server:
    """Start a server's tasks inside ``nursery`` and return its :class:`Server` handle
    once it is registered on ``network``. See :func:`serve` for the arguments."""
    if not isinstance(nursery, trio.Nursery):
        raise TypeError(
            f"start_server() takes the nursery to run the server in as its first argument, "
            f"got {nursery!r}: write start_server(nursery, {_name_of(nursery)}, ...) inside "
            "'async with trio.open_nursery() as nursery:', or use trioraft.serve with "
            "nursery.start"
        )
    server: Server = await nursery.start(
        functools.partial(serve, machine, init_arg, name=name, network=network, **options)
    )
    return server


def _name_of(obj: Any) -> str:
    return getattr(obj, "__name__", None) or repr(obj)


@asynccontextmanager
async def open_server(
    machine: Callable[..., Any],
    init_arg: Any = _MISSING,
    *,
    name: str,
    network: Transport,
    **options: Any,
) -> AsyncIterator[Server]:
    """``async with open_server(...) as server:``: :func:`start_server` with a nursery
    of its own; the server stops when the block exits. Arguments as for :func:`serve`."""
    async with trio.open_nursery() as nursery:
        server = await start_server(
            nursery, machine, init_arg, name=name, network=network, **options
        )
        try:
            yield server
        finally:
            await server.stop()
