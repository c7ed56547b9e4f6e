"""The ``reads`` section of the benchmark (see :mod:`trioraft.bench`): linearizable reads
per second, on the leader (ReadIndex), on the leader under a lease, and spread over every
server with follower reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import _SERVER_NAMES, Reporter, Result, _num, quiet, section
from ._cluster import (
    closed_loop,
    leadership_kept,
    loop_runs,
    loop_section,
    loop_table,
    stable_cluster,
)

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


async def _reads_run(concurrency: int, seconds: float, warmup: float, mode: str) -> Result:
    options, spread = MODES[mode]
    failures: list[str] = []
    async with stable_cluster(**options) as cluster:
        leader = cluster.leader
        expected = await leader.write(1)
        targets = list(cluster.servers.values()) if spread else [leader]

        async def read(i: int) -> None:
            value = await targets[i % len(targets)].read(None)
            if value != expected and len(failures) < 3:
                failures.append(f"{mode} C={concurrency}: a read returned {value!r}")

        sent = cluster.network.statistics().sent
        loop = await closed_loop(read, concurrency, seconds, warmup)
        sent = cluster.network.statistics().sent - sent
        kept = leadership_kept(cluster, f"{mode} C={concurrency}")
    return {
        "mode": mode,
        **loop.summary("read"),
        # Messages between the servers per read (warm-up included).
        "messages_per_read": sent / max(loop.total, 1),
        "errors": [*failures, *loop.failures[:3], *kept],
    }


def measure_reads(
    concurrency: Sequence[int], seconds: float, warmup: float = 0.5, progress: Reporter = quiet
) -> Result:
    """Linearizable reads/s of a 3-server in-process cluster, for each mode of
    :data:`MODES` and each number of readers, each in a fresh ``trio.run`` on the real
    clock: every reader loops ``await server.read(None)``."""
    runs: list[Result] = []
    for mode in MODES:
        where = f"reads: {mode}"
        runs += loop_runs(where, "read", _reads_run, concurrency, seconds, warmup, progress, mode)
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


def render_reads(result: Result) -> list[str]:
    """Table lines for the ``reads`` section."""
    lines = loop_table(result["runs"], "read", "mode", "messages/read: {messages_per_read:.3f}")
    lines.extend(f"{mode}: {text}" for mode, text in _DESCRIPTION.items())
    top = result["top"]
    lines.append(
        f"C={top['concurrency']}: lease / leader ReadIndex = "
        f"{_num(top['lease_over_leader'], '.2f')} (target >= 3), spread / leader ReadIndex = "
        f"{_num(top['spread_over_leader'], '.2f')} (target >= 1.5)"
    )
    return lines


SECTION = section(
    "reads",
    "Linearizable reads (real clock)",
    loop_section(measure_reads, "reads_concurrency"),
    render_reads,
    options=("seconds", "warmup", "reads_concurrency"),
)
