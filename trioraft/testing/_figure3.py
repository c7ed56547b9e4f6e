"""Raft's safety properties (Figure 3 of the Raft paper), over nodes' state.

One set of checks, shared by :class:`~trioraft.testing.InvariantMonitor` (running
servers) and the pure-core tests (nodes driven by hand): give :class:`Figure3` the
leaders it sees and the nodes' logs as a run goes, and it reports the first violation
through its ``fail`` callback.

* **Election Safety**: at most one leader per term (§5.2).
* **Leader Append-Only**: a leader never overwrites or deletes entries in its log; it
  only appends (§5.3).
* **Log Matching**: if two logs hold an entry with the same index and term, they are
  identical in all entries up to that index (§5.3).
* **Leader Completeness**: an entry committed in a term is in the log of every leader of
  a later term (§5.4).
* **State Machine Safety**: no two servers commit (so apply) different entries at one
  index (§5.4.3).
* **Membership Safety** (dissertation §4.1, §4.3; the safety of membership changes
  rests on it): each committed configuration after another changes at most one voter,
  or enters the joint configuration C_old,new from C_old, or leaves it for one of its
  two voter sets. So no two configurations in a row have disjoint majorities.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from typing import Any

from .._core.log import RaftLog
from .._core.messages import Config, Entry, EntryKind
from .._core.node import RaftNode

__all__ = ["Figure3"]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return a is b


def _same_entry(a: Entry, b: Entry) -> bool:
    return a.term == b.term and a.kind is b.kind and _same(a.data, b.data)


class Figure3:
    """The state the checks keep over a whole run, and the checks."""

    def __init__(self, fail: Callable[[str], None]) -> None:
        self._fail = fail
        #: term -> the server that led it.
        self.leaders: dict[int, str] = {}
        #: index -> (the committed entry, the lowest term any server was in when it
        #: reported it committed): leaders of that term and later ones must hold it.
        self.committed: dict[int, tuple[Entry, int]] = {}
        #: The indexes of :attr:`committed`, in order (a leader's log holds only the
        #: newest of them: the rest are in its snapshot).
        self._committed_indexes: list[int] = []
        #: index -> the configuration committed there (Membership Safety).
        self.configs: dict[int, Config] = {}
        #: Pairs of configurations next to each other with entries between them not seen
        #: committed yet: compared once they are.
        self._gaps: set[tuple[int, int]] = set()
        self._recorded: dict[str, int] = {}  # per server: commit index already recorded
        #: (server, term) -> (index, term) of the last entry its log held as leader.
        self._led_to: dict[tuple[str, int], tuple[int, int]] = {}

    def leader(self, name: str, term: int) -> None:
        """``name`` leads ``term`` (Election Safety)."""
        other = self.leaders.setdefault(term, name)
        if other != name:
            self._fail(f"Election Safety violated: {other!r} and {name!r} both led term {term}")

    def commits(self, name: str, node: RaftNode) -> None:
        """Record what ``node`` (of server ``name``) knows committed (State Machine Safety:
        the same entry everywhere at each committed index)."""
        log, term_now, commit = node.log, node.term, node.commit_index
        start = max(log.first_index, self._recorded.get(name, 0) + 1)
        self._recorded[name] = max(commit, self._recorded.get(name, 0))
        for index in range(start, min(commit, log.last_index) + 1):
            entry = log.entry(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = (entry, term_now)
                insort(self._committed_indexes, index)
                if entry.kind is EntryKind.CONFIG:
                    self._config_committed(index, entry.data)
                elif self._gaps:
                    for old, new in [g for g in self._gaps if g[0] < index < g[1]]:
                        self._config_pair(old, new)
            elif not _same_entry(known[0], entry):
                self._fail(
                    f"State Machine Safety violated: {name!r} committed {entry} at index "
                    f"{index}, another server committed {known[0]}"
                )
            elif term_now < known[1]:
                self.committed[index] = (known[0], term_now)

    def _config_committed(self, index: int, data: object) -> None:
        """Membership Safety: the configuration committed at ``index`` against the
        committed ones just before and after it."""
        if isinstance(data, list):  # as a store or the wire holds it
            data = Config.from_list(data)
        if not isinstance(data, Config):
            return
        self.configs[index] = data
        self._gaps = {(old, new) for old, new in self._gaps if not old < index < new}
        before = max((i for i in self.configs if i < index), default=None)
        after = min((i for i in self.configs if i > index), default=None)
        if before is not None:
            self._config_pair(before, index)
        if after is not None:
            self._config_pair(index, after)

    def _config_pair(self, old: int, new: int) -> None:
        """Compare the configurations committed at ``old`` and ``new`` (next to each other
        among those seen) once every entry between them was seen committed, so that no
        configuration between them went unseen; until then, keep the pair for later."""
        if not all(i in self.committed for i in range(old + 1, new)):
            self._gaps.add((old, new))
            return
        self._gaps.discard((old, new))
        trouble = membership_step(self.configs[old], self.configs[new])
        if trouble is not None:
            self._fail(
                f"Membership Safety violated: the configuration committed at index "
                f"{new} ({_voters(self.configs[new])}) {trouble} (the configuration "
                f"committed before it, at index {old}: {_voters(self.configs[old])})"
            )

    def log_matching(self, a: str, node_a: RaftNode, b: str, node_b: RaftNode) -> None:
        """Log Matching between two nodes' logs. Committed prefixes are compared through
        :meth:`commits`; here only above the lower of the two commit indexes."""
        la, lb = node_a.log, node_b.log
        low = max(la.first_index, lb.first_index, min(node_a.commit_index, node_b.commit_index) + 1)
        index = min(la.last_index, lb.last_index)
        while index >= low and la.term_at(index) != lb.term_at(index):
            index -= 1
        for i in range(index, low - 1, -1):
            ea, eb = la.entry(i), lb.entry(i)
            if not _same_entry(ea, eb):
                self._fail(
                    f"Log Matching violated between {a!r} and {b!r}: they agree at index "
                    f"{index} (term {la.term_at(index)}) but differ at index {i}: {ea} vs {eb}"
                )

    def leader_completeness(self, name: str, leader: RaftNode) -> None:
        """A leader holds every entry committed in its term or earlier ones (those it
        still holds as entries: compacted ones are in its snapshot)."""
        log: RaftLog = leader.log
        term = leader.term
        committed, indexes = self.committed, self._committed_indexes
        for position in range(bisect_left(indexes, log.first_index), len(indexes)):
            index = indexes[position]
            entry, seen_in_term = committed[index]
            if seen_in_term > term:
                continue
            if index > log.last_index or not _same_entry(log.entry(index), entry):
                self._fail(
                    f"Leader Completeness violated: {name!r}, leader of term {term}, lacks "
                    f"entry {index} ({entry}) committed by term {seen_in_term}"
                )

    def append_only(self, name: str, leader: RaftNode) -> None:
        """Leader Append-Only: since this leader was last seen (in the same term), its
        log still holds the entry that was last, and no fewer entries."""
        log = leader.log
        key = (name, leader.term)
        last = self._led_to.get(key)
        if last is not None:
            index, term = last
            held = log.term_at(index) if index >= log.snapshot_index else term
            if log.last_index < index or held != term:
                self._fail(
                    f"Leader Append-Only violated: {name!r}, leader of term {leader.term}, "
                    f"held entry {index} of term {term} and now holds "
                    f"{'nothing there' if held is None else f'term {held}'} "
                    f"(last index {log.last_index})"
                )
        self._led_to[key] = (log.last_index, log.last_term)

    def check(self, nodes: Iterable[tuple[str, RaftNode]]) -> None:
        """Every check over the named nodes, now."""
        named = list(nodes)
        for name, node in named:
            self.commits(name, node)
        for i, (a, node_a) in enumerate(named):
            for b, node_b in named[i + 1 :]:
                self.log_matching(a, node_a, b, node_b)
        for name, node in named:
            if node.role.value == "leader":
                self.leader(name, node.term)
                self.append_only(name, node)
                self.leader_completeness(name, node)


def membership_step(old: Config, new: Config) -> str | None:
    """What is wrong with configuration ``new`` following ``old`` directly (``None``:
    nothing): more than one voter changed without a joint configuration, a joint
    configuration entered from other voters than its outgoing ones, left for voters of
    neither of its sets, or followed by another joint configuration."""
    old_voters, new_voters = set(old.voters), set(new.voters)
    if old.outgoing is None and new.outgoing is None:
        if len(old_voters ^ new_voters) > 1:
            return "changes more than one voter without a joint configuration"
    elif old.outgoing is None:
        if set(new.outgoing or ()) != old_voters:
            return "is joint, with outgoing voters other than the voters before it"
    elif new.outgoing is None:
        if new_voters not in (old_voters, set(old.outgoing)):
            return "leaves a joint configuration for voters of neither of its sets"
    elif (new_voters, set(new.outgoing)) != (old_voters, set(old.outgoing)):
        return "follows another joint configuration directly"
    return None


def _voters(config: Config) -> str:
    voters = " ".join(config.voters)
    if config.outgoing is None:
        return f"voters {voters}"
    return f"joint: voters {voters}, outgoing {' '.join(config.outgoing)}"
