"""The ``throughput`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import attrs
import trio

import trioraft
import trioraft.testing

from ._base import (
    BenchOptions,
    Progress,
    Result,
    _num,
    _start_cluster,
    _table,
    percentile,
    register_section,
)


# ------------------------------------------------------------------------ throughput
@attrs.frozen(kw_only=True)
class ThroughputRun:
    """One throughput run: ``concurrency`` writers against a fresh 3-server cluster."""

    concurrency: int
    #: Writes completed after the warm-up.
    writes: int
    #: Seconds from the end of the warm-up to the last write's completion.
    elapsed_s: float
    writes_per_s: float
    #: Latency percentiles of the measured writes (``None`` if there were none).
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: Writes completed during the warm-up (not measured).
    warmup_writes: int
    #: The leader's counter at the end (should be ``writes + warmup_writes``).
    counter: int
    #: CPU seconds this process used while measuring (:func:`time.process_time`).
    cpu_s: float
    #: ``cpu_s / elapsed_s``: about 1 when the run had a CPU to itself, less when other
    #: processes took some (then every figure of the run is pessimistic).
    cpu_share: float
    #: CPU microseconds per measured write: steadier than writes/s on a busy machine.
    cpu_us_per_write: float | None
    #: Sanity-check failures (empty when all is well).
    errors: tuple[str, ...] = ()
    #: Latencies of the measured writes in seconds, ascending (for plots; not in the JSON).
    latencies: tuple[float, ...] = attrs.field(default=(), repr=False, eq=False)

    def as_json(self) -> Result:
        """This run as a JSON-able dict (without the latencies)."""
        out = attrs.asdict(self, filter=lambda a, v: a.name != "latencies")
        out["errors"] = list(self.errors)
        return out


#: The measured write latencies (seconds, ascending) of the last ``throughput`` section
#: run, by concurrency: kept in memory for ``--plot``, not put in the report.
LATENCIES: dict[int, tuple[float, ...]] = {}


async def _throughput_run(concurrency: int, seconds: float, warmup: float) -> ThroughputRun:
    network = trioraft.MemoryNetwork(seed=0)
    perf = time.perf_counter
    latencies: list[float] = []
    failures: list[str] = []
    completed = 0
    cpu_start: float | None = None
    cpu = time.process_time
    async with trio.open_nursery() as nursery:
        servers = await _start_cluster(nursery, network, seed_base=0)
        with trio.fail_after(30):
            leader = await _await_stable_leader(servers)
        term = leader.status().term
        write = leader.write
        measure_from = perf() + warmup
        stop_at = measure_from + seconds

        async def writer() -> None:
            nonlocal completed, cpu_start
            while True:
                t0 = perf()
                if t0 >= stop_at:
                    return
                try:
                    await write(1)
                except trioraft.RaftError as exc:
                    failures.append(f"C={concurrency}: a write raised {exc!r}")
                    return
                t1 = perf()
                completed += 1
                if t1 >= measure_from:
                    if cpu_start is None:
                        cpu_start = cpu()
                    latencies.append(t1 - t0)

        async with trio.open_nursery() as writers:
            for _ in range(concurrency):
                writers.start_soon(writer)
        finished = perf()
        cpu_s = cpu() - cpu_start if cpu_start is not None else 0.0
        counter: int = await leader.read_dirty(None)
        status = leader.status()
        nursery.cancel_scope.cancel()

    errors = list(failures[:3])
    if len(failures) > 3:
        errors.append(f"C={concurrency}: ... and {len(failures) - 3} more writes raised")
    if counter != completed:
        errors.append(
            f"C={concurrency}: the leader's counter is {counter} but {completed} writes completed"
        )
    if status.role is not trioraft.Role.LEADER or status.term != term:
        errors.append(
            f"C={concurrency}: leadership changed during the run "
            f"(term {term} -> {status.term}, role now {status.role.value})"
        )
    latencies.sort()
    measured = len(latencies)
    elapsed = max(finished - measure_from, 1e-9)
    if not measured:
        errors.append(f"C={concurrency}: no write completed after the warm-up")
    return ThroughputRun(
        concurrency=concurrency,
        writes=measured,
        elapsed_s=elapsed,
        writes_per_s=measured / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1e3 if measured else None,
        p99_ms=percentile(latencies, 0.99) * 1e3 if measured else None,
        max_ms=latencies[-1] * 1e3 if measured else None,
        warmup_writes=completed - measured,
        counter=counter,
        cpu_s=cpu_s,
        cpu_share=cpu_s / elapsed,
        cpu_us_per_write=cpu_s / measured * 1e6 if measured else None,
        errors=tuple(errors),
        latencies=tuple(latencies),
    )


async def _await_stable_leader(servers: Mapping[str, trioraft.Server]) -> trioraft.Server:
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


def measure_throughput(concurrency: int, seconds: float, warmup: float = 0.5) -> ThroughputRun:
    """Run ``concurrency`` writers against a fresh in-process 3-server cluster, in a new
    ``trio.run`` on the real clock, for ``warmup`` then ``seconds`` seconds."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return trio.run(_throughput_run, concurrency, seconds, warmup)


def run_throughput(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``throughput`` section: :func:`measure_throughput` for each concurrency."""
    runs: list[Result] = []
    errors: list[str] = []
    LATENCIES.clear()
    for c in options.concurrency:
        progress(f"throughput: C={c}, {options.warmup:g} s warm-up + {options.seconds:g} s ...")
        run = measure_throughput(c, options.seconds, options.warmup)
        progress(
            f"throughput: C={c}: {run.writes_per_s:,.0f} writes/s, "
            f"p50 {_num(run.p50_ms, '.3f')} ms, p99 {_num(run.p99_ms, '.3f')} ms"
        )
        runs.append(run.as_json())
        LATENCIES[c] = run.latencies
        errors.extend(run.errors)
    out: Result = {"runs": runs, "errors": errors}
    if 1 in options.concurrency:
        one = runs[options.concurrency.index(1)]
        out["one_at_a_time"] = {"p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"]}
    return out


def render_throughput(result: Result) -> list[str]:
    """Table lines for the ``throughput`` section."""
    rows = [
        [
            str(r["concurrency"]),
            f"{r['writes_per_s']:,.0f}",
            _num(r["p50_ms"], ".3f"),
            _num(r["p99_ms"], ".3f"),
            _num(r["max_ms"], ".3f"),
            f"{r['writes']:,}",
            _num(r["cpu_us_per_write"], ".1f"),
            f"{r['cpu_share']:.2f}",
        ]
        for r in result["runs"]
    ]
    header = ["C", "writes/s", "p50 ms", "p99 ms", "max ms", "writes", "CPU us/write", "CPU share"]
    lines = _table(header, rows)
    one = result.get("one_at_a_time")
    if one is not None:
        lines.append(
            f"one write at a time (C=1): p50 {_num(one['p50_ms'], '.3f')} ms, "
            f"p99 {_num(one['p99_ms'], '.3f')} ms"
        )
    lines.append(
        "CPU share: CPU s / wall s while measuring (well below 1: other processes took CPU)"
    )
    return lines


register_section(
    "throughput", "Throughput and write latency (real clock)", run_throughput, render_throughput
)
