"""The ``hostile`` section of the benchmark: writes over TCP while a hostile network hits
one server, and what sealed records cost (``python -m trioraft.bench hostile``; not run
by default).

Method:

* A cluster is 3 server processes on 127.0.0.1 (the ``tcp`` section's machinery,
  :mod:`trioraft.bench._tcp_processes`): :class:`trioraft.recipes.Counter` on
  :func:`trioraft.open_tcp_network` with a random cluster ``secret`` and a random
  ``client_secret`` apart, default server options, MemoryStorage.
* An attacker process of its own (``_hostile_attacker.py``, driven over stdin/stdout,
  killed with the nodes whatever happens) runs one attack at a time against one server's
  port: ``idle`` (500 connections that never send a byte, each one closed by the server
  opened again a second later), ``slowloris`` (50 connections sending the start of a
  handshake frame a byte a second, each opened again when closed), ``garbage`` (8 tasks
  each looping connect, 1 to 1024 random bytes, reset, as fast as the process can) and
  ``flood`` (8 clients that authenticate with the client secret, each keeping 1024
  requests in flight, status and linearizable read in turn). Meanwhile it probes, as an
  honest client: a new connection and a status request every 0.5 s (3 s at most).
* Windows, one after the other, alternating: quiet, attack, quiet, attack, ..., quiet.
  Each window is the ``tcp`` section's throughput point on the current leader: C = 256
  writes in flight (``await server.write(1)`` in the leader's process), a warm-up, then
  a measured window of writes/s. An attack starts (and the attacker reports it under
  way) before the window's warm-up, and stops after its drain. Each attack hits the
  leader, then (unless disabled) a follower; ``rounds`` repeats the whole series.
* Per attack window, against the mean of the quiet windows just before and just after
  it: writes/s (ratio), the peak RSS of the attacked server (``VmHWM`` of its process,
  reset through ``/proc/PID/clear_refs`` before each window; in MB over the quiet
  windows' peak of the same server), and elections: the highest term of the three
  servers after the window less before it (quiet windows report theirs too). Also the
  leader's CPU per write (CPU seconds of its process over the window, per write): its
  ratio, quiet over attacked, is what writes/s would be if the leader had as much CPU in
  both windows (``cpu_ratio``: the attack's cost to the leader, whatever else the
  machine ran meanwhile; the attacker itself competes for this machine's CPUs, which it
  would not from another host), and every server's CPU share.
* The targets (issue 21, reported, never asserted): writes/s >= 0.8 x quiet, no
  election, peak RSS <= quiet + 50 MB, for each attack (the median ratio, the sum of
  elections and the largest RSS growth over the rounds).
* What sealed records cost (``frame_rounds`` rounds; 0: not measured): a paired A/B of
  sealed records against the handshake-only mode, and the CPU cost of one record in
  isolation; see :mod:`trioraft.bench._hostile_frames`.

Sanity checks that fail the run: in any window, the leader's counter grew by the writes
acknowledged, plus at most those whose outcome is unknown (``OutcomeUnknown``: applied
or not); a cluster or the attacker that cannot start, a node that dies.
Writes that fail because leadership moved (``NotLeader``, ``OutcomeUnknown``) are the
window's figure, reported with it (``failures``) and counted among its elections, not a
failure of the run: on a machine shared with other work, a quiet window can lose its
leader too (the default election timeouts are 150-300 ms), which is why quiet windows
report their elections as well.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._base import BenchOptions, Reporter, Result, _num, _records_table, section
from ._hostile_frames import FrameParams, frame_targets, measure_frames, render_frames
from ._tcp_paired import _median
from ._tcp_processes import (
    _BOOTSTRAP,
    _HERE,
    STARTUP_TIMEOUT,
    _Child,
    _ProcessCluster,
    _ProcessRun,
    _System,
    recorded,
)
from ._tcp_runs import ratio_target, target, throughput_point

__all__ = [
    "ATTACKS",
    "Attack",
    "HostileParams",
    "measure_hostile",
    "render_hostile",
    "run_hostile",
]

#: The issue's targets (reported, never asserted).
TARGET_WRITES_RATIO = 0.8
TARGET_RSS_MB = 50.0
#: Seconds the attacker may take to report an attack under way, and to stop one.
ATTACK_TIMEOUT = 40.0

HOSTILE = _System("hostile", "trioraft, cluster and client secrets", storage="memory")


@attrs.frozen
class Attack:
    """One attack of the attacker process: its kind and its parameters."""

    kind: str
    title: str
    params: tuple[tuple[str, float], ...]


ATTACKS = (
    Attack("idle", "500 idle connections", (("count", 500), ("reopen", 1.0))),
    Attack(
        "slowloris",
        "50 slowloris connections, a byte a second",
        (("count", 50), ("interval", 1.0), ("reopen", 0.05)),
    ),
    Attack("garbage", "garbage connections, 8 tasks, as fast as they go", (("workers", 8),)),
    Attack(
        "flood",
        "8 authenticated clients, 1024 requests in flight each",
        (("connections", 8), ("window", 1024)),
    ),
)


@attrs.frozen(kw_only=True)
class HostileParams:
    """What the section measures, and how long."""

    seconds: float = 2.0
    warmup: float = 1.0
    concurrency: int = 256
    rounds: int = 2
    #: Attack a follower too, after the leader.
    follower: bool = True
    attacks: tuple[Attack, ...] = ATTACKS
    #: Rounds of the frame-cost A/B (0: not measured), and its one-at-a-time writes.
    frame_rounds: int = 5
    sync_writes: int = 200
    #: CPU seconds per figure of the per-record micro-benchmark, about.
    micro_seconds: float = 0.2
    #: The servers' (min, max) election timeout (``None``: the defaults).
    election_timeout: tuple[float, float] | None = None
    #: That of the A/B's servers: long, so that a machine busy with other work does not
    #: depose a leader in the middle of a turn (elections are not what the A/B measures;
    #: under timeouts given here, one server of each new cluster calls the first one).
    frame_election_timeout: tuple[float, float] | None = (1.0, 2.0)


# ----------------------------------------------------------------------- one window
def _terms(cluster: _ProcessCluster) -> int:
    return max(int(st["term"]) for st in cluster.statuses())


def _reset_peak(pid: int) -> bool:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS; whether it could."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _peak_mb(pid: int) -> float | None:
    """The process's peak RSS (``VmHWM``), in MB; ``None`` if unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _cpu_seconds(cluster: _ProcessCluster) -> dict[str, float]:
    return {str(node.name): float(node.call("mem")["cpu_s"]) for node in cluster.nodes}


def _cpu_shares(
    cluster: _ProcessCluster, before: Mapping[str, float], seconds: float
) -> dict[str, float]:
    """Each server's CPU seconds since ``before``, over ``seconds`` of wall time."""
    after = _cpu_seconds(cluster)
    return {name: (after[name] - before[name]) / seconds for name in after}


def _victim(cluster: _ProcessCluster, role: str) -> tuple[_Child, str]:
    """The server to attack (the leader, or the first follower) and its address."""
    leader, _ = cluster.wait_stable()
    node = leader if role == "leader" else next(n for n in cluster.nodes if n is not leader)
    return node, f"127.0.0.1:{cluster.ports[cluster.nodes.index(node)]}"


def _window(
    cluster: _ProcessCluster,
    attacker: _Child,
    hit: tuple[str, Attack] | None,
    p: HostileParams,
) -> Result:
    """One window: writes at C on the leader, under ``hit`` (role, attack) or quiet."""
    victim, address = _victim(cluster, hit[0] if hit else "leader")
    term0, cpu0, t0 = _terms(cluster), _cpu_seconds(cluster), time.monotonic()
    reset = all([_reset_peak(node.pid) for node in cluster.nodes])
    failures: list[str] = []
    out: Result = {"attack": None, "target": None, "server": victim.name}
    if hit is not None:
        role, attack = hit
        out.update(attack=attack.kind, target=role)
        answer = attacker.call(
            "attack", ATTACK_TIMEOUT, kind=attack.kind, target=address, **dict(attack.params)
        )
        if not answer["ready"]:
            failures.append(f"the attack was not under way in time: {answer}")
    try:
        point = throughput_point(cluster, p.concurrency, p.seconds, p.warmup, failures)
    finally:
        if hit is not None:
            out["attacker"] = attacker.call("stop", ATTACK_TIMEOUT)
    out.update(
        writes_per_s=point["writes_per_s"],
        p50_ms=point["p50_ms"],
        p99_ms=point["p99_ms"],
        cpu_share=point["cpu_share"],
        cpu_us_per_write=point["cpu_us_per_write"],
        counter_delta=point["counter_delta"],
        acknowledged=point["total_ok"],
        outcome_unknown=point["errors"].get("OutcomeUnknown", 0),
        elections=_terms(cluster) - term0,
        cpu_share_by_server=_cpu_shares(cluster, cpu0, time.monotonic() - t0),
        peak_rss_mb={node.name: _peak_mb(node.pid) for node in cluster.nodes},
        peak_reset=reset,
        failures=failures,
    )
    return out


# ------------------------------------------------------------------------ the series
def _plan(p: HostileParams) -> list[tuple[str, Attack]]:
    roles = ("leader", "follower") if p.follower else ("leader",)
    return [(role, attack) for _ in range(p.rounds) for role in roles for attack in p.attacks]


def _say(window: Result, progress: Reporter) -> None:
    what = f"{window['attack']} on the {window['target']}" if window["attack"] else "quiet"
    peak = window["peak_rss_mb"].get(window["server"])
    progress(
        f"hostile: {what} ({window['server']}): {window['writes_per_s']:,.0f} writes/s, "
        f"{window['elections']} elections, peak RSS {_num(peak, '.1f')} MB"
        + (f", failures: {window['failures']}" if window["failures"] else "")
    )


def _series(
    run: _ProcessRun, attacker: _Child, p: HostileParams, progress: Reporter, errors: list[str]
) -> list[Result]:
    """Quiet, attack, quiet, ... on one cluster; every window that completed."""
    windows: list[Result] = []
    with recorded("hostile", errors, progress), run.cluster(HOSTILE) as cluster:
        cluster.wait_stable()
        windows.append(_window(cluster, attacker, None, p))
        _say(windows[-1], progress)
        for hit in _plan(p):
            progress(f"hostile: {hit[1].kind} on the {hit[0]}: {hit[1].title} ...")
            windows.append(_window(cluster, attacker, hit, p))
            _say(windows[-1], progress)
            windows.append(_window(cluster, attacker, None, p))
            _say(windows[-1], progress)
    for w in windows:  # the sanity check: no write lost or made up, attack or not
        ok, unknown = w["acknowledged"], w["outcome_unknown"]
        if not ok <= w["counter_delta"] <= ok + unknown:
            where = f"{w['attack']} on the {w['target']}" if w["attack"] else "a quiet window"
            errors.append(
                f"{where}: the leader's counter grew by {w['counter_delta']} but {ok} writes "
                f"were acknowledged (and {unknown} had an unknown outcome)"
            )
    return windows


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _attack_rows(windows: Sequence[Result]) -> list[Result]:
    """Each attack window against the quiet windows around it."""
    rows = []
    for i in range(1, len(windows) - 1, 2):
        hit, quiet = windows[i], (windows[i - 1], windows[i + 1])
        server = hit["server"]
        quiet_writes = _mean([q["writes_per_s"] for q in quiet])
        quiet_peak = _mean([q["peak_rss_mb"].get(server) for q in quiet])
        peak = hit["peak_rss_mb"].get(server)
        quiet_cpu = _mean([q["cpu_share_by_server"].get(server) for q in quiet])
        # The leader's CPU per write: what the attack costs it, however much CPU it got.
        per_write = hit["cpu_us_per_write"]
        quiet_per_write = _mean([q["cpu_us_per_write"] for q in quiet])
        rows.append({
            "attack": hit["attack"], "target": hit["target"], "server": server,
            "writes_per_s": hit["writes_per_s"], "quiet_writes_per_s": quiet_writes,
            "ratio": hit["writes_per_s"] / quiet_writes if quiet_writes else None,
            "elections": hit["elections"],
            "quiet_elections": sum(q["elections"] for q in quiet),
            "peak_rss_mb": peak, "quiet_peak_rss_mb": quiet_peak,
            "rss_over_quiet_mb": None if peak is None or quiet_peak is None else peak - quiet_peak,
            "cpu_share": hit["cpu_share_by_server"].get(server), "quiet_cpu_share": quiet_cpu,
            "cpu_us_per_write": per_write, "quiet_cpu_us_per_write": quiet_per_write,
            "cpu_ratio": quiet_per_write / per_write if per_write and quiet_per_write else None,
            "attacker": hit.get("attacker"), "failures": hit["failures"],
        })  # fmt: skip
    return rows


def hostile_targets(rows: Sequence[Result]) -> list[Result]:
    """The issue's targets for each attack and server role, over the rounds."""
    out = []
    keys = list(dict.fromkeys((r["attack"], r["target"]) for r in rows))
    for kind, role in keys:
        mine = [r for r in rows if (r["attack"], r["target"]) == (kind, role)]
        where = f"{kind} on the {role}"
        ratio = _median([r["ratio"] for r in mine])
        out.append(ratio_target(f"{where}: writes/s / quiet", ratio, TARGET_WRITES_RATIO))
        elections = sum(r["elections"] for r in mine)
        out.append(target(f"{where}: elections", elections, "0", elections == 0))
        growth = [r["rss_over_quiet_mb"] for r in mine if r["rss_over_quiet_mb"] is not None]
        worst = max(growth) if growth else None
        name = f"{where}: peak RSS MB over quiet"
        out.append(ratio_target(name, worst, TARGET_RSS_MB, at_least=False))
    return out


# ----------------------------------------------------------------------------- entry
def _start_attacker(run: _ProcessRun) -> _Child:
    script = str(_HERE / "_hostile_attacker.py")
    cmd = [sys.executable, "-c", _BOOTSTRAP, script, "--lifetime", f"{run.lifetime:.0f}"]
    child = _Child("attacker", cmd, run.root / "attacker.log", run.env)
    run.children.append(child)
    child.await_hello(STARTUP_TIMEOUT)
    return child


def _lifetime(p: HostileParams) -> float:
    """Seconds the processes may live at the most (their own hard limit)."""
    windows = 2 * len(_plan(p)) + 1
    frames = p.frame_rounds * 2 * (p.warmup + p.seconds + 20 + p.sync_writes * 0.05)
    return windows * (p.warmup + p.seconds + 2 * ATTACK_TIMEOUT) + frames + 180


def measure_hostile(p: HostileParams, progress: Reporter | None = None) -> Result:
    """Every figure of the section (see the module's documentation). Every process
    started is killed before this returns, whatever happens; their logs are kept (and
    named in the notes) when the run failed."""
    say = progress if progress is not None else (lambda line: None)
    run = _ProcessRun(lifetime=_lifetime(p), profile_dir=None, election_timeout=p.election_timeout)
    run.env["TRIORAFT_BENCH_CLIENT_SECRET"] = os.urandom(16).hex()
    errors: list[str] = []
    windows: list[Result] = []
    frames: Result | None = None
    try:
        run.warm_up(["trioraft", "trioraft.recipes"])
        with recorded("attacker", errors, say):
            attacker = _start_attacker(run)
            windows = _series(run, attacker, p, say, errors)
            attacker.close()
        if p.frame_rounds:
            params = FrameParams(
                rounds=p.frame_rounds, seconds=p.seconds, warmup=p.warmup,
                concurrency=p.concurrency, sync_writes=p.sync_writes,
                micro_seconds=p.micro_seconds,
            )  # fmt: skip
            run.election_timeout = p.frame_election_timeout
            with recorded("frames", errors, say):
                frames = measure_frames(run, params, say)
                errors.extend(frames["errors"])
    finally:
        pids = [child.pid for child in run.children]
        run.close(keep_files=bool(errors))
    rows = _attack_rows(windows)
    return {
        "windows": windows,
        "attacks": rows,
        "frames": frames,
        "targets": [*hostile_targets(rows), *frame_targets(frames)],
        "method": _method(p),
        "processes": {"started": len(pids), "pids": pids},
        "notes": [f"node logs kept in {run.root}"] if errors else [],
        "errors": errors,
    }


def _method(p: HostileParams) -> Result:
    return {
        "servers": 3,
        "host": "127.0.0.1",
        "concurrency": p.concurrency,
        "warmup_s": p.warmup,
        "seconds": p.seconds,
        "rounds": p.rounds,
        "follower": p.follower,
        "attacks": {a.kind: {"title": a.title, **dict(a.params)} for a in p.attacks},
        "frame_rounds": p.frame_rounds,
        "sync_writes": p.sync_writes,
        "election_timeout_s": list(p.election_timeout) if p.election_timeout else "default",
        "frame_election_timeout_s": (
            list(p.frame_election_timeout) if p.frame_election_timeout else "default"
        ),
    }


def run_hostile(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
    """The ``hostile`` section: :func:`measure_hostile` with the options' ``hostile_*``
    values."""
    params = HostileParams(
        seconds=options.hostile_seconds,
        rounds=options.hostile_rounds,
        frame_rounds=options.hostile_frame_rounds,
    )
    return measure_hostile(params, progress)


# ---------------------------------------------------------------------------- render
def _attacker_line(figures: Mapping[str, Any] | None) -> str:
    if not figures:
        return "-"
    if figures["kind"] == "flood":
        what = f"{figures['requests_per_s']:,.0f} req/s, {figures['answers']:,} answers"
    else:
        what = f"{figures['opened_per_s']:,.0f} conn/s, {figures['refused']:,} refused at once"
    probes = figures["probes_ok"] + figures["probes_failed"]
    return (
        f"{what}; probe {figures['probes_ok']}/{probes} ok, p50 "
        f"{_num(figures['probe_p50_ms'], '.1f')} ms; attacker CPU {figures['cpu_share']:.2f}"
    )


def render_hostile(result: Result) -> list[str]:
    """Table lines for the ``hostile`` section."""
    m = result["method"]
    lines = [
        f"writes at C={m['concurrency']} on the leader ({m['warmup_s']:g} s warm-up + "
        f"{m['seconds']:g} s), each attack window against the quiet windows around it "
        "(CPU-normalized: the leader's CPU per write, quiet / attacked):"
    ]
    rows = [{**r, "attacker_line": _attacker_line(r["attacker"])} for r in result["attacks"]]
    lines += _records_table(
        rows,
        "attack: {attack} | on: {target} | writes/s: {writes_per_s:,.0f} | quiet: "
        "{quiet_writes_per_s:,.0f} | ratio: {ratio:.2f} | CPU-normalized: {cpu_ratio:.2f} | "
        "elections: {elections} | peak RSS MB: {peak_rss_mb:.1f} | quiet MB: "
        "{quiet_peak_rss_mb:.1f} | +MB: {rss_over_quiet_mb:+.1f}",
    )
    lines.append("the attacker's side (probe: a new client's status request, as an honest one):")
    lines += [f"  {r['attack']} on the {r['target']}: {r['attacker_line']}" for r in rows]
    lines += [
        f"  {r['attack']} on the {r['target']}: failures: {'; '.join(r['failures'])}"
        for r in rows
        if r["failures"]
    ]
    quiet = [w["writes_per_s"] for w in result["windows"] if w["attack"] is None]
    if quiet:
        lines.append(
            f"quiet windows: {', '.join(f'{q:,.0f}' for q in quiet)} writes/s (the noise: "
            f"smallest / largest {min(quiet) / max(quiet):.2f}); elections in them: "
            f"{sum(w['elections'] for w in result['windows'] if w['attack'] is None)}"
        )
    if result["frames"] is not None:
        lines.append("")
        lines += render_frames(result["frames"])
    lines.append("")
    for t in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"target: {t['target']}: {_num(t['value'], '.3f')} (want {t['limit']}): "
                     f"{verdict}")  # fmt: skip
    lines.extend(f"note: {n}" for n in result["notes"])
    return lines


SECTION = section(
    "hostile",
    "3 server processes over TCP under attack (idle, slowloris, garbage, client flood); "
    "what sealed records cost",
    run_hostile,
    render_hostile,
    default=False,
    options=("hostile_seconds", "hostile_rounds", "hostile_frame_rounds"),
)
