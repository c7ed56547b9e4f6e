"""Paired rounds of the ``tcp`` section: the systems compared take turns, and each ratio
is computed within a round (see :mod:`trioraft.bench.tcp`).

Why. The section's main figures measure one system after the other: trioraft's phases
first, PySyncObj's minutes later. On a shared machine whose CPU speed moves by up to two
times within minutes (docs/performance.rst gives examples), a ratio of two figures taken
minutes apart measures that drift as much as the two systems, and the same code gets
opposite verdicts from one run to the next. Pairing removes most of it: the two figures
of a ratio are taken a few seconds apart.

Method. The clusters compared are started together (a cluster that is not being measured
is idle but for its heartbeats). Each round measures each of them once, with a short
window (``seconds``, after ``warmup`` seconds unmeasured), in an order that rotates by one
from round to round, and computes every ratio from that round's figures. A target's
verdict is the median of its ratios over the rounds; every round's figures are in the
result.

- Writes, for each C of ``concurrency``: trioraft on MemoryStorage with a task per write
  and with :meth:`~trioraft.Server.submit`, PySyncObj with batching off and on; ratio:
  trioraft's writes/s over the better PySyncObj's of the round.
- One write at a time (``sync_writes`` writes): trioraft on MemoryStorage and PySyncObj
  with batching off; ratio: trioraft's p50 over PySyncObj's (at most 1: met).
- Reads (``readers`` readers; trioraft only): leader ReadIndex, spread over the three
  servers (follower reads), and lease reads on the leader of a second cluster; ratios:
  spread over ReadIndex, lease over ReadIndex.

Without PySyncObj installed, the writes rounds measure trioraft alone and their ratios are
``None``. A turn that fails (its sanity checks, or a node) gives no figure, and the rounds
go on. Failures of trioraft fail the run, PySyncObj's are reported (but a cluster that
cannot start fails the run whichever system it is).
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from ._base import Reporter, Result, _num, _table
from ._tcp_processes import (
    PYSYNCOBJ_BATCH,
    PYSYNCOBJ_NO_BATCH,
    TRIORAFT_LEASE_READS,
    TRIORAFT_MEMORY,
    TRIORAFT_READS,
    TRIORAFT_SUBMIT,
    _ProcessCluster,
    _ProcessRun,
    _System,
    recorded,
)
from ._tcp_reads import (
    TARGET_LEASE_RATIO,
    TARGET_SPREAD_RATIO,
    ReadParams,
    _check,
    _prepare,
    _read_run,
)
from ._tcp_runs import TARGET_THROUGHPUT_RATIO, one_at_a_time, ratio_target, throughput_point

__all__ = ["PairedParams", "measure_paired", "paired_targets", "render_paired"]

T = TypeVar("T")

#: The PySyncObj configurations; a round's PySyncObj figure is the better of the two.
_PYSYNCOBJ = (PYSYNCOBJ_NO_BATCH.key, PYSYNCOBJ_BATCH.key)


@attrs.frozen(kw_only=True)
class PairedParams:
    """How many rounds, how long a window, and what each round measures."""

    rounds: int
    seconds: float
    warmup: float = 1.0
    concurrency: tuple[int, ...] = (256, 4096)
    sync_writes: int = 100
    #: Readers of the reads rounds (0: no reads rounds).
    readers: int = 256


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` rotated by ``round_`` places: each round starts one later."""
    k = round_ % len(items) if items else 0
    return [*items[k:], *items[:k]]


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _over(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _best_pysyncobj(figures: Mapping[str, float | None]) -> float | None:
    known = [v for key in _PYSYNCOBJ if (v := figures.get(key)) is not None]
    return max(known) if known else None


def _turn(
    where: str, failures: list[str], progress: Reporter, measure: Callable[[], float | None]
) -> float | None:
    """One system's turn: ``measure()``, or ``None`` if it added sanity failures to
    ``failures`` (a leadership lost in the window, writes that failed) or a node failed
    (recorded there too). A failed turn is no figure, its round's ratios are ``None``
    (the medians leave them out), and the rounds go on."""
    before = len(failures)
    value = None
    with recorded(where, failures, progress):
        value = measure()
    return value if len(failures) == before else None


def _writes_per_s(cluster: _ProcessCluster, c: int, p: PairedParams, failures: list[str]) -> float:
    return float(throughput_point(cluster, c, p.seconds, p.warmup, failures)["writes_per_s"])


def _p50_ms(cluster: _ProcessCluster, p: PairedParams, failures: list[str]) -> float | None:
    p50: float | None = one_at_a_time(cluster, p.sync_writes, failures)["p50_ms"]
    return p50


def _reads_per_s(run_mode: Callable[[], Result], failures: list[str]) -> float:
    result = run_mode()
    failures.extend(_check(result))
    return float(result["reads_per_s"])


def _errors_of(key: str, trioraft: list[str], pysyncobj: list[str]) -> list[str]:
    return pysyncobj if key in _PYSYNCOBJ else trioraft


def _write_rounds(
    clusters: Mapping[str, _ProcessCluster],
    p: PairedParams,
    errors: tuple[list[str], list[str]],
    progress: Reporter,
) -> list[Result]:
    """Each C: every cluster once per round, in rotating order; ratios per round."""
    out = []
    for c in p.concurrency:
        rounds: list[dict[str, float | None]] = []
        for r in range(p.rounds):
            figures: dict[str, float | None] = {}
            for key in rotated(list(clusters), r):
                failures = _errors_of(key, *errors)
                point = functools.partial(_writes_per_s, clusters[key], c, p, failures)
                figures[key] = _turn(f"paired {key}, C={c}", failures, progress, point)
            rounds.append(figures)
            progress(f"tcp: paired C={c}, round {r + 1}/{p.rounds}: " + ", ".join(
                f"{key} {_num(value, ',.0f')}" for key, value in figures.items()
            ))  # fmt: skip
        pso = [_best_pysyncobj(f) for f in rounds]
        memory = [_over(f[TRIORAFT_MEMORY.key], b) for f, b in zip(rounds, pso, strict=True)]
        submit = [_over(f[TRIORAFT_SUBMIT.key], b) for f, b in zip(rounds, pso, strict=True)]
        out.append({
            "concurrency": c,
            "rounds": rounds,
            "memory_ratios": memory,
            "submit_ratios": submit,
            "memory_over_pysyncobj": _median(memory),
            "submit_over_pysyncobj": _median(submit),
        })  # fmt: skip
    return out


def _sync_rounds(
    clusters: Mapping[str, _ProcessCluster],
    p: PairedParams,
    errors: tuple[list[str], list[str]],
    progress: Reporter,
) -> Result:
    """One write at a time: trioraft's and PySyncObj's (batching off) p50, per round."""
    keys = [k for k in (TRIORAFT_MEMORY.key, PYSYNCOBJ_NO_BATCH.key) if k in clusters]
    rounds: list[dict[str, float | None]] = []
    for r in range(p.rounds):
        figures: dict[str, float | None] = {}
        for key in rotated(keys, r):
            failures = _errors_of(key, *errors)
            p50 = functools.partial(_p50_ms, clusters[key], p, failures)
            figures[key] = _turn(f"paired {key}, one at a time", failures, progress, p50)
        rounds.append(figures)
        progress(f"tcp: paired one at a time, round {r + 1}/{p.rounds}: " + ", ".join(
            f"{key} {_num(value, '.3f')} ms" for key, value in figures.items()
        ))  # fmt: skip
    ratios = [_over(f.get(TRIORAFT_MEMORY.key), f.get(PYSYNCOBJ_NO_BATCH.key)) for f in rounds]
    return {
        "writes": p.sync_writes,
        "rounds": rounds,
        "memory_ratios": ratios,
        "memory_over_pysyncobj": _median(ratios),
    }


def _read_rounds(
    run: _ProcessRun, p: PairedParams, errors: list[str], progress: Reporter
) -> Result:
    """Leader ReadIndex, spread and lease reads, each once per round, in rotating order."""
    params = ReadParams(readers=p.readers, seconds=p.seconds, warmup=p.warmup)
    rounds: list[dict[str, float | None]] = []
    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(run.cluster(TRIORAFT_READS))
        lease = stack.enter_context(run.cluster(TRIORAFT_LEASE_READS))
        (leader, value), (lease_leader, lease_value) = _prepare(plain), _prepare(lease)
        modes = {
            "leader": lambda: _read_run(plain, leader, value, "leader", False, params),
            "spread": lambda: _read_run(plain, leader, value, "spread", True, params),
            "lease": lambda: _read_run(lease, lease_leader, lease_value, "lease", False, params),
        }
        for r in range(p.rounds):
            figures: dict[str, float | None] = {}
            for mode in rotated(list(modes), r):
                reads = functools.partial(_reads_per_s, modes[mode], errors)
                figures[mode] = _turn(f"paired reads {mode}", errors, progress, reads)
            rounds.append(figures)
            progress(f"tcp: paired reads, round {r + 1}/{p.rounds}: " + ", ".join(
                f"{mode} {_num(value, ',.0f')}" for mode, value in figures.items()
            ))  # fmt: skip
    spread = [_over(f["spread"], f["leader"]) for f in rounds]
    leased = [_over(f["lease"], f["leader"]) for f in rounds]
    return {
        "readers": p.readers,
        "rounds": rounds,
        "spread_ratios": spread,
        "lease_ratios": leased,
        "spread_over_leader": _median(spread),
        "lease_over_leader": _median(leased),
    }


def _open_all(
    stack: contextlib.ExitStack, run: _ProcessRun, systems: Sequence[_System]
) -> dict[str, _ProcessCluster]:
    clusters = {s.key: stack.enter_context(run.cluster(s)) for s in systems}
    for cluster in clusters.values():
        cluster.wait_stable()
    return clusters


def measure_paired(
    run: _ProcessRun, p: PairedParams, pysyncobj: bool, progress: Reporter
) -> Result:
    """Every paired figure (see the module's documentation) on fresh clusters of ``run``;
    failures are recorded in the result's ``errors`` (trioraft) and
    ``pysyncobj_errors``."""
    errors: list[str] = []
    pso_errors: list[str] = []
    out: Result = {
        "rounds": p.rounds, "seconds": p.seconds, "warmup": p.warmup,
        "throughput": [], "one_at_a_time": None, "reads": None,
    }  # fmt: skip
    systems = [TRIORAFT_MEMORY, TRIORAFT_SUBMIT]
    if pysyncobj:
        systems += [PYSYNCOBJ_NO_BATCH, PYSYNCOBJ_BATCH]
    with recorded("paired writes", errors, progress), contextlib.ExitStack() as stack:
        clusters = _open_all(stack, run, systems)
        out["throughput"] = _write_rounds(clusters, p, (errors, pso_errors), progress)
        del clusters[TRIORAFT_SUBMIT.key]  # one write at a time: write(), as the main run
        out["one_at_a_time"] = _sync_rounds(clusters, p, (errors, pso_errors), progress)
    if p.readers:
        with recorded("paired reads", errors, progress):
            out["reads"] = _read_rounds(run, p, errors, progress)
    out["errors"] = errors
    out["pysyncobj_errors"] = pso_errors
    return out


def paired_targets(paired: Result | None) -> list[Result]:
    """The issue's targets judged on the paired rounds (median over rounds)."""
    if paired is None:
        return []
    n = paired["rounds"]
    out = []
    for point in paired["throughput"]:
        c = point["concurrency"]
        for key, what in (("memory_over_pysyncobj", "MemoryStorage"),
                          ("submit_over_pysyncobj", "MemoryStorage, submit()")):  # fmt: skip
            name = f"paired ({n} rounds): {what} writes/s at C={c} / PySyncObj's best"
            out.append(ratio_target(name, point[key], TARGET_THROUGHPUT_RATIO))
    one = paired["one_at_a_time"]
    if one is not None:
        name = f"paired ({n} rounds): one-at-a-time p50, MemoryStorage / PySyncObj (batching off)"
        out.append(ratio_target(name, one["memory_over_pysyncobj"], 1.0, at_least=False))
    reads = paired["reads"]
    if reads is not None:
        for key, what, limit in (
            ("spread_over_leader", "follower_reads spread", TARGET_SPREAD_RATIO),
            ("lease_over_leader", "lease_reads", TARGET_LEASE_RATIO),
        ):
            name = f"paired ({n} rounds): reads/s, {what} / leader ReadIndex"
            out.append(ratio_target(name, reads[key], limit))
    return out


def _round_rows(
    label: str, rounds: Sequence[Mapping[str, Any]], ratios: Sequence[tuple[str, Sequence[Any]]],
    fmt: str,
) -> list[list[str]]:  # fmt: skip
    rows = []
    for r, figures in enumerate(rounds):
        cells = [f"{key} {_num(value, fmt)}" for key, value in figures.items()]
        cells += [f"{name} {_num(values[r], '.2f')}" for name, values in ratios]
        rows.append([label, str(r + 1), "; ".join(cells)])
    return rows


def render_paired(paired: Result) -> list[str]:
    """Table lines for the paired rounds."""
    rows: list[list[str]] = []
    for point in paired["throughput"]:
        ratios = [("memory/PySyncObj", point["memory_ratios"]),
                  ("submit()/PySyncObj", point["submit_ratios"])]  # fmt: skip
        rows += _round_rows(f"writes/s, C={point['concurrency']}", point["rounds"], ratios, ",.0f")
    one: Result | None = paired["one_at_a_time"]
    if one is not None:
        rows += _round_rows("one at a time, p50 ms", one["rounds"],
                            [("memory/PySyncObj", one["memory_ratios"])], ".3f")  # fmt: skip
    reads: Result | None = paired["reads"]
    if reads is not None:
        ratios = [
            ("spread/leader", reads["spread_ratios"]),
            ("lease/leader", reads["lease_ratios"]),
        ]
        rows += _round_rows(f"reads/s, {reads['readers']} readers", reads["rounds"], ratios, ",.0f")
    lines = [
        f"paired rounds ({paired['rounds']}; {paired['warmup']:g} s warm-up + "
        f"{paired['seconds']:g} s each; the systems take turns, each ratio within a round):"
    ]
    lines += _table(["figure", "round", "figures and ratios"], rows)
    return lines
