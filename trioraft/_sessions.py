"""Client sessions (dissertation §6.3, as LogCabin keeps them): exactly-once writes.

A client opens a session (a log entry; its index is the client's id) and numbers its
writes. Each write entry carries the client's id, the write's number, the lowest number
the client has not yet seen answered, and a time stamped by the leader. Every server
applies the same entries in the same order, so every server keeps the same table:

* a write whose number was applied before is not applied again: its kept reply is
  returned (so a retry after a lost reply or an unknown outcome is safe), provided it
  carries the same command; a write that reuses the number with another command is
  refused with :exc:`~trioraft.WriteNumberReused` (never answered with the first
  command's reply);
* replies below the lowest unanswered number are dropped (the client has them), and
  the session keeps the highest such number it has seen: a write below it (a late
  duplicate from the network) is refused with :exc:`~trioraft.SessionExpired`, never
  applied again, whatever lowest number it carries itself;
* a session with no activity for ``timeout`` seconds of *stamped* time expires, at the
  same log position on every server; a write on it is refused with
  :exc:`~trioraft.SessionExpired` and not applied. A session's last activity is the
  latest stamp of its entries (a maximum: it never moves back). Sessions are kept in a
  heap by last activity, so expiring costs O(log n) per entry, not a scan of the table.

The table is part of every snapshot (``snapshot()`` / ``restore()``).
"""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Callable
from itertools import compress
from operator import attrgetter
from typing import Any

from ._codec import encode_value
from ._errors import MachineError, SessionExpired, WriteNumberReused

__all__ = ["ClusterClock", "Sessions", "describe_error", "error_from"]


#: What :meth:`Sessions.apply` is given when its caller does not say which command it
#: applies (nothing to compare: a retry is answered with the kept reply).
_UNKNOWN: Any = object()


class _Session:
    __slots__ = ("commands", "last_active", "lowest", "replies")

    def __init__(self, last_active: float, lowest: int = 0) -> None:
        self.last_active = last_active
        #: The highest "lowest unanswered number" any of its writes carried: every write
        #: below it was answered and acknowledged (LogCabin's firstOutstandingRPC). It
        #: only grows: a late duplicate carries an older, lower one.
        self.lowest = lowest
        #: seq -> (value, error): the replies not yet acknowledged.
        self.replies: dict[int, tuple[Any, BaseException | None]] = {}
        #: seq -> the command each kept reply answers (a retry must carry the same).
        self.commands: dict[int, Any] = {}

    def forget_below(self, lowest: int) -> None:
        """The client has seen every reply below ``lowest``: drop them."""
        for old in [s for s in self.replies if s < lowest]:
            del self.replies[old]
            self.commands.pop(old, None)


def _same_command(kept: Any, command: Any) -> bool:
    """Whether a retry carries the command a kept reply answers (compared as values, and
    as msgpack bytes when they differ as values: NaN, for one)."""
    if kept is command or kept is _UNKNOWN or command is _UNKNOWN:
        return True
    try:
        if kept == command:
            return True
    except Exception:  # a value whose == does not give a truth value
        pass
    try:
        return encode_value(kept) == encode_value(command)
    except (TypeError, ValueError):
        return False


_LAST_ACTIVE = attrgetter("last_active")
_LOWEST = attrgetter("lowest")
_REPLIES = attrgetter("replies")


class Sessions:
    """The replicated table of client sessions; changed only by applying entries."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._table: dict[int, _Session] = {}
        #: (last activity, client id) of every session, and stale pairs of sessions
        #: active since (or expired), popped when they reach the top.
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, client: int) -> bool:
        return client in self._table

    def expire(self, now: float) -> list[int]:
        """Forget the sessions idle for longer than the timeout at stamped time ``now``;
        return their ids, in order. O(log n) for each session expired or active since
        it was last looked at; nothing else is read."""
        limit = now - self.timeout
        heap, table = self._heap, self._table
        expired = []
        while heap and heap[0][0] < limit:
            last_active, client = heapq.heappop(heap)
            session = table.get(client)
            if session is not None and session.last_active == last_active:
                del table[client]
                expired.append(client)
        expired.sort()
        return expired

    def _touch(self, client: int, session: _Session, now: float) -> None:
        """Activity of ``session`` at stamped time ``now``: its last activity is the
        latest of its entries' stamps, never an earlier one."""
        if now > session.last_active:
            session.last_active = now
            heapq.heappush(self._heap, (now, client))
            if len(self._heap) > 2 * len(self._table) + 64:
                self._rebuild_heap()  # stale pairs: O(n) once per n writes

    def _rebuild_heap(self) -> None:
        self._heap = [(s.last_active, c) for c, s in self._table.items()]
        heapq.heapify(self._heap)

    def open(self, client: int, now: float) -> int:
        """Apply the entry (at index ``client``) opening a session."""
        self.expire(now)
        self._table[client] = _Session(now)
        heapq.heappush(self._heap, (now, client))
        return client

    def apply(
        self,
        client: int,
        seq: int,
        lowest: int,
        now: float,
        run: Callable[[], tuple[Any, BaseException | None]],
        command: Any = _UNKNOWN,
    ) -> tuple[Any, BaseException | None]:
        """Apply a client's numbered ``command``: ``run()`` it at most once; return its
        reply (``(value, error)``), the kept one for a retry of the same command."""
        self.expire(now)
        session = self._table.get(client)
        if session is None:
            return None, SessionExpired(
                f"session {client} expired (no activity for {self.timeout:g} s) or never "
                "existed: the command was not applied"
            )
        self._touch(client, session, now)
        if lowest > session.lowest:
            session.lowest = lowest
            session.forget_below(lowest)
        kept = session.replies.get(seq)
        if kept is not None:
            if not _same_command(session.commands.get(seq, _UNKNOWN), command):
                return None, WriteNumberReused(
                    f"write {seq} of session {client} was applied already with another "
                    "command: this one was not applied (a client numbers each new write "
                    "anew, and retries a write with the same command)"
                )
            return kept
        if seq < session.lowest:
            # Answered and acknowledged already (its reply was dropped when a later write
            # said so): a late duplicate, whatever lowest number it carries itself. Not
            # applied again.
            return None, SessionExpired(f"write {seq} of session {client} was answered already")
        reply = run()
        session.replies[seq] = reply
        if command is not _UNKNOWN:
            session.commands[seq] = command
        return reply

    def snapshot(self) -> dict[str, Any]:
        """The table as msgpack values (for snapshots), by column: ids, last activity
        and lowest numbers of every session as three flat lists, and the kept replies of
        the sessions that have any (most have none): with many sessions, one object per
        session would make every snapshot slow."""
        # In id order, as on every replica: ids are the indices of the entries that
        # opened the sessions, applied (and restored) in that order. Built with C-level
        # loops (map, compress): a snapshot of 100,000 sessions must not stall writes.
        table = self._table
        sessions = list(table.values())
        busy = compress(table.items(), map(_REPLIES, sessions))
        return {
            "clients": list(table),
            "last_active": list(map(_LAST_ACTIVE, sessions)),
            "lowest": list(map(_LOWEST, sessions)),
            "replies": [
                [c, [[seq, v, describe_error(e), *_kept_command(s, seq)] for seq, (v, e) in
                     s.replies.items()]]
                for c, s in busy
            ],
        }  # fmt: skip

    def restore(self, data: dict[str, Any] | list[Any]) -> None:
        """Replace the table with a :meth:`snapshot`."""
        self._table = table = {}
        if isinstance(data, dict):
            for client, last_active, lowest in zip(
                data["clients"], data["last_active"], data["lowest"], strict=True
            ):
                table[client] = _Session(last_active, lowest)
            for client, replies in data["replies"]:
                self._restore_replies(table[client], replies)
        else:  # a snapshot written before the table was kept by column: one per session
            for client, last_active, replies, *rest in data:
                # Snapshots written before the watermark was kept have no fifth field;
                # the next write of the session sets it again.
                table[client] = _Session(last_active, rest[0] if rest else 0)
                self._restore_replies(table[client], replies)
        self._rebuild_heap()

    @staticmethod
    def _restore_replies(session: _Session, replies: list[Any]) -> None:
        # Replies kept before commands were kept have no fourth field.
        for seq, value, error, *command in replies:
            session.replies[seq] = (value, error_from(error))
            if command:
                session.commands[seq] = command[0]


def _kept_command(session: _Session, seq: int) -> list[Any]:
    """The command a kept reply answers, as a list of zero or one item (for snapshots)."""
    command = session.commands.get(seq, _UNKNOWN)
    return [] if command is _UNKNOWN else [command]


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

    def rebase(self, local: float, newest: float = 0.0) -> None:
        """A term of this server as leader begins: run on from the newest stamp it knows
        (``newest``: its log's, applied or not, and its snapshot's), not counting the
        time since it was applied (no leader may have run)."""
        self._stamp = max(self._stamp, newest)
        self._local = local
