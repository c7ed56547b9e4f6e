"""Client sessions (dissertation §6.3, as LogCabin keeps them): exactly-once writes.

A client opens a session (a log entry; its index is the client's id) and numbers its
writes. Each write entry carries the client's id, the write's number, the lowest number
the client has not yet seen answered, and a time stamped by the leader. Every server
applies the same entries in the same order, so every server keeps the same table:

* a write whose number was applied before is not applied again: its kept reply is
  returned (so a retry after a lost reply or an unknown outcome is safe);
* replies below the lowest unanswered number are dropped (the client has them), and
  the session keeps the highest such number it has seen: a write below it (a late
  duplicate from the network) is refused with :exc:`~trioraft.SessionExpired`, never
  applied again, whatever lowest number it carries itself;
* a session with no activity for ``timeout`` seconds of *stamped* time expires, at the
  same log position on every server; a write on it is refused with
  :exc:`~trioraft.SessionExpired` and not applied.

The table is part of every snapshot (``snapshot()`` / ``restore()``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from ._errors import SessionExpired

__all__ = ["ClusterClock", "Sessions", "describe_error", "error_from"]


class _Session:
    __slots__ = ("last_active", "lowest", "replies")

    def __init__(self, last_active: float, lowest: int = 0) -> None:
        self.last_active = last_active
        #: The highest "lowest unanswered number" any of its writes carried: every write
        #: below it was answered and acknowledged (LogCabin's firstOutstandingRPC). It
        #: only grows: a late duplicate carries an older, lower one.
        self.lowest = lowest
        #: seq -> (value, error): the replies not yet acknowledged.
        self.replies: dict[int, tuple[Any, BaseException | None]] = {}


class Sessions:
    """The replicated table of client sessions; changed only by applying entries."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._table: dict[int, _Session] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, client: int) -> bool:
        return client in self._table

    def expire(self, now: float) -> list[int]:
        """Forget the sessions idle for longer than the timeout at stamped time ``now``;
        return their ids, in order."""
        limit = now - self.timeout
        expired = [c for c, s in sorted(self._table.items()) if s.last_active < limit]
        for client in expired:
            del self._table[client]
        return expired

    def open(self, client: int, now: float) -> int:
        """Apply the entry (at index ``client``) opening a session."""
        self.expire(now)
        self._table[client] = _Session(now)
        return client

    def apply(
        self,
        client: int,
        seq: int,
        lowest: int,
        now: float,
        run: Callable[[], tuple[Any, BaseException | None]],
    ) -> tuple[Any, BaseException | None]:
        """Apply a client's numbered command: ``run()`` it at most once; return its reply
        (``(value, error)``), the kept one for a duplicate."""
        self.expire(now)
        session = self._table.get(client)
        if session is None:
            return None, SessionExpired(
                f"session {client} expired (no activity for {self.timeout:g} s) or never "
                "existed: the command was not applied"
            )
        session.last_active = now
        if lowest > session.lowest:
            session.lowest = lowest
            for old in [s for s in session.replies if s < lowest]:
                del session.replies[old]
        kept = session.replies.get(seq)
        if kept is not None:
            return kept
        if seq < session.lowest:
            # Answered and acknowledged already (its reply was dropped when a later write
            # said so): a late duplicate, whatever lowest number it carries itself. Not
            # applied again.
            return None, SessionExpired(f"write {seq} of session {client} was answered already")
        reply = run()
        session.replies[seq] = reply
        return reply

    def snapshot(self) -> list[Any]:
        """The table as msgpack values (for snapshots)."""
        return [
            [
                client,
                s.last_active,
                [[seq, v, describe_error(e)] for seq, (v, e) in s.replies.items()],
                s.lowest,
            ]
            for client, s in sorted(self._table.items())
        ]

    def restore(self, data: list[Any]) -> None:
        """Replace the table with a :meth:`snapshot`."""
        self._table = {}
        for client, last_active, replies, *rest in data:
            # Snapshots written before the watermark was kept have no fifth field; the
            # next write of the session sets it again.
            lowest = rest[0] if rest else 0
            session = _Session(last_active, lowest)
            for seq, value, error in replies:
                session.replies[seq] = (value, error_from(error))
            self._table[client] = session


def describe_error(error: BaseException | None) -> list[str] | None:
    """An exception as msgpack values: ``[type name, text]``."""
    if error is None:
        return None
    cls = type(error)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return [name, str(error)]


def error_from(description: list[str] | None) -> BaseException | None:
    """The exception a :func:`describe_error` describes: the built-in exception of that
    name, else a :exc:`~trioraft.MachineError`."""
    if description is None:
        return None
    from ._errors import MachineError

    name, text = description
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(text)
    return MachineError(name, text)


class ClusterClock:
    """Time as the leaders stamp it into the log (dissertation §6.3; LogCabin's cluster
    clock): the latest stamp applied, plus the time this server's clock has run since
    it applied it. It starts at 0, not at this server's clock (Trio's clock of each
    process starts at a random offset, hours apart), and a leader restarts it from the
    latest stamp when its term begins (:meth:`rebase`), so time during which no leader
    ran (the cluster down, no quorum) does not count. So it may run slow, and sessions
    expire late, never early: an early expiry would report an applied write as not
    applied."""

    def __init__(self) -> None:
        self._stamp = 0.0
        self._local: float | None = None  # set at the first reading

    def now(self, local: float) -> float:
        """The cluster time now, ``local`` being this server's clock."""
        if self._local is None:
            self._local = local
        return self._stamp + max(0.0, local - self._local)

    def observe(self, stamp: float, local: float) -> None:
        """An entry stamped ``stamp`` was applied at local time ``local``: time runs on
        from the newest stamp, whatever this server's clock ran meanwhile."""
        if stamp >= self._stamp:
            self._stamp, self._local = stamp, local

    def rebase(self, local: float) -> None:
        """A term of this server as leader begins: run on from the latest stamp seen,
        not counting the time since it was applied (no leader may have run)."""
        self._local = local
