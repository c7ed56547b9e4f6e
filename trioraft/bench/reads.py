"""The ``reads`` section of the benchmark (see :mod:`trioraft.bench`): linearizable reads
per second, on the leader (ReadIndex), on the leader under a lease, and spread over every
server with follower reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

import trioraft

from ._base import (
    _SERVER_NAMES,
    BenchOptions,
    Progress,
    Result,
    _num,
    _start_cluster,
    _table,
    register_section,
)
from .floor import closed_loop
from .throughput import _await_stable_leader

__all__ = ["MODES", "measure_reads", "render_reads"]

#: The read modes: name -> (server options, whether readers spread over every server).
MODES: dict[str, tuple[dict[str, Any], bool]] = {
    "leader": ({}, False),
    "lease": ({"lease_reads": True}, False),
    "spread": ({"follower_reads": True}, True),
}
_DESCRIPTION = {
    "leader": "on the leader, ReadIndex (a heartbeat round per batch of reads)",
    "lease": "on the leader, lease_reads=True",
    "spread": "follower_reads=True, readers spread over the 3 servers",
}


async def _reads_run(mode: str, concurrency: int, seconds: float, warmup: float) -> Result:
    options, spread = MODES[mode]
    network = trioraft.MemoryNetwork(seed=0)
    failures: list[str] = []
    async with trio.open_nursery() as nursery:
        servers = await _start_cluster(nursery, network, seed_base=0, **options)
        with trio.fail_after(30):
            leader = await _await_stable_leader(servers)
        expected = await leader.write(1)
        term = leader.status().term
        targets = list(servers.values()) if spread else [leader]

        async def read(i: int) -> None:
            value = await targets[i % len(targets)].read(None)
            if value != expected and len(failures) < 3:
                failures.append(f"{mode} C={concurrency}: a read returned {value!r}")

        sent = network.statistics().sent
        loop = await closed_loop(read, concurrency, seconds, warmup)
        sent = network.statistics().sent - sent
        status = leader.status()
        nursery.cancel_scope.cancel()
    errors = [*failures, *loop.failures[:3]]
    if status.role is not trioraft.Role.LEADER or status.term != term:
        errors.append(f"{mode} C={concurrency}: leadership changed during the run")
    return {
        "mode": mode,
        "concurrency": concurrency,
        "reads": loop.operations,
        "reads_per_s": loop.per_s,
        "p50_ms": loop.percentile_ms(0.5),
        "p99_ms": loop.percentile_ms(0.99),
        "cpu_share": loop.cpu_share,
        # Messages between the servers per read (warm-up included).
        "messages_per_read": sent / max(loop.operations + loop.warmup_operations, 1),
        "errors": errors,
    }


def measure_reads(
    concurrency: Sequence[int],
    seconds: float,
    warmup: float = 0.5,
    progress: Progress | None = None,
) -> Result:
    """Linearizable reads/s of a 3-server in-process cluster, for each mode of
    :data:`MODES` and each number of readers, each in a fresh ``trio.run`` on the real
    clock: every reader loops ``await server.read(None)``."""
    say = progress if progress is not None else (lambda line: None)
    runs: list[Result] = []
    for mode in MODES:
        for c in concurrency:
            say(f"reads: {mode}, C={c}, {warmup:g} s warm-up + {seconds:g} s ...")
            run = trio.run(_reads_run, mode, c, seconds, warmup)
            say(f"reads: {mode} C={c}: {run['reads_per_s']:,.0f} reads/s")
            runs.append(run)
    by = {(r["mode"], r["concurrency"]): r["reads_per_s"] for r in runs}
    top = max(concurrency)
    leader = by["leader", top]
    return {
        "servers": list(_SERVER_NAMES),
        "runs": runs,
        "top": {
            "concurrency": top,
            "lease_over_leader": by["lease", top] / leader if leader else None,
            "spread_over_leader": by["spread", top] / leader if leader else None,
        },
        "errors": [e for r in runs for e in r["errors"]],
    }


def run_reads(options: BenchOptions, results: Mapping[str, Result], progress: Progress) -> Result:
    """The ``reads`` section: :func:`measure_reads` with ``options.reads_concurrency``."""
    return measure_reads(options.reads_concurrency, options.seconds, options.warmup, progress)


def render_reads(result: Result) -> list[str]:
    """Table lines for the ``reads`` section."""
    rows = [
        [
            r["mode"],
            str(r["concurrency"]),
            f"{r['reads_per_s']:,.0f}",
            _num(r["p50_ms"], ".3f"),
            _num(r["p99_ms"], ".3f"),
            f"{r['messages_per_read']:.3f}",
            f"{r['cpu_share']:.2f}",
        ]
        for r in result["runs"]
    ]
    header = ["mode", "C", "reads/s", "p50 ms", "p99 ms", "messages/read", "CPU share"]
    lines = _table(header, rows)
    lines.extend(f"{mode}: {text}" for mode, text in _DESCRIPTION.items())
    top = result["top"]
    lines.append(
        f"C={top['concurrency']}: lease / leader ReadIndex = "
        f"{_num(top['lease_over_leader'], '.2f')} (target >= 3), spread / leader ReadIndex = "
        f"{_num(top['spread_over_leader'], '.2f')} (target >= 1.5)"
    )
    return lines


register_section("reads", "Linearizable reads (real clock)", run_reads, render_reads)
