"""A replicated dict: a state machine, and a small async API over a client."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .._client import Client
from .._state_machine import StateMachine
from ._recording import Recorder

if TYPE_CHECKING:
    from ..testing import History

__all__ = ["DictMachine", "ReplicatedDict"]

_MISSING: Any = object()


class DictMachine(StateMachine):
    """The state machine of :class:`ReplicatedDict`. Commands: ``("set", key, value)``,
    ``("delete", key)``, ``("cas", key, expected, new)``; queries: ``("get", key)``,
    ``("items",)``. Keys and values are msgpack values (a key must be hashable: no
    lists or dicts as keys)."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def write(self, command: Any) -> Any:
        """Apply a command; ``set`` returns None, ``delete`` and ``cas`` whether they
        changed anything."""
        op = command[0]
        if op == "set":
            self.data[command[1]] = command[2]
            return None
        if op == "delete":
            return self.data.pop(command[1], _MISSING) is not _MISSING
        if op == "cas":
            _, key, expected, new = command
            if self.data.get(key) != expected:
                return False
            if new is None:
                self.data.pop(key, None)
            else:
                self.data[key] = new
            return True
        raise ValueError(f"unknown dict command {command!r}")

    def read(self, query: Any) -> Any:
        """Answer ``("get", key)`` (None if absent) or ``("items",)`` (sorted pairs)."""
        if query[0] == "get":
            return self.data.get(query[1])
        if query[0] == "items":
            return sorted(self.data.items(), key=lambda kv: repr(kv[0]))
        raise ValueError(f"unknown dict query {query!r}")

    def snapshot(self) -> Any:
        """The pairs."""
        return [[k, v] for k, v in self.data.items()]

    def restore(self, snapshot: Any) -> None:
        """Replace the pairs."""
        self.data = {(tuple(k) if isinstance(k, list) else k): v for k, v in snapshot}


class ReplicatedDict:
    """A dict replicated by a trioraft cluster that runs :class:`DictMachine`, used
    through a :class:`~trioraft.Client`: writes are applied exactly once, reads are
    linearizable. ``None`` stands for "absent" (so it is not a value you can store).

    ``history`` (a :class:`trioraft.testing.History`), if given, records each operation
    as :class:`DictMachine` sees it (under ``client``, by default the client's name), so
    that a test checks them with ``Model.from_state_machine(DictMachine)``.
    """

    def __init__(
        self, client: Client, *, history: History | None = None, client_id: Hashable = None
    ) -> None:
        self._ops = Recorder(client, history, client_id)

    async def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        value = await self._ops.read(("get", key))
        return default if value is None else value

    async def set(self, key: Any, value: Any) -> None:
        """Set ``key`` to ``value`` (not ``None``)."""
        if value is None:
            raise ValueError("None stands for an absent key: use delete()")
        await self._ops.write(("set", key, value))

    async def delete(self, key: Any) -> bool:
        """Remove ``key``; whether it was there."""
        return bool(await self._ops.write(("delete", key)))

    async def compare_and_set(self, key: Any, expected: Any, new: Any) -> bool:
        """Set ``key`` to ``new`` if its value is ``expected`` (``None``: absent; a
        ``new`` of ``None`` deletes it); whether it did."""
        return bool(await self._ops.write(("cas", key, expected, new)))

    async def items(self) -> list[tuple[Any, Any]]:
        """Every pair, sorted by key."""
        return [(k, v) for k, v in await self._ops.read(("items",))]
