"""The reads of the ``tcp`` section (see :mod:`trioraft.bench.tcp`): linearizable reads/s
of 3 trioraft server processes over TCP, on the leader and spread over every server.

Method. A cluster of 3 processes (MemoryStorage, ``follower_reads=True``) commits
:data:`WRITES_BEFORE_READS` writes on its leader; once the three counters agree, that
value is the one every read must return (no write happens during the reads). The
readers run inside the server processes, as in an application that embeds trioraft,
each a task looping ``await server.read(None)``; the driver starts them with the
``reads`` command of the JSON-lines protocol (``_tcp_node.py``): a warm-up, then a
measured window (the throughput runs' accounting). Modes:

``leader``
    R readers on the leader: ReadIndex, a heartbeat round confirms each batch of reads.
``spread``
    R readers split over the three servers (R/3 each, each on its own server): a
    follower asks the leader for a read index (one request for all the reads waiting at
    each pass of its runtime, up to four in flight), waits until it has applied that
    far, and answers locally.
``lease``
    R readers on the leader of a second cluster, started with ``lease_reads=True``
    (and ``follower_reads=True``): under its lease the leader answers at once.
``spread_lease``
    R readers split over that second cluster's servers: the followers' read-index
    requests are answered at once by the leader under its lease.

Each mode reports reads/s (the sum over the servers that read), the latency p50/p99 of
the window's reads (the servers' histograms merged), and the CPU share of each process
(CPU seconds over wall seconds for the whole command, warm-up and drain included, from
the ``mem`` command before and after). Ratios: spread / leader (target >= 1.5) and lease
/ leader (target >= 3). Sanity checks (failing the run): every read returned the value,
no read failed, the readers finished, the leader kept its leadership.

PySyncObj is not measured: it has no linearizable read that skips its log (no
ReadIndex, no lease, no follower read); its reads of local state may be stale.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import attrs

from ._base import Reporter, Result, _num, _records_table
from ._node_common import DRAIN_TIMEOUT, Histogram
from ._tcp_processes import (
    TRIORAFT_LEASE_READS,
    TRIORAFT_READS,
    NodeError,
    _Child,
    _ProcessCluster,
    _ProcessRun,
    recorded,
)
from ._tcp_runs import ratio_target

#: Writes committed before the reads, so that they read a value the cluster agreed on.
WRITES_BEFORE_READS = 10
#: The issue's targets (reported, not asserted).
TARGET_SPREAD_RATIO = 1.5
TARGET_LEASE_RATIO = 3.0
#: The clusters, each with its modes: (mode, readers spread over every server?).
CLUSTERS = (
    (TRIORAFT_READS, (("leader", False), ("spread", True))),
    (TRIORAFT_LEASE_READS, (("lease", False), ("spread_lease", True))),
)
NOTE = (
    "reads: trioraft only; PySyncObj has no linearizable read that skips its log "
    "(no ReadIndex, no lease, no follower read): its local reads may be stale"
)


@attrs.frozen
class ReadParams:
    """How long and how many: ``readers`` in all, ``warmup`` then ``seconds`` a mode."""

    readers: int
    seconds: float
    warmup: float


def shares(readers: int, servers: int) -> list[int]:
    """``readers`` split over ``servers``, as evenly as can be."""
    return [readers // servers + (i < readers % servers) for i in range(servers)]


def _prepare(cluster: _ProcessCluster) -> tuple[_Child, int]:
    """The stable leader, after :data:`WRITES_BEFORE_READS` writes, and the counter's
    value once the three servers agree."""
    leader, _ = cluster.wait_stable()
    leader.call("sync", 30.0, n=WRITES_BEFORE_READS, max_seconds=20.0)
    values = cluster.wait_converged()
    if len(set(values)) != 1 or values[0] < WRITES_BEFORE_READS:
        raise NodeError(f"the counters did not converge after the writes: {values}")
    return leader, values[0]


def _cpu_seconds(cluster: _ProcessCluster) -> list[float]:
    return [float(node.call("mem")["cpu_s"]) for node in cluster.nodes]


def machine_busy_s() -> float | None:
    """CPU seconds the machine has been busy since boot, over all its CPUs (``/proc/stat``:
    all but idle and iowait, the hypervisor's steal included); ``None`` without it."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _read_run(
    cluster: _ProcessCluster, leader: _Child, value: int, mode: str, spread: bool, p: ReadParams
) -> Result:
    """One mode: the readers on the leader, or split over every server."""
    nodes = cluster.nodes if spread else [leader]
    split = zip(nodes, shares(p.readers, len(nodes)), strict=True)
    readers = {node.pid: n for node, n in split if n}
    cpu0, busy0, mine0 = _cpu_seconds(cluster), machine_busy_s(), time.process_time()
    t0 = time.monotonic()
    for node in cluster.nodes:
        if node.pid in readers:
            fields = {"seconds": p.seconds, "warmup": p.warmup, "expect": value}
            node.send("reads", readers=readers[node.pid], **fields)
    timeout = p.warmup + p.seconds + DRAIN_TIMEOUT + 30
    answers = [node.readline(timeout) for node in cluster.nodes if node.pid in readers]
    wall = time.monotonic() - t0
    cpu = [b - a for a, b in zip(cpu0, _cpu_seconds(cluster), strict=True)]
    busy1, mine = machine_busy_s(), time.process_time() - mine0
    other = None if busy0 is None or busy1 is None else busy1 - busy0 - sum(cpu) - mine
    merged = Histogram()
    for answer in answers:
        merged.merge(answer.pop("histogram"))
    processes = [
        {
            "name": node.name,
            "leader": node is leader,
            "readers": readers.get(node.pid, 0),
            "cpu_share": c / wall,
        }
        for node, c in zip(cluster.nodes, cpu, strict=True)
    ]
    processes.sort(key=lambda process: not process["leader"])
    return {
        "mode": mode,
        "readers": p.readers,
        "reads": sum(a["reads"] for a in answers),
        "reads_per_s": sum(a["reads_per_s"] for a in answers),
        "p50_ms": merged.ms(0.50),
        "p99_ms": merged.ms(0.99),
        "processes": processes,
        "cpu_share_total": sum(c / wall for c in cpu),
        # The CPU other processes of the machine took meanwhile (this driver's excluded).
        "other_cpu_share": None if other is None else max(other, 0.0) / wall,
        "value": value,
        "per_server": answers,
        "still_leader": bool(leader.call("status")["is_leader"]),
    }


def _check(run: Result) -> list[str]:
    """The sanity failures of one mode's run."""
    where, errors = f"reads {run['mode']}", []
    for answer in run["per_server"]:
        if answer["wrong"]:
            errors.append(
                f"{where}: {answer['wrong']} reads returned another value than "
                f"{run['value']} (last read: {answer['value']!r})"
            )
        if answer["errors"]:
            errors.append(f"{where}: reads failed: {answer['errors']}")
        if not answer["drained"]:
            errors.append(f"{where}: reads still in flight {DRAIN_TIMEOUT:g} s after the window")
    if run["reads"] <= 0:
        errors.append(f"{where}: no read completed in the window")
    if not run["still_leader"]:
        errors.append(f"{where}: the leader lost its leadership during the run")
    return errors


def _ratio(runs: Sequence[Result], mode: str) -> float | None:
    rate = {r["mode"]: r["reads_per_s"] for r in runs}
    leader = rate.get("leader")
    return rate[mode] / leader if leader and mode in rate else None


def measure_reads(run: _ProcessRun, p: ReadParams, progress: Reporter) -> Result:
    """Every mode (see the module's documentation), ``p.readers`` readers each, on fresh
    clusters of ``run``; failures are recorded in the result's ``errors``."""
    runs: list[Result] = []
    errors: list[str] = []
    for system, modes in CLUSTERS:
        with recorded(f"reads ({system.label})", errors, progress), run.cluster(system) as cluster:
            leader, value = _prepare(cluster)
            for mode, spread in modes:
                progress(f"tcp: reads {mode}: {p.readers} readers, {p.seconds:g} s ...")
                runs.append(_read_run(cluster, leader, value, mode, spread, p))
                errors += _check(runs[-1])
                progress(f"tcp: reads {mode}: {runs[-1]['reads_per_s']:,.0f} reads/s")
    return {
        "readers": p.readers,
        "cpus": os.cpu_count(),
        "runs": runs,
        "spread_over_leader": _ratio(runs, "spread"),
        "lease_over_leader": _ratio(runs, "lease"),
        "errors": errors,
    }


def targets(reads: Result | None) -> list[Result]:
    """The issue's read targets: (name, value, limit, met)."""
    if reads is None:
        return []
    out = []
    for key, mode, limit in (
        ("spread_over_leader", "follower_reads spread", TARGET_SPREAD_RATIO),
        ("lease_over_leader", "lease_reads on the leader", TARGET_LEASE_RATIO),
    ):
        value = reads[key]
        name = f"reads/s at {reads['readers']} readers, {mode} / leader ReadIndex"
        out.append(ratio_target(name, value, limit))
    return out


def render_reads(reads: Result) -> list[str]:
    """Table lines for the reads of the ``tcp`` section."""
    rows = []
    for r in reads["runs"]:
        cpu = " ".join(f"{p['cpu_share']:.2f}/{p['readers']}" for p in r["processes"])
        rows.append({**r, "cpu": cpu})
    lines = [f"linearizable reads over TCP, {reads['readers']} readers (trioraft only):"]
    lines += _records_table(
        rows,
        "mode: {mode} | reads/s: {reads_per_s:,.0f} | p50 ms: {p50_ms:.3f} | "
        "p99 ms: {p99_ms:.3f} | CPU share / readers, leader first: {cpu} | "
        "CPU total: {cpu_share_total:.2f} | other load: {other_cpu_share:.2f}",
    )
    lines.append(
        "CPU share: CPU s / wall s of each server process over the whole run (warm-up and "
        "drain included); CPU total: their sum; other load: the CPU share other processes "
        f"of the machine took meanwhile ({reads.get('cpus')} CPUs)"
    )
    lines.append(
        f"spread / leader ReadIndex = {_num(reads['spread_over_leader'], '.2f')} "
        f"(target >= {TARGET_SPREAD_RATIO:g}); lease / leader ReadIndex = "
        f"{_num(reads['lease_over_leader'], '.2f')} (target >= {TARGET_LEASE_RATIO:g})"
    )
    return lines
