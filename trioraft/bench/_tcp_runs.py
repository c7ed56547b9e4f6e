"""One measurement on a cluster of server processes of the ``tcp`` section: a throughput
point (C writes kept in flight on the leader), or writes one at a time. Shared by the
section's figures (:mod:`trioraft.bench.tcp`) and its paired rounds
(:mod:`trioraft.bench._tcp_paired`)."""

from __future__ import annotations

import statistics
from typing import Any

from ._base import Result, percentile
from ._node_common import DRAIN_TIMEOUT
from ._tcp_processes import _ProcessCluster

__all__ = [
    "TARGET_THROUGHPUT_RATIO",
    "one_at_a_time",
    "ratio_target",
    "target",
    "throughput_point",
]

#: The issue's throughput target: trioraft's writes/s over PySyncObj's best (reported,
#: never asserted).
TARGET_THROUGHPUT_RATIO = 3.0


def target(name: str, value: Any, limit: Any, met: bool | None) -> Result:
    """One target of the section's list: its value, its limit, whether it is met
    (``None``: no figure to judge)."""
    return {"target": name, "value": value, "limit": limit, "met": met}


def ratio_target(name: str, value: float | None, limit: float, *, at_least: bool = True) -> Result:
    """A target on a ratio: met when ``value`` is at least (or, ``at_least=False``, at
    most) ``limit``."""
    met = None if value is None else (value >= limit if at_least else value <= limit)
    return target(name, value, f"{'>=' if at_least else '<='} {limit:g}", met)


def throughput_point(
    cluster: _ProcessCluster, c: int, seconds: float, warmup: float, errors: list[str]
) -> Result:
    """One throughput figure: ``c`` writes in flight on the leader, ``warmup`` seconds
    unmeasured, then ``seconds`` measured; sanity failures go to ``errors``."""
    leader, _ = cluster.wait_stable()
    followers = [node for node in cluster.nodes if node is not leader]
    cpu_before = sum(float(node.call("mem")["cpu_s"]) for node in followers)
    timeout = warmup + seconds + DRAIN_TIMEOUT + 30
    r = leader.call(
        "bench", timeout, concurrency=c, seconds=seconds, warmup=warmup, api=cluster.system.api
    )
    cpu = sum(float(node.call("mem")["cpu_s"]) for node in followers) - cpu_before
    # Both followers together, over every write of the run (warm-up and drain included).
    r["followers_cpu_us_per_write"] = cpu / r["total_ok"] * 1e6 if r["total_ok"] else None
    where = f"{cluster.system.label}, C={c}"
    if r["writes"] <= 0:
        errors.append(f"{where}: no write committed in the window")
    if r["errors"]:
        errors.append(f"{where}: writes failed: {r['errors']}")
    if not r["drained"]:
        errors.append(f"{where}: writes still in flight {DRAIN_TIMEOUT:g} s after the window")
    if r["counter_delta"] != r["total_ok"]:
        errors.append(
            f"{where}: the leader's counter grew by {r['counter_delta']} but "
            f"{r['total_ok']} writes were acknowledged"
        )
    return {"concurrency": c, **{k: v for k, v in r.items() if k != "concurrency"}}


def one_at_a_time(cluster: _ProcessCluster, n: int, errors: list[str]) -> Result:
    """``n`` writes in a row on the leader: latency percentiles."""
    leader, _ = cluster.wait_stable()
    r = leader.call("sync", n * 0.5 + 60, n=n, max_seconds=n * 0.5 + 30)
    latencies = sorted(float(x) for x in r["latencies_ms"])
    if len(latencies) < n or r["errors"]:
        errors.append(
            f"{cluster.system.label}: {len(latencies)} of {n} one-at-a-time writes "
            f"succeeded (errors: {r['errors']})"
        )
    if not latencies:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
        "min_ms": latencies[0],
        "max_ms": latencies[-1],
    }
