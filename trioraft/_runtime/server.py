"""The public handle of a server: :class:`Server`.

Owns: the calls users make, and what a call must pass before it reaches the core (the
machine's ``validate``, the network's and the storage's value checks; a write's are
carried out by :mod:`.writes`). It reads the node only through its live soft state and
its reports (``status()``), and leaves the rest to the rooms it is built of:
:mod:`.driver` (the tasks and the Ready/Advance cycle), :mod:`.replication` (sending),
:mod:`.apply` (the machine, sessions, snapshots), :mod:`.watch` (leadership, role
changes, the tracer), :mod:`.waiters` (the callers), :mod:`.writes` (the write path) and
:mod:`.changes` (membership changes and transfers). May not touch: any
Raft decision, the node's internals, the tasks but to ask the driver to run a Ready.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import trio

from .._clock import TRIO_CLOCK
from .._core.messages import EntryKind
from .._core.node import RaftNode
from .._core.ready import PersistedState
from .._errors import ServerFailed
from .._network.base import Endpoint
from .._options import ServerOptions
from .._storage import Storage
from .._views import read_only
from .apply import Applier
from .changes import Changes
from .driver import Driver, TakeRequest
from .machine import machine_snapshots
from .records import ServerStatistics, Status, status_of
from .replication import Replication
from .waiters import Signal, Waiters, WriteCallback
from .watch import Watch
from .writes import WritePath

__all__ = ["Server"]


def _all_checks(*checks: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """One check that runs each of ``checks`` (``None``s left out) once."""
    distinct = list(dict.fromkeys(c for c in checks if c is not None))
    if len(distinct) <= 1:
        return distinct[0] if distinct else None

    def check_all(value: Any) -> None:
        for check in distinct:
            check(value)

    return check_all


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
        self._local_clock = clock = options.clock if options.clock is not None else TRIO_CLOCK
        self._machine = machine
        self._snapshots = machine_snapshots(machine)
        self._endpoint = endpoint
        self._storage = storage
        self._options = options
        #: What a query must pass (the network's rule: it may cross a process boundary).
        self._check_query: Callable[[Any], None] | None = getattr(endpoint, "check_value", None)
        #: What a command must pass: the network's rule and the storage's (DiskStorage
        #: keeps msgpack values), each checked once even where both are the same.
        self._check_value = _all_checks(self._check_query, getattr(storage, "check_value", None))
        #: The machine's ``validate``, if it has one.
        self._validate: Callable[[Any], object] | None = getattr(machine, "validate", None)
        self._node = node = RaftNode(
            name, options.core(), random.Random(options.seed), clock.now(), state,
            compaction=self._snapshots,
        )  # fmt: skip
        self._waiters = waiters = Waiters(name, self.leader)
        self._watch = watch = Watch(name, node, clock, waiters, options.tracer, self.status)
        self._kicked = kicked = Signal()  # wakes the ready loop
        snapshot = state.snapshot.data if state.snapshot is not None else None
        self._applier = Applier(
            name, machine, node, options, clock, (waiters, watch, kicked), snapshot
        )
        self._replication = Replication(endpoint, node, watch.counters)
        self._driver = driver = Driver(
            name, node, storage, options, clock, endpoint, kicked,
            (waiters, watch, self._applier, self._replication),
        )  # fmt: skip
        self._changes = Changes(
            name, node, options, clock, waiters, driver.kick,
            self._replication.learn_addresses, self._check_value,
        )  # fmt: skip
        self._write_path = WritePath(
            node, (waiters, watch, driver, kicked),
            _all_checks(self._validate, self._check_value),
            clock, self._changes.wait_out_transfer, clock is TRIO_CLOCK,
        )  # fmt: skip
        # Bound once: the calls most other calls make.
        self._check_running = waiters.check_running
        self._wait_changed = waiters.wait_changed

    def __repr__(self) -> str:
        node = self._node
        state = "stopped" if self._waiters.stopped else node.role.value
        return f"<trioraft.Server {self._name!r} {state} term={node.term} leader={node.leader!r}>"

    name: str = read_only("_name", "This server's name.")
    storage: Any = read_only(
        "_storage",
        "This server's storage (a :class:`~trioraft.MemoryStorage` unless another was given; "
        "reuse it to restart the server).",
    )
    machine: Any = read_only("_machine", "This server's state machine instance.")
    stopped: bool = read_only("_waiters.stopped", "Whether the server has stopped.")
    failure: ServerFailed | None = read_only(
        "_waiters.failure",
        "If the server stopped itself because an internal invariant broke: why.",
    )
    # Private names that tests and the shared repro scripts read.
    _replicators = read_only("_replication.replicators", "Each follower's replicator.")
    _leader_nursery = read_only("_replication.leader_nursery", "The leader-only nursery.")
    _sessions = read_only("_applier.sessions", "The client sessions.")
    _clock = read_only("_applier.clock", "The cluster's clock.")
    _last_stamp_applied = read_only("_applier.last_stamp_applied", "The newest stamp applied.")

    def leader(self) -> str | None:
        """The leader's name as this server knows it, or ``None``."""
        return self._node.leader

    def status(self) -> Status:
        """A frozen :class:`Status` of this server."""
        return status_of(self._name, self._node.status(), self._applier.last_applied)

    async def write(self, command: Any) -> Any:
        """Replicate ``command``, apply it everywhere, and return the state machine's reply.

        Leader only (:class:`~trioraft.NotLeader` elsewhere). If the server loses its
        leadership or stops before the entry commits, raises
        :class:`~trioraft.OutcomeUnknown`: the command may or may not be applied. An
        exception raised by the state machine's ``write`` is raised here.
        """
        return await self._write_path.write(command)

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
        return self._write_path.submit(command, callback)

    async def read(self, query: Any) -> Any:
        """A linearizable read (§6.4 ReadIndex): the leader confirms it still leads with a
        round of heartbeats (or, with ``lease_reads``, not while its lease holds, §6.4.1),
        waits until it has applied everything committed when the read began, then answers
        ``machine.read(query)``. Leader only, unless ``follower_reads``: a follower then
        asks the leader for the read index, waits until it has applied that far, and
        answers locally."""
        if self._check_query is not None:
            self._check_query(query)  # TypeError naming the type, at the call
        return await self._applier.read(query)

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
        await self._changes.add_server(name, voter, address)

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
        await self._changes.set_members(voters, learners, addresses)

    async def remove_server(self, name: str) -> None:
        """Remove ``name`` from the cluster; returns once the change is committed.
        A leader that removes itself hands over leadership and steps down afterwards."""
        await self._changes.remove_server(name)

    async def trigger_election(self) -> None:
        """Start an election on this server now (it must be a voter). When this returns
        the server is a candidate of a new term (or already the leader of one). With
        ``lease_reads``, a leader's lease is respected: neither this server's own vote
        nor others' help elect it until a minimum election timeout after each last
        heard from a leader (§6.4.1; see the ``lease_reads`` option)."""
        await trio.lowlevel.checkpoint()
        self._check_running()
        self._node.trigger_election(self._local_clock.now())
        self._driver.kick()

    async def transfer_leadership(self, name: str | None = None) -> str:
        """Hand leadership to ``name`` (default: the most up-to-date voter), §3.10.

        The leader stops taking writes (they wait), brings the target's log up to date
        and tells it to start an election at once. Returns the new leader's name once it
        leads; raises :class:`~trioraft.TransferFailed` if that does not happen in time
        (the old leader then resumes if it still can). Leader only.
        """
        return await self._changes.transfer(name)

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
        index = self._applier.snapshot_now()
        self._driver.kick()
        while self._applier.durable_snapshot < index:
            await self._wait_changed()
        return index

    def statistics(self) -> ServerStatistics:
        """A frozen :class:`ServerStatistics` of this server (Trio's ``statistics()``)."""
        return self._watch.statistics(self._applier.last_applied)

    def leadership(self) -> contextlib.AbstractAsyncContextManager[int]:
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
        return self._watch.leadership()

    def terms(self) -> AsyncIterator[int]:
        """``async for term in server.terms():`` yields each term in which this server
        becomes leader (as :meth:`leadership` sees it), for code that restarts per term.
        Ends when the server stops."""
        return self._watch.terms()

    def role_changes(self) -> AsyncIterator[Status]:
        """``async for status in server.role_changes():`` this server's :meth:`status`
        now, then one for each change of its role, term or known leader, in order, as it
        happened (each is the status at that change). Ends when the server stops.

        For logs and dashboards (``python -m trioraft serve`` prints a line for each):
        unlike a ``tracer``, it costs nothing per write.
        """
        return self._watch.role_changes()

    async def aclose(self) -> None:
        """The same as :meth:`stop`, by Trio's name for it."""
        await self.stop()

    async def stop(self) -> None:
        """Stop the server: its tasks end, pending calls raise
        :class:`~trioraft.ServerStopped`, and it leaves the network. Its storage can then
        be given to a new server of the same name (crash-restart)."""
        self._driver.scope.cancel()
        await self._driver.finished.wait()

    # ------------------------------------------------------- client sessions
    async def open_session(self) -> int:
        """Open a client session (dissertation §6.3); returns the client's id. Leader
        only. Used by :func:`trioraft.open_client`."""
        return int(await self._changes.propose_and_wait(EntryKind.SESSION, [self._applier.stamp()]))

    async def write_in_session(self, client: int, seq: int, lowest: int, command: Any) -> Any:
        """Apply ``command`` as write number ``seq`` of session ``client`` (the client has
        seen every reply below ``lowest``): at most once, however often it is retried
        with the same command; with another command under a number already applied,
        :class:`~trioraft.WriteNumberReused`. Leader only. Used by
        :func:`trioraft.open_client`."""
        if self._validate is not None:
            self._validate(command)
        data = [client, seq, lowest, self._applier.stamp(), command]
        return await self._changes.propose_and_wait(EntryKind.CLIENT, data)

    async def _run(
        self, task_status: trio.TaskStatus[Server], take_request: TakeRequest[Server]
    ) -> None:
        """Run this server's tasks until it stops (:func:`serve`); each client request
        that arrives goes to ``take_request(self, endpoint, request, start_soon)``."""
        self._write_path.trio_now = trio.lowlevel.current_clock().current_time
        await self._driver.run(task_status, self, take_request)
