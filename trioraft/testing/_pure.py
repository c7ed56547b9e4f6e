"""Pure-core simulation: Raft nodes driven by hand, without trio, tasks or clocks.

:class:`PureCluster` holds :class:`~trioraft._core.RaftNode` objects, one
:class:`~trioraft.MemoryStorage` each, and the messages in flight between them. It does
for each node what the runtime does (the Ready/Advance cycle: persist, send, apply,
advance), and lets a test deliver, drop, hold, duplicate and reorder messages and move a
float clock by hand. The rule tests, the stateful Hypothesis test and anything that
needs to check a rule of the algorithm exhaustively build on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from .._codec import decode_value, encode_value
from .._core.messages import AppendEntries, Config, Entry, EntryKind, Heartbeat, Message
from .._core.node import RaftNode, Role
from .._core.options import CoreOptions
from .._core.ready import HardState, PersistedState, Ready
from .._storage.base import stage
from .._storage.memory import MemoryStorage

__all__ = [
    "Drop",
    "PureCluster",
    "command",
    "heartbeat_to",
    "isolate",
    "log_entries",
    "log_terms",
    "make_node",
    "persisted",
    "pump",
    "silence",
    "storage_of",
    "stored_log",
    "take",
]

#: A filter over messages: true for those to drop (or hold).
Drop = Callable[[Message], bool]


class _Node(RaftNode):
    """The nodes of this harness: a node that takes a test's stand-in for one of its
    methods (``node.step = ...``), which a compiled :class:`RaftNode` refuses; the same
    node otherwise."""


def command(index: int, term: int) -> Entry:
    """A command entry whose data is a function of (index, term), so that two logs that
    hold "the same" entry compare equal."""
    return Entry(term, index, EntryKind.COMMAND, ("cmd", index, term))


def persisted(
    terms: Iterable[int] = (),
    *,
    term: int = 0,
    commit: int = 0,
    voted_for: str | None = None,
    config: Config | None = None,
) -> PersistedState:
    """A stored state whose log has one command entry per item of ``terms`` (its term)."""
    terms = list(terms)
    entries = tuple(command(i, t) for i, t in enumerate(terms, start=1))
    hard = HardState(max([term, *terms]), voted_for, commit, "", config)
    return PersistedState(hard_state=hard, entries=entries)


def persist(storage: MemoryStorage, rd: Ready) -> None:
    """Stage what ``rd`` asks to persist and make it durable (as the runtime does)."""
    stage(storage, rd)
    storage.sync_nowait()


def _ready(node: RaftNode) -> Ready:
    """``node.ready()``, checking that ``needs_sync()`` announced its ``sync`` flag (the
    runtime carries a Ready out at once, without a sync, on that word)."""
    needs = node.needs_sync()
    rd = node.ready()
    if rd.sync != needs:
        raise AssertionError(f"{node.name}: needs_sync() said {needs}, the Ready says {rd.sync}")
    return rd


def pump(node: RaftNode, storage: MemoryStorage | None = None) -> list[Ready]:
    """Run ``node``'s Ready/Advance cycle until it has nothing more; persist into
    ``storage`` if given. Returns the Readys, in order."""
    readies: list[Ready] = []
    for _ in range(10_000):
        if not node.has_ready():
            return readies
        rd = _ready(node)
        if storage is not None:
            persist(storage, rd)
        node.advance(rd)
        readies.append(rd)
    raise AssertionError(f"{node.name}: endless Readys")


class PureCluster:
    """Nodes of one cluster and the messages in flight between them, delivered by hand.

    ``applied[name]`` lists the entries each node handed out to apply, in order;
    ``reads[name]`` the ``(ticket, read index)`` pairs of confirmed reads and
    ``failed_reads[name]`` the tickets of failed ones. Each node's "state machine" is
    ``machines[name]``, the list of the commands it applied; with ``compaction=True`` the
    nodes snapshot it when asked (``snapshot_threshold``) and restore it from snapshots
    they install, as the runtime does with a real state machine.
    """

    def __init__(
        self,
        names: Iterable[str] = ("a", "b", "c"),
        *,
        voters: Iterable[str] | None = None,
        logs: dict[str, list[int]] | None = None,
        terms: dict[str, int] | None = None,
        seed: int = 0,
        compaction: bool = False,
        **options: Any,
    ) -> None:
        self.names = tuple(names)
        self.voters = tuple(voters) if voters is not None else self.names
        self.options = CoreOptions(initial_config=self.voters, **options)
        self.now = 0.0
        self.storages: dict[str, MemoryStorage] = {}
        self.nodes: dict[str, RaftNode] = {}
        self.inflight: list[Message] = []
        self.delivered: list[Message] = []
        self.applied: dict[str, list[Entry]] = {}
        self.reads: dict[str, list[tuple[int, int]]] = {}
        self.failed_reads: dict[str, list[int]] = {}
        self.machines: dict[str, list[Any]] = {}
        self.compaction = compaction
        logs = logs or {}
        terms = terms or {}
        for i, name in enumerate(self.names):
            storage = MemoryStorage()
            state = persisted(logs.get(name, ()), term=terms.get(name, 0))
            persist_state(storage, state)
            self.storages[name] = storage
            self.nodes[name] = self._node(name, random.Random(seed * 100 + i))

    def _node(self, name: str, rng: random.Random) -> RaftNode:
        state = self.storages[name].state()
        node = _Node(name, self.options, rng, self.now, state, compaction=self.compaction)
        _OWNERS[id(node)] = (node, self.storages[name], self)
        self.applied[name] = []
        self.machines[name] = [] if state.snapshot is None else decode_value(state.snapshot.data)
        self.reads.setdefault(name, [])
        self.failed_reads.setdefault(name, [])
        return node

    def __getitem__(self, name: str) -> RaftNode:
        return self.nodes[name]

    def restart(self, name: str, seed: int = 99) -> RaftNode:
        """Crash ``name`` and bring it back from its storage; its in-flight messages are lost."""
        self.inflight = [m for m in self.inflight if m.dst != name]
        node = self._node(name, random.Random(seed))
        self.nodes[name] = node
        return node

    def take(self, name: str) -> list[Message]:
        """Run ``name``'s Ready cycle; return the messages it sends."""
        node, storage = self.nodes[name], self.storages[name]
        messages: list[Message] = []
        for _ in range(10_000):
            if not node.has_ready():
                return messages
            rd = _ready(node)
            persist(storage, rd)
            messages.extend(rd.messages)
            self._apply(name, rd)
            node.advance(rd)
        raise AssertionError(f"{name}: endless Readys")

    def _apply(self, name: str, rd: Ready) -> None:
        machine = self.machines[name]
        if rd.snapshot is not None and rd.restore:
            machine[:] = decode_value(rd.snapshot.data)
        for entry in rd.committed:
            if entry.kind is EntryKind.COMMAND:
                machine.append(entry.data)
        self.applied[name].extend(rd.committed)
        self.reads[name].extend(rd.reads)
        self.failed_reads[name].extend(rd.failed_reads)
        if rd.take_snapshot:
            self.nodes[name].snapshot_taken(rd.committed[-1].index, encode_value(machine))

    def collect(self, heartbeat: bool = False) -> None:
        """Move what every node has to send into flight (with ``heartbeat``, leaders send
        a heartbeat to every follower first)."""
        for name, node in self.nodes.items():
            if heartbeat and node.role is Role.LEADER:
                node.heartbeat_now()
            self.inflight.extend(self.take(name))

    def deliver(
        self,
        drop: Drop | None = None,
        *,
        hold: Drop | None = None,
        heartbeat: bool = False,
        limit: int = 10_000,
    ) -> int:
        """Deliver every message (and every message that causes) until none is left.

        Messages for which ``drop`` returns true are lost; those for which ``hold``
        returns true stay in flight (for a later call). Returns how many were delivered.
        """
        self.collect(heartbeat)
        held: list[Message] = []
        count = 0
        while self.inflight:
            m = self.inflight.pop(0)
            if drop is not None and drop(m):
                continue
            if hold is not None and hold(m):
                held.append(m)
                continue
            self.nodes[m.dst].step(m, self.now)
            self.delivered.append(m)
            count += 1
            assert count < limit, "message storm"
            self.collect()
        self.inflight = held
        return count

    def run(self, seconds: float, drop: Drop | None = None) -> None:
        """Let ``seconds`` pass: every timer fires when due (each node ticks), and every
        message is delivered at once (except those ``drop`` loses)."""
        until = self.now + seconds
        while True:
            due = min(node.deadline for node in self.nodes.values())
            if due > until:
                break
            self.now = max(self.now, due)
            for node in self.nodes.values():
                if node.deadline <= self.now:
                    node.tick(self.now)
            self.deliver(drop)
        self.now = until

    def step_one(self, m: Message) -> None:
        """Deliver one message, and put what it causes in flight."""
        self.nodes[m.dst].step(m, self.now)
        self.collect()

    def elect(self, name: str, drop: Drop | None = None) -> RaftNode:
        """Make ``name`` leader (a forced election), and let everything settle."""
        self.nodes[name].trigger_election(self.now)
        self.deliver(drop)
        node = self.nodes[name]
        assert node.role is Role.LEADER, f"{name} did not win: {node.role}"
        return node

    def leaders(self) -> list[str]:
        """Names of the nodes that believe they lead."""
        return [n for n, node in self.nodes.items() if node.role is Role.LEADER]


def persist_state(storage: MemoryStorage, state: PersistedState) -> None:
    """Make ``storage`` hold ``state`` (for tests that start from a given log)."""
    if state.entries:
        storage.append(state.entries)
    storage.set_hard_state(state.hard_state)
    storage.sync_nowait()


#: Nodes made here, by id: the storage their Readys are persisted into, and their
#: cluster if any, so that ``take(node)`` does what the runtime would.
_OWNERS: dict[int, tuple[RaftNode, MemoryStorage, PureCluster | None]] = {}


def make_node(
    name: str,
    voters: Iterable[str] = ("a", "b", "c"),
    *,
    storage: PersistedState | None = None,
    seed: int = 0,
    now: float = 0.0,
    **options: Any,
) -> RaftNode:
    """A lone node (voters ``voters``), started from ``storage`` if given."""
    opts = CoreOptions(initial_config=tuple(voters), **options)
    store = MemoryStorage()
    if storage is not None:
        persist_state(store, storage)
    node = _Node(name, opts, random.Random(seed), now, store.state(), compaction=False)
    _OWNERS[id(node)] = (node, store, None)
    return node


def storage_of(node: RaftNode) -> MemoryStorage:
    """The storage a node made here persists into."""
    owner = _OWNERS.get(id(node))
    assert owner is not None and owner[0] is node, "not a node of this harness"
    return owner[1]


def take(node: RaftNode) -> list[Message]:
    """Carry out the node's Readys as the runtime would; return what it sends."""
    owner = _OWNERS.get(id(node))
    if owner is not None and owner[0] is node and owner[2] is not None:
        return owner[2].take(node.name)
    storage = owner[1] if owner is not None and owner[0] is node else None
    return [m for rd in pump(node, storage) for m in rd.messages]


def heartbeat_to(node: RaftNode, peer: str) -> Message | None:
    """The heartbeat (or entries) a leader sends ``peer`` when asked to now."""
    node.heartbeat_now()
    out = [m for m in take(node) if m.dst == peer and isinstance(m, (Heartbeat, AppendEntries))]
    return out[0] if out else None


def silence(node: RaftNode, until: float) -> float:
    """Let ``node``'s timer fire up to ``until`` while nobody answers (what it sends is
    lost); returns ``until``."""
    while node.deadline <= until:
        node.tick(node.deadline)
        take(node)
    return until


def isolate(*names: str) -> Drop:
    """A filter losing every message to or from any of ``names``."""
    return lambda m: m.src in names or m.dst in names


def log_entries(node: RaftNode) -> list[Entry]:
    """The entries a node holds, in order."""
    return node.log.slice(node.log.first_index, node.log.last_index)


def log_terms(node: RaftNode) -> list[int]:
    """The terms of the entries a node holds, in order."""
    return [e.term for e in log_entries(node)]


def stored_log(node: RaftNode) -> list[Entry]:
    """The entries a node made here has made durable, in order."""
    log = storage_of(node).log
    return log.slice(log.first_index, log.last_index)
