"""A fault-heavy cluster run whose trace must be identical on every run with the same seed.

Run as ``python tests/determinism_scenario.py SEED``: prints one JSON line per trace event.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import trio

import trioraft
from trioraft.testing import open_cluster, run

from machines import Counter


async def scenario() -> list[tuple[Any, ...]]:
    trace: list[tuple[Any, ...]] = []

    def record(event: trioraft.TraceEvent) -> None:
        data = {k: (v.value if hasattr(v, "value") else v) for k, v in event.data.items()}
        trace.append((round(event.time, 9), event.server, event.kind, sorted(data.items())))

    async with open_cluster(Counter, 5, seed=99) as cluster:
        cluster.add_tracer(record)
        cluster.network.set_delay(0.001, 0.03)
        cluster.network.set_loss(0.05)

        async def client(k: int) -> None:
            for i in range(30):
                with contextlib.suppress(trioraft.RaftError):
                    await cluster.write(k * 100 + i)
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            for k in range(3):
                nursery.start_soon(client, k)
            await trio.sleep(0.5)
            leader = cluster.leader()
            if leader is not None:
                cluster.network.isolate(leader.name)
            await trio.sleep(0.6)
            cluster.network.heal()
            await cluster.crash("s2")
            await trio.sleep(0.3)
            await cluster.restart("s2")
            cluster.network.partition(["s1", "s2"], ["s3", "s4", "s5"])
            await trio.sleep(0.5)
            cluster.network.heal()
        await cluster.wait_for_leader()
        for server in cluster.servers.values():
            trace.append(
                ("final", server.name, server.status().term, tuple(server.machine.applied))
            )
    return trace


def main(seed: int) -> list[tuple[Any, ...]]:
    return run(scenario, seed=seed)


if __name__ == "__main__":
    for item in main(int(sys.argv[1])):
        print(json.dumps(item))
