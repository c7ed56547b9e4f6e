"""The replicated counter: trioraft's demo, on the real clock.

Three servers elect a leader and take writes; the leader is stopped; the two others
elect a new one, which takes more writes; then every server prints its counter.

    python examples/counter.py
"""

from __future__ import annotations

import functools
import sys

import trio

import trioraft
import trioraft.recipes


class Counter(trioraft.recipes.Counter):
    """The replicated counter (:class:`trioraft.recipes.Counter`: ``write(n)`` adds n and
    returns the total) that narrates its server's role changes.

    ``python -m trioraft serve --machine examples.counter:Counter`` serves it too.
    """

    def __init__(self, start: int = 0, *, name: str = "") -> None:
        super().__init__(start)
        self.name = name

    def on_role_change(self, role: trioraft.Role) -> None:
        """Optional hook: narrate each server's role changes as they happen (in the demo)."""
        if self.name:
            say(f"  {self.name} is now {role.value.replace('_', '-')}")


def say(message: str) -> None:
    print(f"[{trio.current_time() - START:6.3f}s] {message}", flush=True)


START = 0.0


async def write_until_done(servers: dict[str, trioraft.Server], amount: int) -> int:
    """Write through whichever server leads, following redirects."""
    name = next(iter(servers))
    while True:
        try:
            return await servers[name].write(amount)
        except trioraft.NotLeader as exc:
            name = exc.leader or await servers[name].await_leader()
            if name not in servers:  # a stopped leader is still remembered for a moment
                await trio.sleep(0.05)
                name = next(iter(servers))


async def main() -> None:
    global START
    START = trio.current_time()
    names = ["alpha", "bravo", "charlie"]
    network = trioraft.MemoryNetwork(seed=7)
    async with trio.open_nursery() as nursery:
        servers = {
            name: await trioraft.start_server(
                nursery,
                functools.partial(Counter, name=name),
                0,
                name=name,
                network=network,
                initial_config=names,
            )
            for name in names
        }
        say(f"started {', '.join(names)}; waiting for an election")
        leader = await servers["alpha"].await_leader()
        say(f"{leader} is the leader (term {servers[leader].status().term})")

        for i in range(1, 6):
            total = await servers[leader].write(i)
            say(f"write +{i} through {leader} -> counter = {total}")
        say(f"linearizable read on {leader}: {await servers[leader].read(None)}")

        say(f"stopping the leader {leader}")
        await servers.pop(leader).stop()
        survivor = next(iter(servers))
        with trio.fail_after(5):
            while (new_leader := servers[survivor].leader()) in (None, leader):
                await trio.sleep(0.01)
        say(f"{new_leader} is the new leader (term {servers[new_leader].status().term})")

        for i in (10, 20):
            total = await write_until_done(servers, i)
            say(f"write +{i} -> counter = {total}")

        await trio.sleep(0.2)  # let the follower apply the last commit
        for name, server in servers.items():
            say(f"{name}: counter = {await server.read_dirty(None)} ({server.status().role.value})")
        say(f"{leader}: stopped")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
