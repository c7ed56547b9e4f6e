"""Clusters of servers in one process, for tests: start, crash, restart, fault, check."""

from __future__ import annotations

import contextlib
import copy
import functools
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._core.node import Role
from .._core.options import check_seconds
from .._errors import NotLeader, OutcomeUnknown, ServerStopped
from .._network.memory import MemoryNetwork
from .._server import Server, Status, TraceEvent, start_server
from .._state_machine import StateMachine
from .._storage.memory import MemoryStorage
from ._clocks import DriftingClock
from ._invariants import InvariantMonitor, _same

__all__ = ["LIVENESS_ELECTION_TIMEOUTS", "Cluster", "open_cluster"]

_MISSING: Any = object()

#: Liveness: after a recovery (every server up, the network whole and clean), a stable
#: leader must be elected within this many of the longest election timeouts, provided a
#: quorum of the latest configuration's voters is running (of each of its two voter sets
#: while it is joint).
LIVENESS_ELECTION_TIMEOUTS = 10


def derive_seed(*parts: object) -> int:
    """A 32-bit seed derived from ``parts``, the same in every process."""
    return random.Random("/".join(map(str, parts))).getrandbits(32)


@attrs.define(eq=False)
class Cluster:
    """Servers of one state machine on one :class:`~trioraft.MemoryNetwork`.

    Made by :func:`open_cluster`. ``servers`` holds the running servers by name; a crashed
    server's storage stays in ``storages`` so :meth:`restart` brings it back with all it
    had persisted. Every server reports to ``monitor``, an
    :class:`~trioraft.testing.InvariantMonitor`.

    Beyond Raft's safety properties, the cluster checks **liveness** after every
    :meth:`recover`: unless another fault comes first, a stable leader must be elected
    within :data:`LIVENESS_ELECTION_TIMEOUTS` election timeouts whenever a quorum of the
    latest configuration's voters is running (of both voter sets while it is joint,
    dissertation §4.3; checked by :meth:`check`, the periodic checks and
    :meth:`wait_for_leader`). It also checks that the state machines' reads
    leave their state unchanged.

    Each server reads a clock of its own (the time its core is given, its timers), which
    follows virtual time until :meth:`set_clock_rate` or :meth:`jump_clock` changes it,
    and keeps its rate and reading across the server's restarts.
    """

    nursery: trio.Nursery
    machine: Callable[..., Any]
    init_arg: Any
    names: list[str]
    seed: int
    network: MemoryNetwork
    monitor: InvariantMonitor
    options: dict[str, Any]
    servers: dict[str, Server] = attrs.field(init=False, factory=dict)
    storages: dict[str, MemoryStorage] = attrs.field(init=False, factory=dict)
    _incarnation: dict[str, int] = attrs.field(init=False, factory=dict)
    _clocks: dict[str, DriftingClock] = attrs.field(init=False, factory=dict)
    _tracers: list[Callable[[TraceEvent], None]] = attrs.field(init=False, factory=list)
    #: The duplication rate :meth:`recover` leaves on (0: a clean network).
    duplication_baseline: float = attrs.field(init=False, default=0.0)
    #: How long each sync of the storages this cluster makes takes, ``(low, high)``
    #: seconds (``None``: at once). With it, a crash can lose what a server wrote
    #: and had not yet synced, as on a real disk.
    sync_latency: tuple[float, float] | None = attrs.field(init=False, default=None)
    #: After a recovery: (when it happened, when a leader must be there by).
    _liveness: tuple[float, float] | None = attrs.field(init=False, default=None)
    _recovering: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._tracers.append(self.monitor.observe)
        self.network.add_fault_observer(self._on_network_fault)

    def __repr__(self) -> str:
        return f"<Cluster seed={self.seed} running={sorted(self.servers)}>"

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def add_tracer(self, tracer: Callable[[TraceEvent], None]) -> None:
        """Also send every server's trace events to ``tracer`` (servers started later too)."""
        self._tracers.append(tracer)

    def remove_tracer(self, tracer: Callable[[TraceEvent], None]) -> None:
        """Stop sending trace events to ``tracer``."""
        self._tracers.remove(tracer)

    def _trace(self, event: TraceEvent) -> None:
        for tracer in self._tracers:
            tracer(event)

    def record_outcome(self, server: str, call: str, what: str, outcome: str) -> None:
        """Trace what a call of a fault schedule on ``server`` came to (an ``"outcome"``
        event: ``call``, the fault's kind; ``what``, the fault in words; ``outcome``,
        ``"done"`` or the error it raised). A membership change refused or cut short
        is an outcome of the run, not a failure of it."""
        data = {"call": call, "what": what, "outcome": outcome}
        self._trace(TraceEvent(trio.current_time(), server, "outcome", data))

    async def start(self, name: str, **options: Any) -> Server:
        """Start server ``name`` (with the cluster's options, overridden by ``options``),
        from its stored state if it ran before."""
        if name in self.servers:
            raise ValueError(f"server {name!r} is already running")
        incarnation = self._incarnation.get(name, 0)
        self._incarnation[name] = incarnation + 1
        merged = {"initial_config": self.names, **self.options, **options}
        merged.setdefault("seed", derive_seed(self.seed, name, incarnation))
        merged.setdefault("clock", self._clocks.setdefault(name, DriftingClock()))
        storage = merged.pop("storage", None)
        if name not in self.storages:
            self.storages[name] = storage or MemoryStorage(
                sync_latency=self.sync_latency, seed=derive_seed(self.seed, name, "storage")
            )
        storage = self.storages[name]
        args = () if self.init_arg is _MISSING else (self.init_arg,)
        server = await start_server(
            self.nursery,
            functools.partial(_audited, self.machine, self.monitor, name),
            *args,
            name=name,
            network=self.network,
            storage=storage,
            tracer=self._trace,
            **merged,
        )
        self.servers[name] = server
        self.monitor.watch(server)
        return server

    async def crash(self, name: str) -> None:
        """Stop server ``name``, keeping its storage for :meth:`restart`."""
        if name not in self.servers:
            raise ValueError(f"server {name!r} is not running")
        self._check_failures([name])  # before its failure goes with it
        server = self.servers.pop(name)
        self.note_fault()
        self._trace(TraceEvent(trio.current_time(), name, "crash", {}))
        await server.stop()

    async def restart(self, name: str, **options: Any) -> Server:
        """Start again a crashed server from its storage (crash-restart)."""
        if name not in self.storages:
            raise ValueError(f"server {name!r} never ran in this cluster")
        self._trace(TraceEvent(trio.current_time(), name, "restart", {}))
        return await self.start(name, **options)

    async def recover(self) -> list[str]:
        """Undo every fault: heal the network, clear loss, delay and duplication (back to
        :attr:`duplication_baseline`), and restart every crashed server from its storage.
        Returns the names restarted. From now on, until the next fault, a leader must be
        elected in bounded time (see the class docstring)."""
        self._recovering = True
        try:
            self.network.heal()
            self.network.set_loss(0)
            self.network.set_delay(0, 0)
            self.network.set_duplication(self.duplication_baseline)
            crashed = sorted(set(self.storages) - set(self.servers))
            for name in crashed:
                await self.restart(name)
        finally:
            self._recovering = False
        now = trio.current_time()
        self._liveness = (now, now + self.liveness_bound)
        return crashed

    @property
    def liveness_bound(self) -> float:
        """Seconds after a recovery by which a leader must be elected."""
        timeout = self.options.get("max_election_timeout", 0.30)
        return float(LIVENESS_ELECTION_TIMEOUTS * timeout)

    def note_fault(self) -> None:
        """A fault is being inflicted: the liveness promise of the last recovery no
        longer holds (fault schedules and :meth:`crash` call this)."""
        if not self._recovering:
            self._liveness = None

    def _on_network_fault(self, kind: str, details: dict[str, Any]) -> None:
        self.note_fault()

    def check_liveness(self) -> None:
        """Fail (an :class:`~trioraft.testing.InvariantViolation`) if a recovery's
        deadline for electing a leader has passed without one, while a quorum of the
        latest configuration's voters runs."""
        if self._liveness is None:
            return
        recovered, due = self._liveness
        leader = self._newest_leader()
        if leader is not None and self._stable(leader):
            self._liveness = None
            return
        if trio.current_time() < due or not self._quorum_running():
            return
        self._liveness = None
        states = "; ".join(f"{name}: {self._describe(name)}" for name in sorted(set(self.storages)))
        self.monitor.fail(
            f"Liveness violated: no leader elected within {LIVENESS_ELECTION_TIMEOUTS} "
            f"election timeouts ({self.liveness_bound:g} s) after the recovery at "
            f"t={recovered:.3f}, with a quorum of the latest configuration's voters up and "
            f"connected. Servers: {states}"
        )

    def _describe(self, name: str) -> str:
        server = self.servers.get(name)
        if server is None:
            return "down"
        st = server.status()
        joint = "" if st.joint_voters is None else f" joint with={sorted(st.joint_voters)}"
        return (
            f"{st.role.value} term={st.term} leader={st.leader} commit={st.commit_index} "
            f"last={st.last_log_index} voters={sorted(st.voters)}{joint}"
        )

    def _quorum_running(self) -> bool:
        # The latest configuration is that of the running server with the most
        # up-to-date log (it is the one any leader must hold). While it is joint
        # (C_old,new, §4.3), a quorum of each of its two voter sets must run.
        running = list(self.servers.values())
        if not running:
            return False
        newest = max(
            running,
            key=lambda s: (s._node.log.last_term, s._node.log.last_index, s.name),
        )
        status = newest.status()
        floor = self.options.get("min_majority") or 0
        sets = (
            [status.voters] if status.joint_voters is None else [status.voters, status.joint_voters]
        )
        return all(
            sum(1 for v in voters if v in self.servers) >= max(floor, len(voters) // 2 + 1)
            for voters in sets
        )

    def _newest_leader(self, exclude: Iterable[str] = ()) -> Server | None:
        excluded = set(exclude)
        leaders = [
            s
            for s in self.servers.values()
            if s.name not in excluded and s.status().role is Role.LEADER
        ]
        return max(leaders, key=lambda s: s.status().term, default=None)

    def _clock_of(self, name: str) -> DriftingClock:
        if not isinstance(name, str) or not (
            name in self.names or name in self.storages or name in self._clocks
        ):
            known = sorted({*self.names, *self.storages})
            raise ValueError(f"{name!r} is not a server of this cluster (its servers: {known})")
        return self._clocks.setdefault(name, DriftingClock())

    def clock_time(self, name: str) -> float:
        """What the clock of server ``name`` reads now: the time its core sees (virtual
        time itself until :meth:`set_clock_rate` or :meth:`jump_clock` changes it)."""
        return self._clock_of(name).now()

    def set_clock_rate(self, name: str, rate: float) -> None:
        """From now on, the clock of server ``name`` (the time its core and timers see)
        runs at ``rate`` times virtual time (a positive number; 1 is virtual time's own
        pace), across its restarts, until changed again. ``name`` is one of the
        cluster's servers (running, crashed, or started once). Lease reads stay
        linearizable while every rate is within ``1 ± max_clock_drift`` (see
        docs/semantics.rst)."""
        clock = self._clock_of(name)
        clock.set_rate(rate)  # checks rate (ValueError) before anything changes
        self._trace(TraceEvent(trio.current_time(), name, "clock", {"rate": clock.rate}))

    def jump_clock(self, name: str, seconds: float) -> None:
        """Move the clock of server ``name`` forward by ``seconds`` (``>= 0``) at once,
        as for a host that was suspended; its rate stays. A forward jump of a running
        follower's clock is beyond every drift bound (its refusal to vote for others
        after hearing from a leader ends early): lease reads may then be stale."""
        clock = self._clock_of(name)
        clock.jump(seconds)
        self._trace(TraceEvent(trio.current_time(), name, "clock", {"jump": float(seconds)}))

    # The network's faults, for convenience.
    def partition(self, *groups: Iterable[str]) -> None:
        """``network.partition(*groups)``: each group talks only within itself."""
        self.network.partition(*groups)

    def isolate(self, name: str) -> None:
        """``network.isolate(name)``: cut one server off from every other."""
        self.network.isolate(name)

    def heal(self) -> None:
        """``network.heal()``: remove every partition and isolation."""
        self.network.heal()

    def set_loss(self, rate: float) -> None:
        """``network.set_loss(rate)``: drop each message with this probability."""
        self.network.set_loss(rate)

    def set_delay(self, low: float, high: float) -> None:
        """``network.set_delay(low, high)``: delay (and so reorder) every message."""
        self.network.set_delay(low, high)

    def set_duplication(self, rate: float) -> None:
        """``network.set_duplication(rate)``: deliver some messages twice."""
        self.network.set_duplication(rate)

    def leader(self) -> Server | None:
        """The running server that leads the newest term, if any."""
        return self._newest_leader()

    async def await_leader(self, *, exclude: Iterable[str] = (), poll: float = 0.01) -> Server:
        """The same as :meth:`wait_for_leader` (named as :meth:`trioraft.Server.await_leader`,
        but returning the leading :class:`~trioraft.Server` rather than its name)."""
        return await self.wait_for_leader(exclude=exclude, poll=poll)

    async def wait_for_leader(self, *, exclude: Iterable[str] = (), poll: float = 0.01) -> Server:
        """Wait for a stable leader: it has committed an entry of its term, and every
        running member it can reach (outgoing voters too, while joint) knows it as leader
        of that term. Servers named in ``exclude`` do not count (for example a deposed
        leader that is cut off and still believes it leads). Bound it with
        ``trio.fail_after``."""
        while True:
            leader = self._newest_leader(exclude)
            if leader is not None and self._stable(leader):
                return leader
            self.check_liveness()
            await trio.sleep(poll)

    def _stable(self, leader: Server) -> bool:
        status = leader.status()
        if leader._node.log.term_at(status.commit_index) != status.term:
            return False  # its no-op has not committed yet
        members = members_of(status)
        for server in self.servers.values():
            if server is leader or server.name not in members:
                continue
            if not (
                self.network.connected(leader.name, server.name)
                and self.network.connected(server.name, leader.name)
            ):
                continue
            other = server.status()
            if other.leader != leader.name or other.term != status.term:
                return False
        return True

    async def write(self, command: Any, *, attempts: int = 100, pause: float = 0.05) -> Any:
        """Write ``command`` through whichever server leads, retrying when there is no
        leader or the write was refused (``NotLeader``). ``OutcomeUnknown`` is raised
        as is: whether to retry an unknown outcome is the caller's decision."""
        for _ in range(attempts):
            server = self.leader()
            if server is not None:
                try:
                    return await server.write(command)
                except (NotLeader, ServerStopped) as exc:
                    if isinstance(exc, OutcomeUnknown):
                        raise
            await trio.sleep(pause)
        raise NotLeader(None, f"no leader accepted the write after {attempts} attempts")

    def check(self) -> None:
        """Check the Raft invariants over the running servers now, liveness, and that no
        server stopped itself because an internal invariant broke
        (:attr:`Server.failure <trioraft.Server.failure>`: a bug, which the run would
        otherwise go on without)."""
        self.monitor.check(self.servers.values())
        self._check_failures()
        self.check_liveness()

    def _check_failures(self, names: Iterable[str] | None = None) -> None:
        for name in sorted(self.servers if names is None else names):
            failure = self.servers[name].failure
            if failure is not None:
                self.monitor.fail(f"{name!r} stopped itself, a bug in trioraft: {failure}")

    async def _monitor_loop(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.check()


@asynccontextmanager
async def open_cluster(
    machine: Callable[..., Any],
    names_or_count: int | Iterable[str],
    *,
    seed: int,
    init_arg: Any = _MISSING,
    network: MemoryNetwork | None = None,
    check_interval: float | None = 0.05,
    sync_latency: tuple[float, float] | None = None,
    **server_options: Any,
) -> AsyncIterator[Cluster]:
    """Start a cluster of ``machine`` servers and yield a :class:`Cluster`.

    ``names_or_count`` is a list of names, or a count (names ``s1``, ``s2``, ...). Every
    server gets ``initial_config`` = all names unless ``server_options`` says otherwise,
    and a seed derived from ``seed``; the network is ``MemoryNetwork(seed=seed)`` unless
    given. Raft's invariants are checked as the cluster runs (every ``check_interval``
    seconds, and at every role change and apply). Each server gets a
    :class:`~trioraft.MemoryStorage` whose syncs take ``sync_latency`` (see
    :attr:`Cluster.sync_latency`). Leaving the block stops everything.
    """
    if isinstance(names_or_count, (str, bytes)):
        raise ValueError(
            "open_cluster takes a list of server names or a count, not the single string "
            f"{names_or_count!r} (write [{names_or_count!r}])"
        )
    if check_interval is not None:
        check_seconds("check_interval", check_interval)
    if isinstance(names_or_count, int):
        if names_or_count < 1:
            raise ValueError(f"a cluster needs at least one server, got {names_or_count}")
        names = [f"s{i}" for i in range(1, names_or_count + 1)]
    else:
        names = list(names_or_count)
    if len(set(names)) != len(names):
        raise ValueError(f"server names must be unique: {names}")
    if network is not None and not isinstance(network, MemoryNetwork):
        raise TypeError(
            f"network must be a trioraft.MemoryNetwork or None, got {type(network).__qualname__}"
        )
    net = network if network is not None else MemoryNetwork(seed=seed)
    monitor = InvariantMonitor(context=f"seed={seed}")
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, machine, init_arg, names, seed, net, monitor, server_options)
        cluster.sync_latency = sync_latency
        for name in names:
            await cluster.start(name)
        if check_interval is not None:
            nursery.start_soon(cluster._monitor_loop, check_interval)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()


def members_of(status: Status) -> frozenset[str]:
    """Every member of the configuration ``status`` reports: voters, learners, and while
    joint the outgoing voters too (they are members until C_new is in force)."""
    return status.voters | status.learners | (status.joint_voters or frozenset())


def _audited(factory: Callable[..., Any], monitor: InvariantMonitor, name: str, *args: Any) -> Any:
    """Make a state machine whose reads are checked not to change its state."""
    machine = factory(*args)
    read = getattr(machine, "read", None)
    if read is None:
        return machine

    def audited_read(query: Any) -> Any:
        before = _state_of(machine)
        result = read(query)
        after = _state_of(machine)
        if before is not _UNKNOWN and after is not _UNKNOWN and not _same(before, after):
            monitor.fail(
                f"read({query!r}) changed the state of {name!r}'s state machine: reads must "
                f"not change state (before: {before!r}, after: {after!r})"
            )
        return result

    # With __slots__ or a frozen class, reads go unchecked.
    with contextlib.suppress(AttributeError, TypeError):
        machine.read = audited_read
    return machine


_UNKNOWN: Any = object()


def _state_of(machine: Any) -> Any:
    """A deep copy of the machine's state (its snapshot if it has one), or _UNKNOWN."""
    try:
        if type(machine).snapshot is not StateMachine.snapshot:
            return copy.deepcopy(machine.snapshot())
    except Exception:
        pass
    try:
        state = {k: v for k, v in vars(machine).items() if k != "read"}
        copied = copy.deepcopy(state)
    except Exception:
        return _UNKNOWN
    return copied if _same(copied, state) else _UNKNOWN
