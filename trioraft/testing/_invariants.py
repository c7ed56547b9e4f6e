"""Raft's safety properties, checked while a cluster runs."""

from __future__ import annotations

import collections
import copy
import itertools
from collections.abc import Iterable
from typing import Any

from .._core.node import Role
from .._server import Server, TraceEvent

__all__ = ["InvariantMonitor", "InvariantViolation"]


class InvariantViolation(AssertionError):
    """A Raft safety property was violated. The message says which, and what led to it."""


class InvariantMonitor:
    """Checks election safety, log matching, leader completeness and state machine safety;
    also that commands stay the values they were when written (a state machine or a
    caller that mutates a command would silently diverge the replicas).

    Give :meth:`observe` to servers as their ``tracer`` (``open_cluster`` does this): role
    and apply events are checked the moment they happen. :meth:`check` compares the logs
    of the running servers; call it as often as you like (``open_cluster`` runs it
    periodically). A violation raises :class:`InvariantViolation` with ``context`` (for
    example the seed) and the most recent events.
    """

    def __init__(self, context: str = "", history: int = 40) -> None:
        self.context = context
        #: term -> the server that led it (Election Safety, §5.2).
        self.leaders: dict[int, str] = {}
        #: index -> term of the entry applied there (State Machine Safety, §5.4.3).
        self.applied: dict[int, int] = {}
        #: index -> (term of the committed entry, the lowest term any server was in when
        #: it reported it committed). Leaders of later terms must hold it (§5.4).
        self.committed: dict[int, tuple[int, int]] = {}
        self.events: collections.deque[TraceEvent] = collections.deque(maxlen=history)
        self._servers: dict[str, Server] = {}
        self._recorded: dict[str, int] = {}  # per server: commit index already recorded
        #: (index, term) -> a copy of the command as the leader's caller wrote it.
        self._written: dict[tuple[int, int], Any] = {}
        #: Every violation reported so far (a later :meth:`check` raises the first again,
        #: in case the code that got the exception swallowed it).
        self.violations: list[str] = []
        self.checks = 0

    def watch(self, server: Server) -> None:
        """Include ``server``'s log in :meth:`check` (replacing an earlier one of that name)."""
        self._servers[server.name] = server

    def fail(self, message: str) -> None:
        """Raise :class:`InvariantViolation` with the context and recent events."""
        lines = [message]
        if self.context:
            lines.append(f"context: {self.context}")
        lines.append("recent events:")
        lines.extend(
            f"  {e.time:10.4f} {e.server:>10} {e.kind:7} {dict(e.data)}" for e in self.events
        )
        text = "\n".join(lines)
        self.violations.append(text)
        raise InvariantViolation(text)

    def observe(self, event: TraceEvent) -> None:
        """Tracer callback: check what can be checked at once."""
        self.events.append(event)
        data = event.data
        if event.kind == "role" and data["role"] is Role.LEADER:
            term = data["term"]
            other = self.leaders.setdefault(term, event.server)
            if other != event.server:
                self.fail(
                    f"Election Safety violated: {other!r} and {event.server!r} both led term {term}"
                )
        elif event.kind == "apply":
            index, term = data["index"], data["term"]
            other_term = self.applied.setdefault(index, term)
            if other_term != term:
                self.fail(
                    f"State Machine Safety violated: {event.server!r} applied the entry of "
                    f"term {term} at index {index}, another server applied term {other_term}"
                )
            if (index, term) in self._written:
                self._check_command(event.server, index, term)
        elif event.kind == "propose":
            server = self._servers.get(event.server)
            if server is not None:
                command = server._node.log.entry(data["index"]).data
                self._written[data["index"], data["term"]] = _copy(command)
        elif event.kind == "commit":
            server = self._servers.get(event.server)
            if server is not None:
                self._record_commit(server, data["index"])

    def _record_commit(self, server: Server, commit: int) -> None:
        log = server._node.log
        term_now = server._node.term
        start = max(log.first_index, self._recorded.get(server.name, 0) + 1)
        if commit > self._recorded.get(server.name, 0):
            self._recorded[server.name] = commit
        for index in range(start, commit + 1):
            entry_term = log.term_at(index)
            if entry_term is None:
                continue
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = (entry_term, term_now)
            elif known[0] != entry_term:
                self.fail(
                    f"State Machine Safety violated: {server.name!r} committed term {entry_term} "
                    f"at index {index}, another server committed term {known[0]}"
                )
            elif term_now < known[1]:
                self.committed[index] = (entry_term, term_now)

    def _check_command(self, name: str, index: int, term: int) -> None:
        # Commands are handed to every replica by reference (in one process): one that
        # is mutated after it was written would be applied differently by each replica.
        server = self._servers.get(name)
        if server is None:
            return
        log = server._node.log
        if log.term_at(index) != term or index < log.first_index:
            return
        written = self._written[index, term]
        now = log.entry(index).data
        if written is not _UNCOPYABLE and not _same(written, now):
            self.fail(
                f"a command changed after it was written: {name!r} applied entry {index} "
                f"as {now!r}, but it was written as {written!r}. Commands must be values "
                "that nobody mutates: the state machine's write() and the caller must not "
                "change them (replicas would diverge)"
            )

    def check(self, servers: Iterable[Server] | None = None) -> None:
        """Compare the logs of ``servers`` (default: every watched server still running).
        Raises the first violation reported earlier, if any."""
        if self.violations:
            raise InvariantViolation(self.violations[0])
        self.checks += 1
        live = [
            s for s in (servers if servers is not None else self._servers.values()) if not s.stopped
        ]
        for server in live:
            self._record_commit(server, server._node.commit_index)
        for a, b in itertools.combinations(live, 2):
            self._check_log_matching(a, b)
        for server in live:
            if server.status().role is Role.LEADER:
                self._check_leader_completeness(server)

    def _check_log_matching(self, a: Server, b: Server) -> None:
        # Log Matching (§5.3): if two logs hold an entry with the same index and term,
        # the logs are identical in all entries up to that index.
        # Committed prefixes are compared entry by entry through ``committed``; here we
        # only need to look above the lower of the two commit indexes.
        la, lb = a._node.log, b._node.log
        low = max(
            la.first_index, lb.first_index, min(a._node.commit_index, b._node.commit_index) + 1
        )
        top = min(la.last_index, lb.last_index)
        index = top
        while index >= low and la.term_at(index) != lb.term_at(index):
            index -= 1
        for i in range(index, low - 1, -1):
            ea, eb = la.entry(i), lb.entry(i)
            if ea.term != eb.term or ea.kind is not eb.kind or not _same(ea.data, eb.data):
                self.fail(
                    f"Log Matching violated between {a.name!r} and {b.name!r}: they agree at "
                    f"index {index} (term {la.term_at(index)}) but differ at index {i}: "
                    f"{ea} vs {eb}"
                )

    def _check_leader_completeness(self, leader: Server) -> None:
        # Leader Completeness (§5.4): a leader holds every entry committed in earlier terms.
        log = leader._node.log
        term = leader._node.term
        for index, (entry_term, seen_in_term) in self.committed.items():
            if (
                seen_in_term < term
                and index >= log.first_index
                and log.term_at(index) != entry_term
            ):
                self.fail(
                    f"Leader Completeness violated: {leader.name!r}, leader of term {term}, "
                    f"lacks entry {index} (term {entry_term}) committed by term {seen_in_term}"
                )


class _Uncopyable:
    def __repr__(self) -> str:
        return "<uncopyable>"


_UNCOPYABLE: Any = _Uncopyable()


def _copy(value: Any) -> Any:
    """A copy of ``value`` to compare with it later, or _UNCOPYABLE when a copy would not
    tell (no deep copy, or equality by identity)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    try:
        copied = copy.deepcopy(value)
        if not _same(copied, value):
            return _UNCOPYABLE  # compared by identity: a copy is never equal
    except Exception:
        return _UNCOPYABLE
    return copied


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return a is b
