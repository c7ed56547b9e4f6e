"""Clusters of servers in one process, for tests: start, crash, restart, fault, check."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._core.node import Role
from .._errors import NotLeader, OutcomeUnknown, ServerStopped
from .._network.memory import MemoryNetwork
from .._server import Server, TraceEvent, start_server
from .._storage import MemoryStorage
from ._invariants import InvariantMonitor

__all__ = ["Cluster", "open_cluster"]

_MISSING: Any = object()


def derive_seed(*parts: object) -> int:
    """A 32-bit seed derived from ``parts``, the same in every process."""
    return random.Random("/".join(map(str, parts))).getrandbits(32)


class Cluster:
    """Servers of one state machine on one :class:`~trioraft.MemoryNetwork`.

    Made by :func:`open_cluster`. ``servers`` holds the running servers by name; a crashed
    server's storage stays in ``storages`` so :meth:`restart` brings it back with all it
    had persisted. Every server reports to ``monitor``, an
    :class:`~trioraft.testing.InvariantMonitor`.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        machine: Callable[..., Any],
        init_arg: Any,
        names: list[str],
        seed: int,
        network: MemoryNetwork,
        monitor: InvariantMonitor,
        options: dict[str, Any],
    ) -> None:
        self.nursery = nursery
        self.machine = machine
        self.init_arg = init_arg
        self.names = names
        self.seed = seed
        self.network = network
        self.monitor = monitor
        self.options = options
        self.servers: dict[str, Server] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self._incarnation: dict[str, int] = {}
        self._tracers: list[Callable[[TraceEvent], None]] = [monitor.observe]

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

    async def start(self, name: str, **options: Any) -> Server:
        """Start server ``name`` (with the cluster's options, overridden by ``options``),
        from its stored state if it ran before."""
        if name in self.servers:
            raise ValueError(f"server {name!r} is already running")
        incarnation = self._incarnation.get(name, 0)
        self._incarnation[name] = incarnation + 1
        merged = {"initial_config": self.names, **self.options, **options}
        merged.setdefault("seed", derive_seed(self.seed, name, incarnation))
        storage = self.storages.setdefault(name, merged.pop("storage", None) or MemoryStorage())
        args = () if self.init_arg is _MISSING else (self.init_arg,)
        server = await start_server(
            self.nursery,
            self.machine,
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
        server = self.servers.pop(name)
        self._trace(TraceEvent(trio.current_time(), name, "crash", {}))
        await server.stop()

    async def restart(self, name: str, **options: Any) -> Server:
        """Start again a crashed server from its storage (crash-restart)."""
        if name not in self.storages:
            raise ValueError(f"server {name!r} never ran in this cluster")
        self._trace(TraceEvent(trio.current_time(), name, "restart", {}))
        return await self.start(name, **options)

    async def recover(self) -> list[str]:
        """Undo every fault: heal the network, clear loss and delay, and restart every
        crashed server from its storage. Returns the names restarted."""
        self.network.heal()
        self.network.set_loss(0)
        self.network.set_delay(0, 0)
        crashed = sorted(set(self.storages) - set(self.servers))
        for name in crashed:
            await self.restart(name)
        return crashed

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

    def leader(self) -> Server | None:
        """The running server that leads the newest term, if any."""
        leaders = [s for s in self.servers.values() if s.status().role is Role.LEADER]
        return max(leaders, key=lambda s: s.status().term, default=None)

    async def wait_for_leader(self, *, exclude: Iterable[str] = (), poll: float = 0.01) -> Server:
        """Wait for a stable leader: it has committed an entry of its term, and every
        running member it can reach knows it as leader of that term. Servers named in
        ``exclude`` do not count (for example a deposed leader that is cut off and still
        believes it leads). Bound it with ``trio.fail_after``."""
        excluded = set(exclude)
        while True:
            leaders = [
                s
                for s in self.servers.values()
                if s.name not in excluded and s.status().role is Role.LEADER
            ]
            leader = max(leaders, key=lambda s: s.status().term, default=None)
            if leader is not None and self._stable(leader):
                return leader
            await trio.sleep(poll)

    def _stable(self, leader: Server) -> bool:
        status = leader.status()
        if leader.storage.log.term_at(status.commit_index) != status.term:
            return False  # its no-op has not committed yet
        members = status.voters | status.learners
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
        """Check the Raft invariants over the running servers now."""
        self.monitor.check(self.servers.values())

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
    **server_options: Any,
) -> AsyncIterator[Cluster]:
    """Start a cluster of ``machine`` servers and yield a :class:`Cluster`.

    ``names_or_count`` is a list of names, or a count (names ``s1``, ``s2``, ...). Every
    server gets ``initial_config`` = all names unless ``server_options`` says otherwise,
    and a seed derived from ``seed``; the network is ``MemoryNetwork(seed=seed)`` unless
    given. Raft's invariants are checked as the cluster runs (every ``check_interval``
    seconds, and at every role change and apply). Leaving the block stops everything.
    """
    if isinstance(names_or_count, int):
        if names_or_count < 1:
            raise ValueError(f"a cluster needs at least one server, got {names_or_count}")
        names = [f"s{i}" for i in range(1, names_or_count + 1)]
    else:
        names = list(names_or_count)
    if len(set(names)) != len(names):
        raise ValueError(f"server names must be unique: {names}")
    net = network if network is not None else MemoryNetwork(seed=seed)
    monitor = InvariantMonitor(context=f"seed={seed}")
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, machine, init_arg, names, seed, net, monitor, server_options)
        for name in names:
            await cluster.start(name)
        if check_interval is not None:
            nursery.start_soon(cluster._monitor_loop, check_interval)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
