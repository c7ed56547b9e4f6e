"""A replicated configuration store: the service that docs/tutorial.rst builds.

Keys are strings and values are msgpack values (``None`` stands for "absent", so it is
not a value you can store). Every key has a *version* that grows by one with each
change, so a client can change a key only if nobody else changed it since it read it.

Commands (writes), as tuples (or lists: the command line sends JSON arrays):

* ``("set", key, value)``: set the key; returns its new version.
* ``("set", key, value, version)``: the same, only if the key's version is ``version``
  (0: the key was never set); returns the new version, or ``None`` if it was not.
* ``("delete", key)``: remove the key; returns its new version, or ``None`` if it had
  no value. A deleted key keeps its version, so a new value never gets an old version.

Queries (reads):

* ``("get", key)``: ``(value, version)``; ``(None, 0)`` for a key never set.
* ``("keys", prefix)``: the sorted keys that have a value and start with ``prefix``
  (``("keys",)``: all of them).

Serve it with ``python -m trioraft serve ... --machine examples.config_store:ConfigStore``
(from the repository root), and use it from Python with :class:`ConfigClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trioraft

__all__ = ["ConfigClient", "ConfigStore"]


class ConfigStore(trioraft.StateMachine):
    """Versioned configuration entries, replicated: the state machine."""

    def __init__(self) -> None:
        # key -> (value, version); a deleted key keeps its version, with value None.
        self.entries: dict[str, tuple[Any, int]] = {}

    def validate(self, command: Any) -> None:
        """Refuse a malformed command on the leader, before it reaches the log."""
        if not isinstance(command, (tuple, list)) or len(command) < 2:
            raise ValueError(f"a command is a tuple like ('set', key, value), not {command!r}")
        op, key, *args = command
        if not isinstance(key, str):
            raise ValueError(f"keys are strings, not {key!r}")
        if op == "set" and len(args) in (1, 2):
            if args[0] is None:
                raise ValueError("None stands for an absent key: use delete")
            if len(args) == 2 and (isinstance(args[1], bool) or not isinstance(args[1], int)):
                raise ValueError(f"a version is an integer, not {args[1]!r}")
        elif op != "delete" or args:
            raise ValueError(f"unknown command {command!r}: use set or delete")

    def write(self, command: Any) -> Any:
        """Apply a (validated) command; return the key's new version, or None if the
        command changed nothing."""
        op, key, *args = command
        value, version = self.entries.get(key, (None, 0))
        if op == "set":
            if len(args) == 2 and args[1] != version:
                return None  # someone changed the key since the writer read it
            self.entries[key] = (args[0], version + 1)
            return version + 1
        if value is None:  # delete of a key that has no value
            return None
        self.entries[key] = (None, version + 1)
        return version + 1

    def read(self, query: Any) -> Any:
        """Answer ``("get", key)`` or ``("keys", prefix)``, leaving the state as it is."""
        op, *args = query
        if op == "get" and len(args) == 1:
            return self.entries.get(args[0], (None, 0))
        if op == "keys" and len(args) <= 1:
            prefix = args[0] if args else ""
            return [
                key
                for key, (value, _) in sorted(self.entries.items())
                if value is not None and key.startswith(prefix)
            ]
        raise ValueError(f"unknown query {query!r}: use ('get', key) or ('keys', prefix)")

    def snapshot(self) -> Any:
        """The entries, as ``[key, value, version]`` lists (for log compaction)."""
        return [[key, value, version] for key, (value, version) in sorted(self.entries.items())]

    def restore(self, snapshot: Any) -> None:
        """Replace the entries with those of a :meth:`snapshot`."""
        self.entries = {key: (value, version) for key, value, version in snapshot}


class ConfigClient:
    """The configuration store, used through a :class:`trioraft.Client`: each change is
    applied exactly once, whatever happens to the leaders, and reads are linearizable."""

    def __init__(self, client: trioraft.Client) -> None:
        self.client = client

    async def get(self, key: str) -> tuple[Any, int]:
        """``(value, version)`` of ``key``; ``(None, 0)`` if it was never set."""
        value, version = await self.client.read(("get", key))
        return value, int(version)

    async def set(self, key: str, value: Any, *, if_version: int | None = None) -> int | None:
        """Set ``key`` to ``value``; return its new version. With ``if_version``, only if
        the key is still at that version (else return None and change nothing)."""
        command = ("set", key, value) if if_version is None else ("set", key, value, if_version)
        version = await self.client.write(command)
        return None if version is None else int(version)

    async def delete(self, key: str) -> int | None:
        """Remove ``key``; return its new version, or None if it had no value."""
        version = await self.client.write(("delete", key))
        return None if version is None else int(version)

    async def keys(self, prefix: str = "") -> list[str]:
        """The sorted keys that have a value and start with ``prefix``."""
        return list(await self.client.read(("keys", prefix)))

    async def update(self, key: str, change: Callable[[Any], Any]) -> tuple[Any, int]:
        """Read ``key``, set it to ``change(value)`` if nobody changed it meanwhile, and
        try again if somebody did. Returns the value it stored and its version."""
        while True:
            value, version = await self.get(key)
            new = change(value)
            stored = await self.set(key, new, if_version=version)
            if stored is not None:
                return new, stored
