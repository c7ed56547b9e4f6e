"""The ``floor`` section of the benchmark (see :mod:`trioraft.bench`): the Trio floor.

The floor is the least work any Trio design does for a write replicated on 3 servers: C
writer tasks append to the leader's list, one replicator task per follower ships what
is new as one batch over a trio memory channel, each follower appends the batch and
acknowledges its length, and the leader commits at the quorum (itself and the furthest
follower), applies to a counter and wakes the writers. There are no terms, no checks,
no elections, no storage: only the plumbing. trioraft's in-process throughput is judged
as a ratio to it, measured in the same run.

It measures with :func:`closed_loop` (:mod:`trioraft.bench._cluster`), the closed-loop
driver (C tasks, warm-up, measured window) of the ``throughput``, ``disk`` and ``reads``
sections too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import attrs
import trio

from ._base import BenchOptions, Reporter, Result, _records_table, section
from ._cluster import LoopResult, WriteRun, closed_loop, fresh_run

__all__ = ["FloorRun", "LoopResult", "closed_loop", "measure_floor", "render_floor"]


# ------------------------------------------------------------------------ floor
class _Floor:
    """Three servers' worth of plumbing for replicated writes, and nothing else."""

    def __init__(self, followers: int = 2, window: int = 8) -> None:
        self.log: list[int] = []
        self.waiting: deque[trio.Event] = deque()
        self.commit = 0
        self.value = 0
        self.match = [0] * followers
        self.wakeups = [trio.Event() for _ in range(followers)]
        self.acks = trio.open_memory_channel[tuple[int, int]](math.inf)
        # A follower's link holds at most `window` batches (trioraft's max_inflight).
        self.links = [
            trio.open_memory_channel[tuple[int, list[int]]](window) for _ in range(followers)
        ]

    async def write(self, command: int) -> None:
        """Append ``command`` in the writer's own task; return once it is committed."""
        done = trio.Event()
        self.log.append(command)
        self.waiting.append(done)
        for wakeup in self.wakeups:
            wakeup.set()
        await done.wait()

    async def replicate(self, i: int) -> None:
        """Ship every entry follower ``i`` lacks, as one batch per round."""
        send = self.links[i][0]
        sent = 0
        while True:
            while sent >= len(self.log):
                self.wakeups[i] = trio.Event()
                await self.wakeups[i].wait()
            batch = self.log[sent:]
            await send.send((sent, batch))
            sent += len(batch)

    async def follow(self, i: int) -> None:
        """Follower ``i``: append each batch, acknowledge the length of its log."""
        log: list[int] = []
        ack = self.acks[0].send_nowait
        async for _, batch in self.links[i][1]:
            log.extend(batch)
            ack((i, len(log)))

    async def lead(self) -> None:
        """Commit at the quorum (the leader and its furthest follower), apply, wake."""
        async for i, length in self.acks[1]:
            self.match[i] = length
            quorum = max(self.match)
            while self.commit < quorum:
                self.value += self.log[self.commit]
                self.commit += 1
                self.waiting.popleft().set()


@attrs.frozen(kw_only=True)
class FloorRun(WriteRun):
    """One run of the Trio floor at ``concurrency`` writers."""


async def _floor_run(concurrency: int, seconds: float, warmup: float) -> FloorRun:
    floor = _Floor()
    async with trio.open_nursery() as nursery:
        for i in range(len(floor.links)):
            nursery.start_soon(floor.follow, i)
            nursery.start_soon(floor.replicate, i)
        nursery.start_soon(floor.lead)
        loop = await closed_loop(lambda i: floor.write(1), concurrency, seconds, warmup)
        nursery.cancel_scope.cancel()
    errors = list(loop.failures)
    if floor.value != loop.total:
        errors.append(f"C={concurrency}: the floor's counter is {floor.value}, not {loop.total}")
    return FloorRun.of(loop, errors)


def measure_floor(concurrency: int, seconds: float, warmup: float = 0.5) -> FloorRun:
    """Run the Trio floor with ``concurrency`` writers in a fresh ``trio.run`` on the real
    clock, for ``warmup`` then ``seconds`` seconds (the ``throughput`` section's method)."""
    return fresh_run(_floor_run, concurrency, seconds, warmup)


def run_floor_section(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``floor`` section: the Trio floor per concurrency, and trioraft's ratio to it."""
    ours: dict[int, float] = {}
    our_cpu: dict[int, float | None] = {}
    for r in results["throughput"]["runs"] if "throughput" in results else ():
        ours[r["concurrency"]] = r["writes_per_s"]
        our_cpu[r["concurrency"]] = r.get("cpu_us_per_write")
    runs: list[Result] = []
    errors: list[str] = []
    for c in options.concurrency:
        progress(f"floor: C={c}, {options.warmup:g} s warm-up + {options.seconds:g} s ...")
        run = measure_floor(c, options.seconds, options.warmup)
        floor = run.writes_per_s
        floor_cpu = run.cpu_share / floor * 1e6 if floor > 0 else None
        cpu = our_cpu.get(c)
        row: Result = {
            "concurrency": c,
            "floor_writes_per_s": floor,
            "floor_p50_ms": run.p50_ms,
            "floor_p99_ms": run.p99_ms,
            "trioraft_writes_per_s": ours.get(c),
            "floor_cpu_share": run.cpu_share,
            "ratio": ours[c] / floor if c in ours and floor > 0 else None,
            "floor_cpu_us_per_write": floor_cpu,
            "cpu_ratio": floor_cpu / cpu if floor_cpu and cpu else None,
        }
        progress(
            f"floor: C={c}: {floor:,.0f} writes/s"
            + (f", trioraft/floor = {row['ratio']:.3f}" if row["ratio"] is not None else "")
        )
        runs.append(row)
        errors.extend(run.errors)
    return {"method": "in-process (trioraft.bench.floor)", "runs": runs, "errors": errors}


def render_floor(result: Result) -> list[str]:
    """Table lines for the ``floor`` section."""
    lines = _records_table(
        result["runs"],
        "C: {concurrency} | trioraft w/s: {trioraft_writes_per_s:,.0f} | "
        "floor w/s: {floor_writes_per_s:,.0f} | ratio: {ratio:.3f} | "
        "floor p50 ms: {floor_p50_ms:.3f} | floor p99 ms: {floor_p99_ms:.3f} | "
        "floor CPU share: {floor_cpu_share:.2f} | "
        "floor CPU us/write: {floor_cpu_us_per_write:.1f} | CPU ratio: {cpu_ratio:.3f}",
    )
    lines.append(
        "ratio = trioraft writes/s over the floor's: the least work any Trio design does "
        "for a 3-server replicated write; CPU ratio = the floor's CPU per write over "
        "trioraft's (the same ratio for the CPU each took: steadier on a busy machine)"
    )
    return lines


SECTION = section(
    "floor",
    "Against the Trio floor (same run)",
    run_floor_section,
    render_floor,
    aliases=("--no-floor",),
    options=("seconds", "warmup", "concurrency"),
)
