"""What the in-process sections share: a 3-server cluster on a
:class:`~trioraft.MemoryNetwork`, waiting for its leader, and the closed-loop driver
(C tasks, warm-up, measured window) of the ``throughput``, ``floor``, ``disk`` and
``reads`` sections."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

import trioraft
from trioraft.recipes import Counter

from ._base import (
    _SERVER_NAMES,
    BenchOptions,
    Record,
    Reporter,
    Result,
    _num,
    _records_table,
    percentile,
)

T = TypeVar("T")
W = TypeVar("W", bound="WriteRun")

__all__ = [
    "StableCluster",
    "LoopResult",
    "WriteRun",
    "await_stable_leader",
    "closed_loop",
    "fresh_run",
    "leadership_kept",
    "loop_runs",
    "loop_section",
    "loop_table",
    "stable_cluster",
    "start_cluster",
]


async def start_cluster(
    nursery: trio.Nursery,
    network: trioraft.MemoryNetwork,
    seed_base: int = 0,
    *,
    machine: Callable[..., Any] = Counter,
    init: Sequence[Any] = (0,),
    directory: Path | Sequence[Path] | None = None,
    **options: Any,
) -> dict[str, trioraft.Server]:
    """Start the three servers of :data:`_SERVER_NAMES`: ``machine(*init)`` each (a
    :class:`~trioraft.recipes.Counter` by default), seeds from ``seed_base``, each on a
    :class:`~trioraft.DiskStorage` in ``directory/<name>`` when ``directory`` is given
    (a sequence: server ``i`` in ``directory[i]/<name>``, a disk each, say), else in
    memory, with ``options`` beyond the defaults."""
    servers: dict[str, trioraft.Server] = {}
    for i, name in enumerate(_SERVER_NAMES):
        where = directory if directory is None or isinstance(directory, Path) else directory[i]
        storage = trioraft.DiskStorage(where / name) if where is not None else None
        servers[name] = await trioraft.start_server(
            nursery,
            machine,
            *init,
            name=name,
            network=network,
            initial_config=_SERVER_NAMES,
            seed=seed_base + i,
            storage=storage,
            **options,
        )
    return servers


async def await_stable_leader(servers: Mapping[str, trioraft.Server]) -> trioraft.Server:
    """Wait (on whatever clock) until one server leads and every server knows it."""
    first = next(iter(servers.values()))
    while True:
        name = await first.await_leader()
        leader = servers.get(name)
        if (
            leader is not None
            and leader.status().role is trioraft.Role.LEADER
            and all(s.leader() == name for s in servers.values())
        ):
            return leader
        await trio.sleep(0.005)


@attrs.frozen
class StableCluster:
    """A running cluster of :func:`stable_cluster`."""

    network: trioraft.MemoryNetwork
    nursery: trio.Nursery
    servers: dict[str, trioraft.Server]
    leader: trioraft.Server
    #: The leader's term once it was known to all.
    term: int


@asynccontextmanager
async def stable_cluster(**options: Any) -> AsyncIterator[StableCluster]:
    """``async with stable_cluster(...) as cluster:`` a 3-server cluster
    (:func:`start_cluster` with ``options``, seeds from 0) on a new
    ``MemoryNetwork(seed=0)``, once its leader is known to all (within 30 s); every
    server stops when the block exits."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        servers = await start_cluster(nursery, network, **options)
        with trio.fail_after(30):
            leader = await await_stable_leader(servers)
        yield StableCluster(network, nursery, servers, leader, leader.status().term)
        nursery.cancel_scope.cancel()


def leadership_kept(cluster: StableCluster, where: str) -> list[str]:
    """An error if the cluster's leader no longer leads in its first term."""
    status = cluster.leader.status()
    if status.role is trioraft.Role.LEADER and status.term == cluster.term:
        return []
    return [
        f"{where}: leadership changed during the run "
        f"(term {cluster.term} -> {status.term}, role now {status.role.value})"
    ]


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
    def total(self) -> int:
        """Operations completed, warm-up included."""
        return self.operations + self.warmup_operations

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

    def summary(self, noun: str) -> Result:
        """The figures every closed-loop row reports, named after what was counted:
        ``{noun}s``, ``{noun}s_per_s``, ``p50_ms``, ``p99_ms``, ``cpu_share``."""
        return {
            "concurrency": self.concurrency,
            f"{noun}s": self.operations,
            f"{noun}s_per_s": self.per_s,
            "p50_ms": self.percentile_ms(0.5),
            "p99_ms": self.percentile_ms(0.99),
            "cpu_share": self.cpu_share,
        }


@attrs.frozen(kw_only=True)
class WriteRun(Record):
    """The figures of a closed-loop run of writes (:func:`closed_loop`)."""

    concurrency: int
    #: Writes completed after the warm-up.
    writes: int
    #: Seconds from the end of the warm-up to the last write's completion.
    elapsed_s: float
    writes_per_s: float
    #: Latency percentiles of the measured writes (``None`` if there were none).
    p50_ms: float | None
    p99_ms: float | None
    #: CPU seconds over wall seconds while measuring: about 1 when the run had a CPU to
    #: itself, less when other processes took some (then every figure is pessimistic).
    cpu_share: float
    #: Sanity-check failures (empty when all is well).
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls: type[W], loop: LoopResult, errors: Sequence[str], **more: Any) -> W:
        """The run ``loop`` measured, with these sanity failures and ``more`` fields."""
        return cls(**loop.summary("write"), elapsed_s=loop.elapsed_s, errors=tuple(errors), **more)


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


def fresh_run(
    measure: Callable[..., Awaitable[T]],
    concurrency: int,
    seconds: float,
    warmup: float,
    *args: Any,
) -> T:
    """``measure(concurrency, seconds, warmup, *args)`` in a fresh ``trio.run`` on the real
    clock (each closed-loop run gets a runtime of its own)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return trio.run(measure, concurrency, seconds, warmup, *args)


def loop_runs(
    where: str,
    noun: str,
    measure: Callable[..., Awaitable[Result]],
    numbers: Sequence[int],
    seconds: float,
    warmup: float,
    progress: Reporter,
    *args: Any,
) -> list[Result]:
    """:func:`fresh_run` of ``measure(c, seconds, warmup, *args)`` for each ``c`` of
    ``numbers`` (each returning a :meth:`LoopResult.summary` of ``noun``), telling
    ``progress`` about each (``where``: the section and variant)."""
    runs: list[Result] = []
    for c in numbers:
        progress(f"{where} C={c}, {warmup:g} s warm-up + {seconds:g} s ...")
        run = fresh_run(measure, c, seconds, warmup, *args)
        rate, p50 = run[f"{noun}s_per_s"], _num(run["p50_ms"], ".3f")
        progress(f"{where} C={c}: {rate:,.0f} {noun}s/s, p50 {p50} ms")
        runs.append(run)
    return runs


def loop_table(runs: Sequence[Result], noun: str, label: str = "", extra: str = "") -> list[str]:
    """The table of closed-loop runs (rows of :meth:`LoopResult.summary`): the value
    under the key ``label`` (if any; its header is the key), C, ``{noun}s/s``, p50,
    p99, the ``extra`` columns (as :func:`_records_table` takes them), CPU share."""
    first = f"{label}: {{{label}}}" if label else ""
    row = f"C: {{concurrency}} | {noun}s/s: {{{noun}s_per_s:,.0f}} | p50 ms: {{p50_ms:.3f}}"
    row = f"{first} | {row} | p99 ms: {{p99_ms:.3f}} | {extra} | CPU share: {{cpu_share:.2f}}"
    return _records_table(runs, row)


def loop_section(
    measure: Callable[[Sequence[int], float, float, Reporter], Result], concurrency: str
) -> Callable[[BenchOptions, Mapping[str, Result], Reporter], Result]:
    """A section's ``run``: ``measure(numbers, seconds, warmup, progress)`` with the
    numbers of the option named ``concurrency`` and the options' ``seconds``, ``warmup``."""

    def run(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
        numbers: Sequence[int] = getattr(options, concurrency)
        return measure(numbers, options.seconds, options.warmup, progress)

    return run
