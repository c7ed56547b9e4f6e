"""The ``memory`` section of the benchmark (see :mod:`trioraft.bench`): memory under
endless writes.

A 3-server cluster in one process (:class:`~trioraft.MemoryStorage`, a
:class:`~trioraft.MemoryNetwork`, default options: ``snapshot_threshold`` 10,000,
``snapshot_trailing`` 1,000) takes writes to a :class:`~trioraft.recipes.Counter` from
many writer tasks. At each checkpoint (100k and 1M writes by default) the writers pause,
every server applies all that is committed, and the process's resident memory and each
server's log length are read. The section runs it in a fresh Python process of its own,
so the figures are not those of the sections that ran before.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

import trio

import trioraft
from trioraft._core.options import CoreOptions

from ._base import (
    _SERVER_NAMES,
    BenchOptions,
    Reporter,
    Result,
    _records_table,
    _stderr,
    section,
)
from ._cluster import stable_cluster

__all__ = ["measure_memory", "render_memory", "rss_mb"]

#: Writer tasks that keep the writes flowing.
CONCURRENCY = 256
#: Seconds between two samples of RSS and log length while writing.
SAMPLE_EVERY = 0.1


def rss_mb() -> float:
    """This process's resident set size now, in MB (10^6 bytes): ``VmRSS`` of
    ``/proc/self/status``; where there is none, the peak RSS the ``resource`` module
    reports (an upper bound)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _log_length(server: trioraft.Server) -> int:
    """Entries in the server's log (those not yet compacted into its snapshot)."""
    log = server._node.log
    return log.last_index - log.snapshot_index


class _Writes:
    """The writes issued and completed so far, across checkpoints."""

    def __init__(self) -> None:
        self.issued = 0
        self.completed = 0
        self.failures: list[str] = []
        self.max_log_seen = 0
        self.samples: list[list[float]] = []


async def _write_until(
    leader: trioraft.Server, writes: _Writes, target: int, concurrency: int
) -> None:
    """Keep ``concurrency`` writers busy until ``target`` writes have completed."""

    async def writer() -> None:
        while writes.issued < target:
            writes.issued += 1
            try:
                await leader.write(1)
            except trioraft.RaftError as exc:
                writes.failures.append(f"a write raised {exc!r}")
                return
            writes.completed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(writer)


async def _sample(servers: Sequence[trioraft.Server], writes: _Writes) -> None:
    """Every :data:`SAMPLE_EVERY` seconds: (writes, RSS MB, longest log) into ``writes``."""
    while True:
        longest = max(_log_length(s) for s in servers)
        writes.max_log_seen = max(writes.max_log_seen, longest)
        writes.samples.append([writes.completed, round(rss_mb(), 2), longest])
        await trio.sleep(SAMPLE_EVERY)


async def _settle(servers: Sequence[trioraft.Server], leader: trioraft.Server) -> None:
    """Wait until every server has applied all the leader has committed."""
    commit = leader.status().commit_index
    with trio.fail_after(30):
        while any(s.status().last_applied < commit for s in servers):
            await trio.sleep(0.005)


async def _checkpoint(
    servers: Mapping[str, trioraft.Server], leader: trioraft.Server, writes: _Writes
) -> Result:
    await _settle(list(servers.values()), leader)
    gc.collect()
    lengths = {name: _log_length(s) for name, s in servers.items()}
    writes.samples.append([writes.completed, round(rss_mb(), 2), max(lengths.values())])
    return {
        "writes": writes.completed,
        "rss_mb": rss_mb(),
        "log_lengths": lengths,
        "max_log_length": max(lengths.values()),
        "snapshot_index": leader.status().snapshot_index,
        "counter": await leader.read_dirty(None),
    }


async def _memory_run(checkpoints: Sequence[int], concurrency: int, progress: Reporter) -> Result:
    writes = _Writes()
    rows: list[Result] = []
    async with stable_cluster() as cluster:
        servers, leader = cluster.servers, cluster.leader
        rss_start = rss_mb()
        cluster.nursery.start_soon(_sample, list(servers.values()), writes)
        started = time.perf_counter()
        for target in checkpoints:
            await _write_until(leader, writes, target, concurrency)
            row = await _checkpoint(servers, leader, writes)
            row["wall_s"] = time.perf_counter() - started
            rows.append(row)
            progress(
                f"memory: {row['writes']:,} writes, RSS {row['rss_mb']:.1f} MB, "
                f"longest log {row['max_log_length']:,} ({row['wall_s']:.1f} s)"
            )
            if writes.failures:
                break
    return _summary(rows, writes, rss_start, concurrency)


def _summary(rows: list[Result], writes: _Writes, rss_start: float, concurrency: int) -> Result:
    defaults = CoreOptions()
    bound = defaults.snapshot_threshold + defaults.snapshot_trailing
    errors = writes.failures[:3]
    for row in rows:
        if row["max_log_length"] > bound:
            errors.append(
                f"after {row['writes']:,} writes a log holds {row['max_log_length']:,} "
                f"entries, above snapshot_threshold + snapshot_trailing = {bound:,}"
            )
        if row["counter"] != row["writes"]:
            errors.append(f"the counter is {row['counter']} after {row['writes']} writes")
    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    return {
        "servers": list(_SERVER_NAMES),
        "concurrency": concurrency,
        "snapshot_threshold": defaults.snapshot_threshold,
        "snapshot_trailing": defaults.snapshot_trailing,
        "log_bound": bound,
        "rss_start_mb": rss_start,
        "checkpoints": rows,
        "rss_ratio": last["rss_mb"] / first["rss_mb"] if len(rows) > 1 else None,
        "max_log_length_seen": writes.max_log_seen,
        "samples": writes.samples,
        "errors": errors,
    }


def measure_memory(
    checkpoints: Sequence[int] = (100_000, 1_000_000),
    concurrency: int = CONCURRENCY,
    progress: Reporter | None = None,
) -> Result:
    """RSS and log lengths of a 3-server in-process cluster after each number of writes
    in ``checkpoints`` (ascending), in a fresh ``trio.run`` of this process."""
    points = list(checkpoints)
    if not points or points != sorted(points) or points[0] < 1:
        raise ValueError(f"checkpoints must be ascending numbers >= 1, got {checkpoints!r}")
    say = progress if progress is not None else (lambda line: None)
    return trio.run(_memory_run, points, concurrency, say)


def measure_memory_in_fresh_process(
    checkpoints: Sequence[int], concurrency: int = CONCURRENCY, progress: Reporter | None = None
) -> Result:
    """:func:`measure_memory` in a new process of this Python (its progress lines are
    passed to ``progress`` as they come)."""
    code = "import sys; from trioraft.bench.memory import _child; sys.exit(_child(sys.argv[1]))"
    arg = json.dumps({"checkpoints": list(checkpoints), "concurrency": concurrency})
    tail: list[str] = []
    # The result goes through a file: a pipe could fill up while progress is read.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, arg], stdout=out, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            tail = [*tail[-20:], line.rstrip()]
            if progress is not None and line.startswith("memory:"):
                progress(line.rstrip())
        status = proc.wait()
        out.seek(0)
        lines = out.read().splitlines()
    if status != 0 or not lines:
        raise RuntimeError("\n".join([f"the memory measurement failed (exit {status}):", *tail]))
    result: Result = json.loads(lines[-1])
    return result


def _child(arg: str) -> int:
    """The fresh process's side: measure, print the result as one JSON line."""
    params = json.loads(arg)
    result = measure_memory(params["checkpoints"], params["concurrency"], _stderr)
    print(json.dumps(result, allow_nan=False), flush=True)
    return 0


def run_memory(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
    """The ``memory`` section: :func:`measure_memory` in a fresh process."""
    writes = ", ".join(f"{w:,}" for w in options.memory_writes)
    progress(f"memory: a fresh process writes to a counter; checkpoints at {writes} writes ...")
    return measure_memory_in_fresh_process(options.memory_writes, CONCURRENCY, progress)


def render_memory(result: Result) -> list[str]:
    """Table lines for the ``memory`` section."""
    names = result["servers"]
    rows = [
        {**r, **{f"log_{n}": r["log_lengths"][n] for n in names}} for r in result["checkpoints"]
    ]
    logs = " | ".join(f"log {n}: {{log_{n}:,}}" for n in names)
    lines = _records_table(
        rows,
        f"writes: {{writes:,}} | RSS MB: {{rss_mb:.1f}} | {logs} | max log: {{max_log_length:,}} | "
        "snapshot: {snapshot_index:,} | wall s: {wall_s:.1f}",
    )
    ratio = result["rss_ratio"]
    lines.append(
        f"RSS before the writes {result['rss_start_mb']:.1f} MB"
        + (f"; RSS last / first checkpoint = {ratio:.3f} (target <= 1.2)" if ratio else "")
    )
    lines.append(
        f"log bound: snapshot_threshold + snapshot_trailing = {result['log_bound']:,} "
        f"(longest log sampled while writing: {result['max_log_length_seen']:,}; "
        f"{result['concurrency']} writers, a fresh process)"
    )
    return lines


SECTION = section(
    "memory",
    "Memory under endless writes",
    run_memory,
    render_memory,
    options=("memory_writes",),
)
