"""The ``disk`` section of the benchmark (see :mod:`trioraft.bench`): write throughput on
:class:`~trioraft.DiskStorage`, against :class:`~trioraft.MemoryStorage` and against the
raw fsync latency of the same disk, measured in the same run."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._base import (
    _SERVER_NAMES,
    BenchOptions,
    Reporter,
    Result,
    _num,
    percentile,
    quiet,
    section,
)
from ._cluster import closed_loop, loop_runs, loop_table, stable_cluster

__all__ = ["measure_disk", "measure_fsync", "render_disk"]

#: Raw fsyncs timed, half before and half after the DiskStorage runs.
FSYNC_SAMPLES = 200


def _fsync_times(directory: Path, samples: int) -> list[float]:
    """``samples`` times: append a 4 KiB block to a file in ``directory`` and ``os.fsync``
    it; the seconds each took. The file is removed after."""
    path = directory / "fsync-probe.bin"
    block = os.urandom(4096)
    times: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return times


def _fsync_times_together(directories: Sequence[Path], samples: int) -> list[float]:
    """:func:`_fsync_times` in a thread per directory, all at once, each with a file of
    its own in a directory of its own: the latency of an fsync while as many others are
    under way as a cluster's servers make (on one disk, or a disk each)."""
    results: list[list[float]] = [[] for _ in directories]

    def probe(i: int) -> None:
        own = directories[i] / f"fsync-probe-{i}"
        own.mkdir()
        try:
            results[i] = _fsync_times(own, samples)
        finally:
            own.rmdir()

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(len(directories))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [t for times in results for t in times]


def _fsync_summary(times: Sequence[float]) -> Result:
    ordered = sorted(times)
    return {
        "samples": len(ordered),
        "p50_ms": percentile(ordered, 0.5) * 1e3,
        "p99_ms": percentile(ordered, 0.99) * 1e3,
    }


def measure_fsync(directory: str | os.PathLike[str], samples: int = 200) -> Result:
    """Raw fsync latency of the disk under ``directory``: ``samples`` times, append a
    4 KiB block to a file there and ``os.fsync`` it (the file is removed after).
    Returns ``{"samples", "p50_ms", "p99_ms"}``."""
    return _fsync_summary(_fsync_times(Path(directory), samples))


async def _disk_run(
    concurrency: int, seconds: float, warmup: float, storage: str, roots: Sequence[Path]
) -> Result:
    directory = [root / f"{storage}-{concurrency}" for root in roots] if roots else None
    async with stable_cluster(directory=directory) as cluster:
        leader = cluster.leader
        loop = await closed_loop(lambda i: leader.write(1), concurrency, seconds, warmup)
        counter = await leader.read_dirty(None)
        syncs = leader.storage.syncs
    errors = list(loop.failures[:3])
    if counter != loop.total:
        errors.append(f"{storage} C={concurrency}: the counter is {counter}, not {loop.total}")
    return {
        "storage": storage,
        **loop.summary("write"),
        "leader_syncs": syncs,
        "writes_per_sync": loop.total / syncs if syncs else None,
        "errors": errors,
    }


def measure_disk(
    concurrency: Sequence[int],
    seconds: float,
    warmup: float = 0.5,
    progress: Reporter = quiet,
    dirs: Sequence[Path] = (),
) -> Result:
    """Write throughput of a 3-server in-process cluster on :class:`~trioraft.DiskStorage`
    and on :class:`~trioraft.MemoryStorage`, for each concurrency, each in a fresh
    ``trio.run`` on the real clock; and the raw fsync latency of the same disk, alone and
    three at once. The storages are in a temporary directory, or with ``dirs`` (one per
    server) in a temporary directory in each; either way removed after."""
    parents: Sequence[Path | None] = dirs or [None]
    roots = [Path(tempfile.mkdtemp(prefix="trioraft-bench-", dir=d)) for d in parents]
    servers = roots if dirs else roots * len(_SERVER_NAMES)
    try:
        # The disk's own latency drifts with other load: half the samples before the
        # DiskStorage runs, half right after them.
        progress(f"disk: raw fsync latency in {roots[0]} ...")
        before = _fsync_times(roots[0], FSYNC_SAMPLES // 2)
        runs = loop_runs(
            "disk: disk storage", "write", _disk_run, concurrency, seconds, warmup, progress,
            "disk", servers,
        )  # fmt: skip
        after = _fsync_times(roots[0], FSYNC_SAMPLES - len(before))
        together = _fsync_times_together(servers, FSYNC_SAMPLES // 2)
        runs += loop_runs(
            "disk: memory storage", "write", _disk_run, concurrency, seconds, warmup, progress,
            "memory", (),
        )  # fmt: skip
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    fsync = _fsync_summary([*before, *after])
    fsync["p50_before_ms"] = _fsync_summary(before)["p50_ms"]
    fsync["p50_after_ms"] = _fsync_summary(after)["p50_ms"]
    # Context, not the target's baseline: the same probe, one per server, at once.
    fsync["together"] = {
        "writers": len(servers),
        "directories": len(set(servers)),
        **_fsync_summary(together),
    }
    return _summary(fsync, runs, concurrency)


def _summary(fsync: Result, runs: list[Result], concurrency: Sequence[int]) -> Result:
    by = {(r["storage"], r["concurrency"]): r for r in runs}
    top = max(concurrency)
    out: Result = {
        "fsync": fsync,
        "runs": runs,
        "top": {
            "concurrency": top,
            "disk_writes_per_s": by["disk", top]["writes_per_s"],
            "memory_writes_per_s": by["memory", top]["writes_per_s"],
        },
        "errors": [e for r in runs for e in r["errors"]],
    }
    if 1 in concurrency:
        p50 = by["disk", 1]["p50_ms"]
        together = fsync["together"]["p50_ms"]
        out["one_at_a_time"] = {
            "disk_p50_ms": p50,
            "fsync_p50_ms": fsync["p50_ms"],
            "ratio": p50 / fsync["p50_ms"] if p50 is not None and fsync["p50_ms"] > 0 else None,
            "fsync_together_p50_ms": together,
            "ratio_to_together": p50 / together if p50 is not None and together > 0 else None,
        }
    return out


def render_disk(result: Result) -> list[str]:
    """Table lines for the ``disk`` section."""
    lines = loop_table(result["runs"], "write", "storage", "writes/sync: {writes_per_sync:,.1f}")
    fsync = result["fsync"]
    lines.append(
        f"raw fsync of the same disk (4 KiB block, {fsync['samples']} times, half before "
        f"and half after the DiskStorage runs): p50 {fsync['p50_ms']:.3f} ms "
        f"(before {fsync['p50_before_ms']:.3f}, after {fsync['p50_after_ms']:.3f}), "
        f"p99 {fsync['p99_ms']:.3f} ms"
    )
    together = fsync["together"]
    where = "one directory" if together["directories"] == 1 else "a directory each"
    lines.append(
        f"the same probe in {together['writers']} threads at once, a file each, {where} "
        f"(as the cluster's {together['writers']} servers sync): p50 "
        f"{together['p50_ms']:.3f} ms, p99 {together['p99_ms']:.3f} ms"
    )
    one = result.get("one_at_a_time")
    if one is not None and one["ratio"] is not None:
        lines.append(
            f"one write at a time on disk: p50 {one['disk_p50_ms']:.3f} ms = "
            f"{one['ratio']:.2f} x the raw fsync p50 (target <= 3); "
            f"{_num(one['ratio_to_together'], '.2f')} x the p50 of {together['writers']} at once"
        )
    top = result["top"]
    lines.append(
        f"C={top['concurrency']}: disk {top['disk_writes_per_s']:,.0f} writes/s "
        f"(target >= 10,000), memory {top['memory_writes_per_s']:,.0f} writes/s; "
        "writes/sync: writes per transaction of the leader's storage (group commit)"
    )
    return lines


def _run_disk(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
    return measure_disk(
        options.disk_concurrency, options.seconds, options.warmup, progress, options.disk_dirs
    )


SECTION = section(
    "disk",
    "Durable writes on DiskStorage (real clock)",
    _run_disk,
    render_disk,
    options=("seconds", "warmup", "disk_concurrency", "disk_dirs"),
)
