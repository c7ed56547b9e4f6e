"""What sealed records cost, in the ``hostile`` section (see :mod:`trioraft.bench.hostile`).

Two measures:

* **A/B over TCP, paired, with a control.** Three clusters of 3 server processes run side
  by side, with the same random secret: *sealed* (today's mode: the handshake, then every
  frame in an AES-256-GCM record), *handshake only* (the node's
  ``TRIORAFT_BENCH_PLAIN_FRAMES=1``: the same handshake, then frames as they are, as
  before records existed), and a second sealed cluster, the *control* (an A/A
  comparison: how far two identical clusters differ on this machine within the same
  rounds). Each round measures the three, in an order that rotates by one each round:
  writes/s with C writes in flight on the leader (the ``tcp`` section's throughput point:
  a warm-up, then a measured window) and the CPU the three servers spent per write (the
  leader's over the window, the followers' over the whole turn), then one write at a
  time (its p50 latency). Each round's ratios: sealed over handshake only, and sealed
  over the control, for each figure; the verdict is the median over the rounds. The
  issue's target: records cost <= 10% of writes/s at C=256, so the writes/s ratio
  >= 0.9. The servers of the A/B have long election timeouts (see
  :class:`~trioraft.bench.hostile.HostileParams`): a leader deposed in the middle of a
  turn by a machine busy with other work would spoil the turn, and elections are not
  what it measures.
* **Per record, in isolation.** In this process, the CPU time to seal one record
  (:class:`~trioraft._network.frames.RecordSealer`) and to open it and split it into its
  frames (:class:`~trioraft._network.frames.RecordOpener`,
  :func:`~trioraft._network.frames.split_frames`), for real frames: a heartbeat, an
  append acknowledgement, AppendEntries carrying 1 and 256 counter writes, and a 64 KiB
  one; beside the plain path's cost for the same frames (joining them, and splitting
  them). :func:`time.process_time` over enough repetitions to take ~0.2 s per figure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import attrs

from trioraft._core import messages as m
from trioraft._network import wire
from trioraft._network.frames import RecordOpener, RecordSealer, split_frames

from ._base import Reporter, Result, _num, _records_table
from ._tcp_paired import _median, _over, _turn, rotated
from ._tcp_processes import _ProcessCluster, _ProcessRun, _System
from ._tcp_runs import one_at_a_time, ratio_target, throughput_point

__all__ = [
    "CONTROL",
    "PLAIN",
    "SEALED",
    "TARGET_FRAME_RATIO",
    "FrameParams",
    "measure_frames",
    "per_record",
    "render_frames",
]

SEALED = _System("sealed", "trioraft, sealed records", storage="memory")
PLAIN = _System(
    "plain",
    "trioraft, handshake only",
    storage="memory",
    env=(("TRIORAFT_BENCH_PLAIN_FRAMES", "1"),),
)
#: The control: a second cluster exactly like the first (A/A), whose ratio to it shows
#: how much two identical clusters differ on this machine in the same rounds.
CONTROL = _System("sealed_again", "trioraft, sealed records (control)", storage="memory")
#: The figures of a turn, each compared within its round.
FIGURES = ("writes_per_s", "cpu_us_per_write", "p50_ms")
#: The issue's target: sealed writes/s at least this share of handshake-only writes/s.
TARGET_FRAME_RATIO = 0.9
#: CPU seconds each figure of the micro-benchmark takes, about.
MICRO_SECONDS = 0.2


@attrs.frozen(kw_only=True)
class FrameParams:
    """Rounds, the window of each throughput turn, C, and writes one at a time."""

    rounds: int
    seconds: float
    warmup: float = 1.0
    concurrency: int = 256
    sync_writes: int = 200
    #: CPU seconds each figure of the per-record micro-benchmark takes, about.
    micro_seconds: float = MICRO_SECONDS


def _figures(
    cluster: _ProcessCluster, p: FrameParams, errors: list[str], progress: Reporter
) -> dict[str, float | None]:
    """One turn of one cluster: writes/s at C and the CPU the three servers spent per
    write, then the p50 of writes one at a time (``None``: that part failed)."""
    where = cluster.system.key
    point: Result = {}

    def writes() -> float:
        point.update(throughput_point(cluster, p.concurrency, p.seconds, p.warmup, errors))
        return float(point["writes_per_s"])

    def p50() -> float | None:
        value: float | None = one_at_a_time(cluster, p.sync_writes, errors)["p50_ms"]
        return value

    out = {"writes_per_s": _turn(f"frames {where}, C={p.concurrency}", errors, progress, writes)}
    cpu: list[float] = [
        point[key] for key in ("cpu_us_per_write", "followers_cpu_us_per_write") if point.get(key)
    ]
    out["cpu_us_per_write"] = sum(cpu) if out["writes_per_s"] and len(cpu) == 2 else None
    out["p50_ms"] = _turn(f"frames {where}, one at a time", errors, progress, p50)
    return out


def measure_frames(run: _ProcessRun, p: FrameParams, progress: Reporter) -> Result:
    """The paired A/B (see the module's documentation) on three fresh clusters of
    ``run`` (sealed, its control, handshake only), and the per-record micro-benchmark;
    failures go to the result's ``errors``."""
    errors: list[str] = []
    rounds: list[dict[str, dict[str, float | None]]] = []
    systems = (SEALED, CONTROL, PLAIN)
    with contextlib.ExitStack() as stack:
        clusters = {s.key: stack.enter_context(run.cluster(s)) for s in systems}
        for cluster in clusters.values():
            cluster.wait_stable()
        for r in range(p.rounds):
            order = rotated(list(clusters), r)
            figures = {key: _figures(clusters[key], p, errors, progress) for key in order}
            rounds.append(figures)
            progress(f"hostile: frames, round {r + 1}/{p.rounds}: " + ", ".join(
                f"{key} {_num(f['writes_per_s'], ',.0f')} writes/s, "
                f"p50 {_num(f['p50_ms'], '.3f')} ms" for key, f in figures.items()
            ))  # fmt: skip
    ratios = {
        other: {k: [_over(f[SEALED.key][k], f[other][k]) for f in rounds] for k in FIGURES}
        for other in (PLAIN.key, CONTROL.key)
    }
    return {
        "rounds": p.rounds,
        "seconds": p.seconds,
        "warmup": p.warmup,
        "concurrency": p.concurrency,
        "sync_writes": p.sync_writes,
        "per_round": rounds,
        "ratios": ratios,
        "medians": {o: {k: _median(v) for k, v in r.items()} for o, r in ratios.items()},
        "sealed_over_plain_writes": _median(ratios[PLAIN.key]["writes_per_s"]),
        "per_record": per_record(p.micro_seconds),
        "errors": errors,
    }


def _sample_frames() -> dict[str, bytes]:
    """Real frames of a 3-server cluster of counters, by what they carry."""
    src, dst, term = "raft1", "raft2", 7

    def append(n: int, size: int = 0) -> m.Message:
        entries = tuple(
            m.Entry(term, 1000 + i, m.EntryKind.COMMAND, b"x" * size if size else 1)
            for i in range(n)
        )
        return m.AppendEntries(src, dst, term, prev_log_index=999, prev_log_term=term,
                               entries=entries, leader_commit=998, round=42)  # fmt: skip

    ack = m.AppendResponse(dst, src, term, True, match_index=1255, round=42, commit_index=998)
    return {
        "heartbeat": wire.encode(m.Heartbeat(src, dst, term, commit=998, round=42)),
        "append ack": wire.encode(ack),
        "append, 1 write": wire.encode(append(1)),
        "append, 256 writes": wire.encode(append(256)),
        "append, 64 KiB": wire.encode(append(1, 64 << 10)),
    }


def _cpu_us(operation: Callable[[], Any], seconds: float) -> float:
    """CPU microseconds per call of ``operation`` (repeated for ~``seconds``)."""
    n = 1
    while True:
        started = time.process_time()
        for _ in range(n):
            operation()
        spent = time.process_time() - started
        if spent >= seconds or n >= 1 << 22:
            return spent / n * 1e6
        n *= 2 if spent <= 0 else max(2, min(16, int(seconds / spent) + 1))


def _open_us(frame: bytes, seal_us: float, seconds: float) -> float:
    """CPU microseconds to open (and split) one record of ``frame``: as many records as
    take ~``seconds`` to seal (64 MiB of them at the most), opened in order."""
    key, iv = os.urandom(32), os.urandom(12)
    n = int(seconds / max(seal_us * 1e-6, 1e-9))
    n = max(100, min(n, 1 << 16, (64 << 20) // len(frame)))
    sealer, opener = RecordSealer(key, iv), RecordOpener(key, iv)
    records = [sealer.seal(frame) for _ in range(n)]
    started = time.process_time()
    for record in records:
        split_frames(opener.open(record[:4], record[4:]), 1 << 30)
    return (time.process_time() - started) / n * 1e6


def per_record(seconds: float = MICRO_SECONDS) -> list[Result]:
    """CPU microseconds to seal and to open one record of each sample frame, and the plain
    path's (splitting the frame) for the same frame; ~``seconds`` of CPU per figure."""
    out = []
    for what, frame in _sample_frames().items():
        sealer = RecordSealer(os.urandom(32), os.urandom(12))
        seal = _cpu_us(functools.partial(sealer.seal, frame), seconds)
        opened = _open_us(frame, seal, seconds)
        plain_split = _cpu_us(functools.partial(split_frames, frame, 1 << 30), seconds)
        out.append({
            "frame": what, "bytes": len(frame), "seal_us": seal, "open_us": opened,
            "plain_split_us": plain_split, "sealed_total_us": seal + opened,
        })  # fmt: skip
    return out


def frame_targets(frames: Result | None) -> list[Result]:
    """The frame-cost target, on the median ratio of the rounds."""
    if frames is None:
        return []
    n, c = frames["rounds"], frames["concurrency"]
    name = f"frames ({n} rounds): sealed / handshake-only writes/s at C={c}"
    return [ratio_target(name, frames["sealed_over_plain_writes"], TARGET_FRAME_RATIO)]


def _round_rows(frames: Result) -> list[Result]:
    rows = []
    keys = (SEALED.key, CONTROL.key, PLAIN.key)
    for r, figures in enumerate(frames["per_round"]):
        row: Result = {"round": r + 1, "order": ", ".join(figures)}
        for short, key in zip(("s", "c", "p"), keys, strict=True):
            row.update({f"{short}_{k}": figures[key][k] for k in FIGURES})
        for short, other in (("p", PLAIN.key), ("c", CONTROL.key)):
            row.update({f"{k}_over_{short}": frames["ratios"][other][k][r] for k in FIGURES})
        rows.append(row)
    return rows


def render_frames(frames: Result) -> list[str]:
    """Table lines of the frame-cost measures."""
    c, rows = frames["concurrency"], _round_rows(frames)
    lines = [
        f"sealed records (s) against the handshake only (p), and a second sealed cluster as "
        f"a control (c): paired, {frames['rounds']} rounds, each {frames['warmup']:g} s "
        f"warm-up + {frames['seconds']:g} s at C={c} (writes/s; the three servers' CPU us "
        f"per write), then {frames['sync_writes']} writes one at a time (p50 ms):"
    ]
    lines += _records_table(
        rows,
        "round: {round} | order: {order} | w/s s: {s_writes_per_s:,.0f} | c: "
        "{c_writes_per_s:,.0f} | p: {p_writes_per_s:,.0f} | s/p: {writes_per_s_over_p:.3f} | "
        "s/c: {writes_per_s_over_c:.3f} | CPU/w s: {s_cpu_us_per_write:.1f} | p: "
        "{p_cpu_us_per_write:.1f} | s/p: {cpu_us_per_write_over_p:.3f} | p50 s: "
        "{s_p50_ms:.3f} | c: {c_p50_ms:.3f} | p: {p_p50_ms:.3f} | s/p: {p50_ms_over_p:.3f} | "
        "s/c: {p50_ms_over_c:.3f}",
    )
    plain, control = frames["medians"][PLAIN.key], frames["medians"][CONTROL.key]
    lines.append(
        f"medians: writes/s s/p {_num(plain['writes_per_s'], '.3f')} (target >= "
        f"{TARGET_FRAME_RATIO:g}; control s/c {_num(control['writes_per_s'], '.3f')}), CPU "
        f"per write s/p {_num(plain['cpu_us_per_write'], '.3f')} (s/c "
        f"{_num(control['cpu_us_per_write'], '.3f')}), p50 s/p {_num(plain['p50_ms'], '.3f')} "
        f"(s/c {_num(control['p50_ms'], '.3f')})"
    )
    lines.append("")
    lines.append("one record, in isolation (CPU us; AES-256-GCM, this process):")
    lines += _records_table(
        frames["per_record"],
        "frame: {frame} | bytes: {bytes} | seal us: {seal_us:.2f} | open + split us: "
        "{open_us:.2f} | plain split us: {plain_split_us:.2f}",
    )
    return lines
