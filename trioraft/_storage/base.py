"""The storage interface: what the runtime needs from a storage, and nothing more.

The runtime stages what a :class:`~trioraft._core.ready.Ready` asks to persist with the
writing methods, in this order: :meth:`Storage.set_snapshot`, :meth:`Storage.compact`,
:meth:`Storage.truncate`, :meth:`Storage.append`, :meth:`Storage.set_hard_state`; then
awaits :meth:`Storage.sync`, which makes all of it durable at once (one transaction: the
group commit). Nothing staged counts until ``sync`` returns: a crash loses it, and
:meth:`Storage.load` never returns it.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Protocol

from .._core.messages import Entry
from .._core.ready import HardState, PersistedState, Ready, Snapshot
from .._errors import RaftError

__all__ = ["PASSING_ERRNOS", "Storage", "StorageError", "passing", "stage"]

#: OS errors that pass by themselves: file descriptors exhausted, in this process
#: (EMFILE) or in the system (ENFILE). A sync that fails with one is tried again.
PASSING_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


def passing(exc: BaseException) -> bool:
    """Whether ``exc`` is an OS error that passes by itself (:data:`PASSING_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in PASSING_ERRNOS


class StorageError(RaftError, ValueError):
    """A storage cannot be used: it is in use by another running server, belongs to
    another server name, is not a trioraft store, is damaged, or cannot be written
    (permissions, a read-only file system, a full disk). The message names the storage
    and the problem."""


class Storage(Protocol):
    """What both :class:`~trioraft.MemoryStorage` and :class:`~trioraft.DiskStorage`
    implement. Only the runtime calls these.

    A storage that can keep only some values may also have a ``check_value(value)``
    that raises :class:`TypeError` for the others (:class:`~trioraft.DiskStorage`'s
    refuses what is not a msgpack value): the server calls it on each command when it is
    given, so that a command the storage cannot keep is refused at the call."""

    async def acquire(self, name: str) -> None:
        """Claim the storage for the server ``name``; :class:`StorageError` if it is in
        use or belongs to another name."""
        ...

    def release(self) -> None:
        """Give the storage back (the server stopped)."""
        ...

    async def load(self) -> PersistedState:
        """Everything durable: hard state, snapshot, log."""
        ...

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Stage: the latest snapshot is ``snapshot``."""
        ...

    def compact(self, index: int, term: int) -> None:
        """Stage: drop the entries up to ``index`` (whose term is ``term``)."""
        ...

    def truncate(self, index: int) -> None:
        """Stage: drop the entries from ``index`` on."""
        ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Stage: drop the entries from ``entries[0].index`` on, then add ``entries``."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None:
        """Stage: the hard state is ``hard_state``."""
        ...

    async def sync(self) -> None:
        """Make everything staged durable, at once. If it raises, nothing staged became
        durable and all of it stays staged: the server tries again after an error that
        passes by itself (:func:`passing`), and stops after any other."""
        ...


def stage(storage: Storage, rd: Ready) -> None:
    """Stage what ``rd`` asks to persist, in the contract's order (then ``sync``)."""
    if rd.snapshot is not None:
        storage.set_snapshot(rd.snapshot)
    if rd.compact is not None:
        storage.compact(*rd.compact)
    if rd.truncate_from is not None:
        storage.truncate(rd.truncate_from)
    if rd.entries:
        storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
