"""What open client sessions cost writes (issue 22: 100,000 open sessions keep writes/s
at C=256 at least 0.8 x the rate with 10; docs/performance.rst).

One server (a cluster of one, MemoryNetwork, the default options), ``N`` sessions opened
through :meth:`trioraft.Server.open_session`, then C=256 writer tasks each writing in a
session of its own (``write_in_session``, its numbers in order) for ``SECONDS``. The
figure is writes per CPU second of this process (the machine is shared: CPU, not wall
time); each round measures 10 sessions and 100,000 in turn, the order alternating, and
the ratio is within a round.

    PYTHONPATH=. python docs/scripts/sessions_cost.py [ROUNDS] [SECONDS]
"""

from __future__ import annotations

import statistics
import sys
import time

import trio

import trioraft
from trioraft.recipes import Counter

C = 256
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0


async def measure(sessions: int) -> float:
    """Writes per CPU second at C=256 with ``sessions`` open."""
    async with trio.open_nursery() as nursery:
        server = await trioraft.start_server(
            nursery, Counter, name="a", network=trioraft.MemoryNetwork(), initial_config=["a"]
        )
        await server.await_leader()
        ids: list[int] = []

        async def opener(count: int) -> None:
            for _ in range(count):
                ids.append(await server.open_session())

        async with trio.open_nursery() as openers:
            for _ in range(min(100, sessions)):
                openers.start_soon(opener, max(1, sessions // 100))
        numbers = dict.fromkeys(ids, 0)
        done = 0
        end = time.perf_counter() + SECONDS

        async def writer(client: int) -> None:
            nonlocal done
            while time.perf_counter() < end:
                numbers[client] += 1
                seq = numbers[client]
                await server.write_in_session(client, seq, max(1, seq - 2 * C), 1)
                done += 1

        started = time.process_time()
        async with trio.open_nursery() as writers:
            for i in range(C):
                writers.start_soon(writer, ids[i % len(ids)])
        rate = done / (time.process_time() - started)
        await server.stop()
        return rate


def main() -> None:
    ratios = []
    for i in range(ROUNDS):
        order = (10, 100_000) if i % 2 == 0 else (100_000, 10)
        rates = {n: trio.run(measure, n) for n in order}
        ratios.append(rates[100_000] / rates[10])
        print(
            f"round {i + 1}: {rates[10]:,.0f} writes per CPU s with 10 sessions, "
            f"{rates[100_000]:,.0f} with 100,000: {ratios[-1]:.2f}",
            flush=True,
        )
    print(f"median ratio {statistics.median(ratios):.2f} over {ROUNDS} rounds")


if __name__ == "__main__":
    main()
