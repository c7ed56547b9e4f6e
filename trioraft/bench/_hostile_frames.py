"""What sealed records cost, in the ``hostile`` section (see :mod:`trioraft.bench.hostile`).

Two measures:

* **A/B over TCP, paired.** Two clusters of 3 server processes run side by side, with the
  same random secret: *sealed* (today's mode: the handshake, then every frame in an
  AES-256-GCM record) and *handshake only* (the node's ``TRIORAFT_BENCH_PLAIN_FRAMES=1``:
  the same handshake, then frames as they are, as before records existed). Each round
  measures both, in an order that rotates by one each round: writes/s with C writes in
  flight on the leader (the ``tcp`` section's throughput point: a warm-up, then a
  measured window), then one write at a time (its p50 latency). Each round's ratios:
  sealed writes/s / handshake-only writes/s, and sealed p50 / handshake-only p50; the
  verdict is the median over the rounds. The issue's target: records cost <= 10% of
  writes/s at C=256, so the writes/s ratio >= 0.9.
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


def _figures(
    cluster: _ProcessCluster, p: FrameParams, errors: list[str], progress: Reporter
) -> dict[str, float | None]:
    """One turn of one cluster: writes/s at C, and the p50 of writes one at a time."""
    where = cluster.system.key

    def writes() -> float:
        point = throughput_point(cluster, p.concurrency, p.seconds, p.warmup, errors)
        return float(point["writes_per_s"])

    def p50() -> float | None:
        value: float | None = one_at_a_time(cluster, p.sync_writes, errors)["p50_ms"]
        return value

    return {
        "writes_per_s": _turn(f"frames {where}, C={p.concurrency}", errors, progress, writes),
        "p50_ms": _turn(f"frames {where}, one at a time", errors, progress, p50),
    }


def measure_frames(run: _ProcessRun, p: FrameParams, progress: Reporter) -> Result:
    """The paired A/B (see the module's documentation) on two fresh clusters of ``run``,
    and the per-record micro-benchmark; failures go to the result's ``errors``."""
    errors: list[str] = []
    rounds: list[dict[str, dict[str, float | None]]] = []
    keys = [SEALED.key, PLAIN.key]
    with contextlib.ExitStack() as stack:
        clusters = {s.key: stack.enter_context(run.cluster(s)) for s in (SEALED, PLAIN)}
        for cluster in clusters.values():
            cluster.wait_stable()
        for r in range(p.rounds):
            order = rotated(keys, r)
            figures = {key: _figures(clusters[key], p, errors, progress) for key in order}
            rounds.append(figures)
            progress(f"hostile: frames, round {r + 1}/{p.rounds}: " + ", ".join(
                f"{key} {_num(f['writes_per_s'], ',.0f')} writes/s, "
                f"p50 {_num(f['p50_ms'], '.3f')} ms" for key, f in figures.items()
            ))  # fmt: skip
    writes = [_over(f[SEALED.key]["writes_per_s"], f[PLAIN.key]["writes_per_s"]) for f in rounds]
    latency = [_over(f[SEALED.key]["p50_ms"], f[PLAIN.key]["p50_ms"]) for f in rounds]
    return {
        "rounds": p.rounds,
        "seconds": p.seconds,
        "warmup": p.warmup,
        "concurrency": p.concurrency,
        "sync_writes": p.sync_writes,
        "per_round": rounds,
        "writes_ratios": writes,
        "latency_ratios": latency,
        "sealed_over_plain_writes": _median(writes),
        "sealed_over_plain_p50": _median(latency),
        "per_record": per_record(),
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


def _cpu_us(operation: Callable[[], Any]) -> float:
    """CPU microseconds per call of ``operation`` (repeated for ~MICRO_SECONDS)."""
    n = 1
    while True:
        started = time.process_time()
        for _ in range(n):
            operation()
        spent = time.process_time() - started
        if spent >= MICRO_SECONDS or n >= 1 << 22:
            return spent / n * 1e6
        n *= 2 if spent <= 0 else max(2, min(16, int(MICRO_SECONDS / spent) + 1))


def _open_us(frame: bytes, seal_us: float) -> float:
    """CPU microseconds to open (and split) one record of ``frame``: as many records as
    take ~MICRO_SECONDS to seal (64 MiB of them at the most), opened in order."""
    key, iv = os.urandom(32), os.urandom(12)
    n = int(MICRO_SECONDS / max(seal_us * 1e-6, 1e-9))
    n = max(100, min(n, 1 << 16, (64 << 20) // len(frame)))
    sealer, opener = RecordSealer(key, iv), RecordOpener(key, iv)
    records = [sealer.seal(frame) for _ in range(n)]
    started = time.process_time()
    for record in records:
        split_frames(opener.open(record[:4], record[4:]), 1 << 30)
    return (time.process_time() - started) / n * 1e6


def per_record() -> list[Result]:
    """CPU microseconds to seal and to open one record of each sample frame, and the plain
    path's (splitting the frame) for the same frame."""
    out = []
    for what, frame in _sample_frames().items():
        sealer = RecordSealer(os.urandom(32), os.urandom(12))
        seal = _cpu_us(functools.partial(sealer.seal, frame))
        opened = _open_us(frame, seal)
        plain_split = _cpu_us(functools.partial(split_frames, frame, 1 << 30))
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


def render_frames(frames: Result) -> list[str]:
    """Table lines of the frame-cost measures."""
    rows = []
    for r, figures in enumerate(frames["per_round"]):
        sealed, plain = figures[SEALED.key], figures[PLAIN.key]
        rows.append({
            "round": r + 1, "order": " then ".join(figures),
            "sealed": sealed["writes_per_s"], "plain": plain["writes_per_s"],
            "ratio": frames["writes_ratios"][r],
            "sealed_p50": sealed["p50_ms"], "plain_p50": plain["p50_ms"],
            "p50_ratio": frames["latency_ratios"][r],
        })  # fmt: skip
    c = frames["concurrency"]
    lines = [
        f"sealed records against the handshake only (paired, {frames['rounds']} rounds, "
        f"{frames['warmup']:g} s warm-up + {frames['seconds']:g} s at C={c}; then "
        f"{frames['sync_writes']} writes one at a time):"
    ]
    lines += _records_table(
        rows,
        f"round: {{round}} | order: {{order}} | sealed w/s C={c}: {{sealed:,.0f}} | "
        f"plain w/s C={c}: {{plain:,.0f}} | sealed/plain: {{ratio:.3f}} | "
        "sealed p50 ms C=1: {sealed_p50:.3f} | plain p50 ms C=1: {plain_p50:.3f} | "
        "p50 sealed/plain: {p50_ratio:.3f}",
    )
    lines.append(
        f"median: writes/s sealed/plain {_num(frames['sealed_over_plain_writes'], '.3f')} "
        f"(target >= {TARGET_FRAME_RATIO:g}), p50 sealed/plain "
        f"{_num(frames['sealed_over_plain_p50'], '.3f')}"
    )
    lines.append("")
    lines.append("one record, in isolation (CPU us; AES-256-GCM, this process):")
    lines += _records_table(
        frames["per_record"],
        "frame: {frame} | bytes: {bytes} | seal us: {seal_us:.2f} | open + split us: "
        "{open_us:.2f} | plain split us: {plain_split_us:.2f}",
    )
    return lines
