"""Raft's safety properties, checked while a cluster runs."""

from __future__ import annotations

import collections
import copy
from collections.abc import Iterable
from typing import Any

from .._core.node import Role
from .._server import Server, TraceEvent
from ._figure3 import Figure3

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
        #: Raft's safety properties (Figure 3), over the watched servers' nodes.
        self.figure3 = Figure3(self.fail)
        #: index -> term of the entry applied there (State Machine Safety, §5.4.3).
        self.applied: dict[int, int] = {}
        self.events: collections.deque[TraceEvent] = collections.deque(maxlen=history)
        self._servers: dict[str, Server] = {}
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
            self.figure3.leader(event.server, data["term"])
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
                self.figure3.commits(server.name, server._node)

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
        self.figure3.check((s.name, s._node) for s in live)


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
