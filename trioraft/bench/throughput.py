"""The ``throughput`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ._base import BenchOptions, Reporter, Result, _num, section
from ._cluster import WriteRun, closed_loop, fresh_run, leadership_kept, loop_table, stable_cluster


# ------------------------------------------------------------------------ throughput
@attrs.frozen(kw_only=True)
class ThroughputRun(WriteRun):
    """One throughput run: ``concurrency`` writers against a fresh 3-server cluster."""

    max_ms: float | None
    #: Writes completed during the warm-up (not measured).
    warmup_writes: int
    #: The leader's counter at the end (should be ``writes + warmup_writes``).
    counter: int
    #: CPU seconds this process used while measuring (:func:`time.process_time`).
    cpu_s: float
    #: CPU microseconds per measured write: steadier than writes/s on a busy machine.
    cpu_us_per_write: float | None
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
    async with stable_cluster() as cluster:
        leader = cluster.leader
        loop = await closed_loop(lambda i: leader.write(1), concurrency, seconds, warmup)
        counter: int = await leader.read_dirty(None)
        kept = leadership_kept(cluster, f"C={concurrency}")
    errors = list(loop.failures[:3])
    if len(loop.failures) > 3:
        errors.append(f"C={concurrency}: ... and {len(loop.failures) - 3} more writes raised")
    if counter != loop.total:
        errors.append(
            f"C={concurrency}: the leader's counter is {counter} but {loop.total} writes completed"
        )
    errors.extend(kept)
    measured = loop.operations
    if not measured:
        errors.append(f"C={concurrency}: no write completed after the warm-up")
    return ThroughputRun.of(
        loop,
        errors,
        max_ms=loop.latencies[-1] * 1e3 if measured else None,
        warmup_writes=loop.warmup_operations,
        counter=counter,
        cpu_s=loop.cpu_s,
        cpu_us_per_write=loop.cpu_s / measured * 1e6 if measured else None,
        latencies=loop.latencies,
    )


def measure_throughput(concurrency: int, seconds: float, warmup: float = 0.5) -> ThroughputRun:
    """Run ``concurrency`` writers against a fresh in-process 3-server cluster, in a new
    ``trio.run`` on the real clock, for ``warmup`` then ``seconds`` seconds."""
    return fresh_run(_throughput_run, concurrency, seconds, warmup)


def run_throughput(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
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
    lines = loop_table(
        result["runs"],
        "write",
        extra="max ms: {max_ms:.3f} | writes: {writes:,} | CPU us/write: {cpu_us_per_write:.1f}",
    )
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


SECTION = section(
    "throughput",
    "Throughput and write latency (real clock)",
    run_throughput,
    render_throughput,
    options=("seconds", "warmup", "concurrency"),
)
