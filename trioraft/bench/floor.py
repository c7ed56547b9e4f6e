"""The ``floor`` section of the benchmark (see :mod:`trioraft.bench`): the Trio floor.

The floor is the least work any Trio design does for a write replicated on 3 servers: C
writer tasks append to the leader's list, one replicator task per follower ships what
is new as one batch over a trio memory channel, each follower appends the batch and
acknowledges its length, and the leader commits at the quorum (itself and the furthest
follower), applies to a counter and wakes the writers. There are no terms, no checks,
no elections, no storage: only the plumbing. trioraft's in-process throughput is judged
as a ratio to it, measured in the same run.

It also holds :func:`closed_loop`, the closed-loop driver (C tasks, warm-up, measured
window) the ``floor``, ``disk`` and ``reads`` sections share.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import attrs
import trio

import trioraft

from ._base import (
    BenchOptions,
    Progress,
    Result,
    _num,
    _table,
    percentile,
    register_section,
)

__all__ = ["FloorRun", "LoopResult", "closed_loop", "measure_floor", "render_floor"]


# ------------------------------------------------------------------ closed loop
@attrs.frozen(kw_only=True)
class LoopResult:
    """What :func:`closed_loop` measured."""

    concurrency: int
    #: Operations completed after the warm-up.
    operations: int
    #: Operations completed during the warm-up (not measured).
    warmup_operations: int
    #: Seconds from the end of the warm-up to the last operation's completion.
    elapsed_s: float
    #: Latencies of the measured operations, in seconds, ascending.
    latencies: tuple[float, ...] = attrs.field(repr=False)
    #: CPU seconds this process used while measuring.
    cpu_s: float
    #: Operations that raised a :class:`~trioraft.RaftError` (each task stops at its first).
    failures: tuple[str, ...] = ()

    @property
    def per_s(self) -> float:
        """Measured operations per second."""
        return self.operations / self.elapsed_s

    def percentile_ms(self, q: float) -> float | None:
        """The ``q`` latency percentile in milliseconds (``None`` without operations)."""
        return percentile(self.latencies, q) * 1e3 if self.latencies else None

    @property
    def cpu_share(self) -> float:
        """CPU seconds over wall seconds while measuring (about 1: a CPU to itself)."""
        return self.cpu_s / self.elapsed_s


async def closed_loop(
    operation: Callable[[int], Awaitable[object]],
    concurrency: int,
    seconds: float,
    warmup: float,
) -> LoopResult:
    """Run ``concurrency`` tasks, task ``i`` looping ``await operation(i)``, for ``warmup``
    then ``seconds`` seconds of the real clock (:func:`time.perf_counter`). No operation
    starts after that; the loop ends when the last one in flight completes. The rate is
    the operations completed after the warm-up over the time from the end of the warm-up
    to that last completion (the ``throughput`` section's accounting)."""
    perf, cpu = time.perf_counter, time.process_time
    latencies: list[float] = []
    failures: list[str] = []
    completed = 0
    cpu_start: float | None = None
    measure_from = perf() + warmup
    stop_at = measure_from + seconds

    async def task(i: int) -> None:
        nonlocal completed, cpu_start
        while True:
            t0 = perf()
            if t0 >= stop_at:
                return
            try:
                await operation(i)
            except trioraft.RaftError as exc:
                failures.append(f"C={concurrency}: an operation raised {exc!r}")
                return
            t1 = perf()
            completed += 1
            if t1 >= measure_from:
                if cpu_start is None:
                    cpu_start = cpu()
                latencies.append(t1 - t0)

    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(task, i)
    finished = perf()
    latencies.sort()
    return LoopResult(
        concurrency=concurrency,
        operations=len(latencies),
        warmup_operations=completed - len(latencies),
        elapsed_s=max(finished - measure_from, 1e-9),
        latencies=tuple(latencies),
        cpu_s=cpu() - cpu_start if cpu_start is not None else 0.0,
        failures=tuple(failures),
    )


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
class FloorRun:
    """One run of the Trio floor at ``concurrency`` writers."""

    concurrency: int
    writes: int
    elapsed_s: float
    writes_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    #: CPU seconds over wall seconds while measuring.
    cpu_share: float
    #: Sanity-check failures (empty when all is well).
    errors: tuple[str, ...] = ()


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
    total = loop.operations + loop.warmup_operations
    if floor.value != total:
        errors.append(f"C={concurrency}: the floor's counter is {floor.value}, not {total}")
    return FloorRun(
        concurrency=concurrency,
        writes=loop.operations,
        elapsed_s=loop.elapsed_s,
        writes_per_s=loop.per_s,
        p50_ms=loop.percentile_ms(0.50),
        p99_ms=loop.percentile_ms(0.99),
        cpu_share=loop.cpu_share,
        errors=tuple(errors),
    )


def measure_floor(concurrency: int, seconds: float, warmup: float = 0.5) -> FloorRun:
    """Run the Trio floor with ``concurrency`` writers in a fresh ``trio.run`` on the real
    clock, for ``warmup`` then ``seconds`` seconds (the ``throughput`` section's method)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return trio.run(_floor_run, concurrency, seconds, warmup)


def run_floor_section(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``floor`` section: the Trio floor per concurrency, and trioraft's ratio to it."""
    ours: dict[int, float] = {}
    if "throughput" in results:
        ours = {r["concurrency"]: r["writes_per_s"] for r in results["throughput"]["runs"]}
    runs: list[Result] = []
    errors: list[str] = []
    for c in options.concurrency:
        progress(f"floor: C={c}, {options.warmup:g} s warm-up + {options.seconds:g} s ...")
        run = measure_floor(c, options.seconds, options.warmup)
        floor = run.writes_per_s
        row: Result = {
            "concurrency": c,
            "floor_writes_per_s": floor,
            "floor_p50_ms": run.p50_ms,
            "floor_p99_ms": run.p99_ms,
            "trioraft_writes_per_s": ours.get(c),
            "floor_cpu_share": run.cpu_share,
            "ratio": ours[c] / floor if c in ours and floor > 0 else None,
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
    num = _num
    rows = [
        [
            str(r["concurrency"]),
            num(r["trioraft_writes_per_s"], ",.0f"),
            num(r["floor_writes_per_s"], ",.0f"),
            num(r["ratio"], ".3f"),
            num(r["floor_p50_ms"], ".3f"),
            num(r["floor_p99_ms"], ".3f"),
            num(r["floor_cpu_share"], ".2f"),
        ]
        for r in result["runs"]
    ]
    header = ["C", "trioraft w/s", "floor w/s", "ratio", "floor p50 ms", "floor p99 ms"]
    lines = _table([*header, "floor CPU share"], rows)
    lines.append(
        "ratio = trioraft writes/s over the floor's: the least work any Trio design does "
        "for a 3-server replicated write"
    )
    return lines


register_section(
    "floor",
    "Against the Trio floor (same run)",
    run_floor_section,
    render_floor,
    aliases=("--no-floor",),
)
