"""A replicated key-value store on trioraft.

Commands (writes): ``("put", key, value)`` returns the previous value (or None),
``("delete", key)`` returns whether the key existed, ``("cas", key, expected, new)`` sets
the key only if it holds ``expected`` and returns whether it did.
Queries (reads): ``("get", key)`` returns the value (or None), ``("keys",)`` the sorted keys.
Commands and queries may be lists too (JSON has no tuples), so the command line serves it::

    python examples/kv.py
    trioraft serve --name a --listen 127.0.0.1:7201 --machine examples.kv:KeyValue \
        --data-dir kv-data/a
    trioraft write --cluster 127.0.0.1:7201 '["put", "colour", "red"]'
    trioraft read --cluster 127.0.0.1:7201 '["get", "colour"]'
"""

from __future__ import annotations

from typing import Any

import trio

import trioraft
import trioraft.testing


class KeyValue(trioraft.StateMachine):
    """A dictionary, replicated. Keys and values are any immutable values."""

    def __init__(self, initial: dict[Any, Any] | None = None) -> None:
        self.data: dict[Any, Any] = dict(initial or {})

    def validate(self, command: Any) -> None:
        """Refuse malformed commands on the leader, before they reach the log."""
        if not isinstance(command, (tuple, list)) or not command:
            raise ValueError(f"a command is a tuple like ('put', key, value), got {command!r}")
        arity = {"put": 3, "delete": 2, "cas": 4}.get(command[0])
        if arity is None:
            raise ValueError(f"unknown command {command[0]!r}; use put, delete or cas")
        if len(command) != arity:
            raise ValueError(f"{command[0]} takes {arity - 1} arguments: {command!r}")

    def write(self, command: tuple[Any, ...]) -> Any:
        op, key = command[0], _key(command[1])
        if op == "put":
            previous = self.data.get(key)
            self.data[key] = command[2]
            return previous
        if op == "delete":
            return self.data.pop(key, _MISSING) is not _MISSING
        if op == "cas":
            _, _, expected, new = command
            if self.data.get(key) != expected:
                return False
            self.data[key] = new
            return True
        raise ValueError(f"unknown command {op!r}")

    def read(self, query: tuple[Any, ...]) -> Any:
        if isinstance(query, (tuple, list)) and query:
            if query[0] == "get" and len(query) == 2:
                return self.data.get(_key(query[1]))
            if query[0] == "keys" and len(query) == 1:
                return sorted(self.data)
        raise ValueError(f"unknown query {query!r}; use ('get', key) or ('keys',)")

    def snapshot(self) -> tuple[tuple[Any, Any], ...]:
        return tuple(sorted(self.data.items()))

    def restore(self, snapshot: tuple[tuple[Any, Any], ...]) -> None:
        self.data = {_key(k): v for k, v in snapshot}


_MISSING = object()


def _key(key: Any) -> Any:
    """A key as the dictionary holds it: a list (from JSON, or from msgpack on disk)
    becomes a tuple, so that ``["put", ["x", 1], ...]`` has a key at all."""
    return tuple(_key(k) for k in key) if isinstance(key, list) else key


async def main() -> None:
    network = trioraft.MemoryNetwork(seed=3)
    names = ["kv1", "kv2", "kv3"]
    async with trio.open_nursery() as nursery:
        servers = {
            name: await trioraft.start_server(
                nursery, KeyValue, name=name, network=network, initial_config=names, seed=i
            )
            for i, name in enumerate(names)
        }
        leader = servers[await servers["kv1"].await_leader()]
        print(f"{leader.name} leads")
        print("put colour=red ->", await leader.write(("put", "colour", "red")))
        print("cas colour red->blue ->", await leader.write(("cas", "colour", "red", "blue")))
        print("cas colour red->green ->", await leader.write(("cas", "colour", "red", "green")))
        print("get colour ->", await leader.read(("get", "colour")))
        try:
            await leader.write(("increment", "colour"))
        except ValueError as exc:
            print("rejected before the log:", exc)
        network.isolate(leader.name)
        print(f"{leader.name} isolated")
        others = [s for s in servers.values() if s is not leader]
        with trio.fail_after(5):
            while (new := others[0].leader()) in (None, leader.name):
                await trio.sleep(0.05)
        print(f"{new} leads now; get colour ->", await servers[new].read(("get", "colour")))
        print("put size=L ->", await servers[new].write(("put", "size", "L")))
        network.heal()
        await trio.sleep(0.5)
        for name, server in servers.items():
            print(name, "holds", await server.read_dirty(("keys",)))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trioraft.testing.run(main, seed=0)
