"""The ``election`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

import trioraft
import trioraft.testing

from ._base import (
    _SERVER_NAMES,
    BenchOptions,
    Record,
    Reporter,
    Result,
    _records_table,
    percentile,
    section,
)
from ._cluster import start_cluster


# -------------------------------------------------------------------------- election
@attrs.frozen(kw_only=True)
class ElectionStats(Record):
    """Election times after the leader stops, in seconds of virtual time."""

    trials: int
    median_s: float
    p99_s: float
    max_s: float
    min_s: float
    mean_s: float
    #: Wall-clock seconds the trials took.
    wall_s: float


@attrs.frozen
class _Variant:
    """How the trials of :func:`measure_election_times` differ from the section's."""

    timeouts: tuple[float, float]
    delay: tuple[float, float]
    cap: float


async def _first_leader(
    servers: Mapping[str, trioraft.Server], variant: _Variant | None
) -> trioraft.Server:
    """The first leader, once it has committed a write. In a variant, the first server
    is made to campaign (equal timeouts would never break the first election's tie)."""
    first = servers[_SERVER_NAMES[0]]
    with trio.fail_after(60):
        if variant is not None:
            await first.trigger_election()
        while True:
            leader = servers[await first.await_leader()]
            try:
                await leader.write(1)
                return leader
            except (trioraft.NotLeader, trioraft.OutcomeUnknown):
                await trio.sleep(0.01)  # a stale leader: ask again


async def _election_trial(trial: int, variant: _Variant | None = None) -> float:
    network = trioraft.MemoryNetwork(seed=trial)
    options: dict[str, Any] = {}
    if variant is not None:
        low, high = variant.timeouts
        options = {"min_election_timeout": low, "max_election_timeout": high}
        options["heartbeat_interval"] = min(0.05, low / 3)
        network.set_delay(*variant.delay)
    async with trio.open_nursery() as nursery:
        servers = await start_cluster(
            nursery, network, seed_base=trial * len(_SERVER_NAMES), **options
        )
        leader = await _first_leader(servers, variant)
        survivors = [s for s in servers.values() if s is not leader]
        elected = trio.Event()
        elected_at = math.inf

        def settled() -> bool:
            name = survivors[0].leader()
            return (
                name is not None
                and name != leader.name
                and all(s.leader() == name for s in survivors)
                and servers[name].status().role is trioraft.Role.LEADER
            )

        def observe(event: str, message: object) -> None:
            nonlocal elected_at
            if not elected.is_set() and settled():
                elected_at = trio.current_time()
                elected.set()

        network.add_observer(observe)
        stopped_at = trio.current_time()
        await leader.stop()
        with trio.move_on_after(variant.cap) if variant is not None else trio.fail_after(60):
            await elected.wait()
        if elected.is_set() and not settled():
            raise AssertionError(f"trial {trial}: the new leader did not last")
        nursery.cancel_scope.cancel()
    return elected_at - stopped_at


#: Timeout ranges of Figure 16 of the Raft paper (top), in seconds.
FIGURE16_TIMEOUTS = (
    (0.15, 0.15),
    (0.15, 0.151),
    (0.15, 0.155),
    (0.15, 0.175),
    (0.15, 0.2),
    (0.15, 0.3),
)


def measure_election_times(
    trials: int,
    timeouts: tuple[float, float],
    *,
    delay: tuple[float, float] = (0.005, 0.010),
    cap: float = 10.0,
) -> list[float]:
    """Election times (virtual seconds) of ``trials`` deterministic trials with election
    timeouts drawn from ``timeouts``, one per trial, in trial order; ``math.inf`` for a
    trial that elected no leader within ``cap`` seconds.

    The trials are those of the ``election`` section, with two changes: every message
    is delayed by a seeded random time in ``delay`` (split votes need messages that take
    time: the paper's cluster had a broadcast time of roughly 15 ms), and the first leader
    is made by :meth:`~trioraft.Server.trigger_election`. The heartbeat interval is at
    most a third of the shortest timeout."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    low, high = timeouts
    variant = _Variant((low, high), (delay[0], delay[1]), cap)
    return [
        trioraft.testing.run(_election_trial, trial, variant, seed=trial) for trial in range(trials)
    ]


def measure_election(trials: int, progress: Reporter | None = None) -> ElectionStats:
    """Election time after the leader stops, over ``trials`` deterministic trials
    (seeds ``0 .. trials - 1``), each a fresh :func:`trioraft.testing.run`."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    start = time.perf_counter()
    times: list[float] = []
    for trial in range(trials):
        times.append(trioraft.testing.run(_election_trial, trial, seed=trial))
        if progress is not None and (trial + 1) % 50 == 0 and trial + 1 < trials:
            progress(f"election: {trial + 1}/{trials} trials")
    times.sort()
    return ElectionStats(
        trials=trials,
        median_s=statistics.median(times),
        p99_s=percentile(times, 0.99),
        max_s=times[-1],
        min_s=times[0],
        mean_s=statistics.fmean(times),
        wall_s=time.perf_counter() - start,
    )


def run_election(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``election`` section: :func:`measure_election` with ``options.trials``."""
    progress(f"election: {options.trials} trials (virtual clock) ...")
    stats = measure_election(options.trials, progress)
    progress(
        f"election: median {stats.median_s * 1e3:.1f} ms, p99 {stats.p99_s * 1e3:.1f} ms, "
        f"max {stats.max_s * 1e3:.1f} ms (virtual)"
    )
    return stats.as_json()


def render_election(result: Result) -> list[str]:
    """Table lines for the ``election`` section."""
    lines = _records_table(
        [result],
        "trials: {trials} | min s: {min_s:.3f} | median s: {median_s:.3f} | "
        "mean s: {mean_s:.3f} | p99 s: {p99_s:.3f} | max s: {max_s:.3f}",
    )
    lines.append(
        "virtual seconds from stopping the leader until a survivor leads and the other "
        f"knows it ({result['wall_s']:.1f} s wall)"
    )
    return lines


SECTION = section(
    "election",
    "Election after the leader stops (virtual clock)",
    run_election,
    render_election,
    options=("trials",),
)
