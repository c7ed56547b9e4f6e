"""The ``catchup`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

import trioraft
import trioraft.testing
from trioraft.recipes import Counter

from ._base import BenchOptions, Record, Reporter, Result, _records_table, section
from ._cluster import stable_cluster


# -------------------------------------------------------------------------- catch-up
@attrs.frozen(kw_only=True)
class CatchUpRun(Record):
    """One catch-up: a new server joins a cluster whose log holds ``entries`` entries."""

    clock: str
    entries: int
    #: Seconds (on this run's clock) for ``add_server`` of an empty server to return:
    #: learner added, log replicated, promotion to voter committed.
    catch_up_s: float
    #: Wall seconds of the same call.
    catch_up_wall_s: float
    #: Entries per wall second the cluster wrote while filling the log (the baseline).
    fill_writes_per_s: float
    #: Entries per wall second the new server received during catch-up.
    catch_up_entries_per_s: float


async def _catch_up_trial(entries: int, clock: str) -> CatchUpRun:
    # The counter snapshots; compaction stays off here, so the new server catches up over
    # the whole log (what this section measures), not from a snapshot.
    whole_log: dict[str, Any] = {"snapshot_threshold": entries + 1_000}
    async with stable_cluster(**whole_log) as cluster:
        leader = cluster.leader
        fill_start = time.perf_counter()
        remaining = entries

        async def writer() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await leader.write(1)

        async with trio.open_nursery() as writers:
            for _ in range(256):
                writers.start_soon(writer)
        fill_wall = time.perf_counter() - fill_start
        newcomer = await trioraft.start_server(
            cluster.nursery, Counter, 0, name="raft4", network=cluster.network, seed=99, **whole_log
        )
        start, wall_start = trio.current_time(), time.perf_counter()
        await leader.add_server(newcomer.name)
        elapsed, wall = trio.current_time() - start, time.perf_counter() - wall_start
        if newcomer.name not in leader.status().voters:
            raise AssertionError("the new server was not promoted")
        if newcomer.status().last_log_index < entries:
            raise AssertionError("the new server was promoted without the log")
    return CatchUpRun(
        clock=clock,
        entries=entries,
        catch_up_s=elapsed,
        catch_up_wall_s=wall,
        fill_writes_per_s=entries / fill_wall,
        catch_up_entries_per_s=entries / wall,
    )


def measure_catch_up(entries: int) -> list[CatchUpRun]:
    """Catch-up of a new server over an ``entries``-entry log: once on the virtual clock
    (deterministic, :func:`trioraft.testing.run`), once on the real clock."""
    if entries < 1:
        raise ValueError(f"entries must be at least 1, got {entries}")
    virtual = trioraft.testing.run(_catch_up_trial, entries, "virtual", seed=0)
    real = trio.run(_catch_up_trial, entries, "real")
    return [virtual, real]


def run_catch_up(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``catchup`` section: :func:`measure_catch_up` with ``options.catchup_entries``."""
    progress(f"catch-up: a new server over a {options.catchup_entries:,}-entry log ...")
    runs = measure_catch_up(options.catchup_entries)
    return {"runs": [r.as_json() for r in runs]}


def render_catch_up(result: Result) -> list[str]:
    """Table lines for the ``catchup`` section."""
    runs = [
        {**r, "ratio": r["catch_up_entries_per_s"] / r["fill_writes_per_s"]} for r in result["runs"]
    ]
    lines = _records_table(
        runs,
        "clock: {clock} | entries: {entries:,} | catch-up s: {catch_up_s:.3f} | "
        "wall s: {catch_up_wall_s:.3f} | entries/s: {catch_up_entries_per_s:,.0f} | "
        "fill w/s: {fill_writes_per_s:,.0f} | ratio: {ratio:.2f}",
    )
    lines.append(
        "add_server of an empty server: learner, catch-up rounds, promotion committed; "
        "ratio = catch-up entries/s over the cluster's own write rate while filling"
    )
    return lines


SECTION = section(
    "catchup",
    "Catch-up of a new server (learner, then voter)",
    run_catch_up,
    render_catch_up,
    options=("catchup_entries",),
)
