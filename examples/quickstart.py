"""The seed scenario of trioraft's API contract (ExRaft's README, in Trio).

Two servers form a cluster and elect a leader; a third, which knows no one and needs a
majority of 2, is added by the leader; the leader takes a write, a follower redirects;
the leader stops, and the newcomer triggers an election and wins it: it holds the whole
log, and the other survivor, which has heard from no leader since, grants its vote.
Runs on Trio's virtual clock, so the timeouts take no wall time and it finishes at once.
(Which server wins the first election varies: the servers are not given seeds here,
exactly as in the contract's story. Pass ``seed=`` to each server to fix it.)
"""

from __future__ import annotations

from typing import Any

import trio

import trioraft
import trioraft.testing


class Counter(trioraft.StateMachine):
    """A replicated counter: writes add to it, reads return it."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def write(self, command: int) -> int:
        self.value += command
        return self.value

    def read(self, query: Any) -> int:
        return self.value

    def snapshot(self) -> int:
        return self.value

    def restore(self, snapshot: int) -> None:
        self.value = snapshot


async def main() -> str:
    network = trioraft.MemoryNetwork(seed=1)
    config = ["raft1", "raft2"]
    async with trio.open_nursery() as nursery:
        servers = {}
        for name in config:
            servers[name] = await trioraft.start_server(
                nursery, Counter, 0, name=name, network=network, initial_config=config
            )
        # knows no other server and needs a majority of 2: it can never lead until added
        servers["raft3"] = await trioraft.start_server(
            nursery, Counter, 0, name="raft3", network=network, min_majority=2
        )
        leader = await servers["raft1"].await_leader()
        print(f"{leader} leads")
        await servers[leader].add_server("raft3")
        print("raft3 added")
        assert await servers[leader].write(1) == 1
        print("wrote 1, counter is 1")
        follower = next(n for n in config if n != leader)
        try:
            await servers[follower].write(1)
        except trioraft.NotLeader as exc:
            assert exc.leader == leader
            print(f"{follower} redirects to {exc.leader}")
        await servers[leader].stop()
        print(f"{leader} stopped")
        await servers["raft3"].trigger_election()
        new_leader = await servers["raft3"].await_leader()
        assert new_leader in {"raft1", "raft2", "raft3"} - {leader}
        print(f"{new_leader} leads now")
        nursery.cancel_scope.cancel()
    return new_leader


if __name__ == "__main__":
    trioraft.testing.run(main, seed=0)
