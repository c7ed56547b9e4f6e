"""The ``tcp`` section of the benchmark: 3 server processes on loopback, trioraft against
PySyncObj, measured the same way (``python -m trioraft.bench tcp``; not run by default).

Method (that of ``../shared/anchors/pysyncobj_bench.py``, with a driver of our own):

* A cluster is 3 server processes on 127.0.0.1, ports the kernel reported free, each
  started with this Python and driven over its stdin/stdout, one JSON line per command
  and per answer (``_tcp_node.py`` for trioraft, ``_pysyncobj_node.py`` for PySyncObj;
  both speak the same protocol). The trioraft node runs :class:`trioraft.recipes.Counter`
  on :func:`trioraft.open_tcp_network` with a random shared secret and default server
  options, on :class:`~trioraft.MemoryStorage` or :class:`~trioraft.DiskStorage`; the
  PySyncObj node runs a ``SyncObj`` counter with one ``@replicated`` increment.
* Throughput, for each C: once every server names the same leader (and, for PySyncObj,
  every connection is up: a trioraft server cannot tell, see ``_tcp_node.py``), the
  leader's process keeps C writes in flight itself (trioraft: C tasks each looping
  ``await server.write(1)``; PySyncObj: C calls with a callback that submits the next;
  and trioraft again, on a cluster of its own, PySyncObj's way: C
  :meth:`~trioraft.Server.submit` calls with a callback that submits the next, the
  ``submit()`` column), 1 s unmeasured, then ``--tcp-seconds`` measured: committed
  writes/s over that window, with the latency p50/p99 of the writes that completed in
  it (counted in 1% buckets, so that measuring adds no memory), the leader's CPU time
  per write over the window and the followers' over the whole run.
* One write at a time: 100 writes in a row on the leader, each timed (p50/p99).
* Peak RSS per server: ``VmHWM`` of each process after the load (the largest and the
  smallest of three). The servers load compiled bytecode, as an installed package
  does, even where ``PYTHONDONTWRITEBYTECODE`` is set: compiling at every start would
  add its transient memory to the peak (the bytecode goes to a directory of the run).
* Election: SIGKILL the leader, then time until both survivors name the same new leader.
  Each survivor records (polling every millisecond) the :func:`time.monotonic` instant
  at which the leader it names last changed; the time is the later of the two, less the
  instant of the kill (the driver also polls both every 5 ms and reports when it saw them
  agree). Before each kill the cluster is stable and has committed 10 writes in the
  leader's term. Repeated ``--tcp-elections`` times. With DiskStorage the killed server
  restarts on its directory and port before the next trial. A server on MemoryStorage
  cannot restart soundly (it would come back as a voter with no memory of its vote and
  log, and could vote twice in a term), so each MemoryStorage trial (after the first,
  which kills the leader of the loaded cluster) uses a fresh 3-server cluster; so do the
  PySyncObj trials (its default configuration keeps no journal either).
* Reads (trioraft only, ``--tcp-readers`` readers, 256 by default; 0: none): two more
  clusters, started with ``follower_reads=True`` and with ``lease_reads=True``; the
  readers run inside the server processes, on the leader (ReadIndex; lease), or split
  over the three servers (follower reads). See :mod:`trioraft.bench._tcp_reads`.
* Paired rounds (``--tcp-paired-rounds``, 3 by default; 0: none): the figures above
  measure one system after the other, minutes apart, and this kind of machine changes
  speed within minutes; so the targets' figures are measured again with the systems
  taking turns, a few seconds apart, and each ratio computed within a round (median
  over the rounds). See :mod:`trioraft.bench._tcp_paired`.
* PySyncObj, when installed, is measured in the same run in two configurations,
  ``appendEntriesUseBatch`` off and on (its default), since each is best for some C; its
  column is, per figure, the better of the two (higher throughput, lower latency,
  election time and RSS), and both configurations' figures are in the result.

Result: ``{"memory": R, "disk": R, "memory_submit": R, "reads": ..., "pysyncobj": R or
None, "paired": ..., ...}`` (``memory_submit``: throughput only; ``paired``: that of
:func:`~trioraft.bench._tcp_paired.measure_paired`, or ``None``) where
``reads`` is that of :func:`~trioraft.bench._tcp_reads.measure_reads` (or ``None``) and
each R has
``throughput`` (a list of ``{"concurrency": C, "writes_per_s": X, ...}``),
``one_at_a_time`` (``p50_ms``, ``p99_ms``, ...), ``election`` (``median_s``, ``trials``,
...) and ``peak_rss_mb``; ``targets`` evaluates the issue's targets (reported, never
asserted). Sanity checks (each counter equals the writes acknowledged, all three
counters agree, a new leader within 15 s, every read returns the counter's value)
failing for trioraft fail the run.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._base import BenchOptions, Reporter, Result, _num, _table, section
from ._tcp_paired import PairedParams, measure_paired, paired_targets, render_paired
from ._tcp_processes import (
    PYSYNCOBJ_BATCH,
    PYSYNCOBJ_NO_BATCH,
    TRIORAFT_DISK,
    TRIORAFT_MEMORY,
    TRIORAFT_SUBMIT,
    NodeError,
    _Child,
    _ProcessCluster,
    _ProcessRun,
    _System,
    recorded,
)
from ._tcp_reads import NOTE as READS_NOTE
from ._tcp_reads import ReadParams, measure_reads, render_reads
from ._tcp_reads import targets as read_targets
from ._tcp_runs import (
    TARGET_THROUGHPUT_RATIO,
    one_at_a_time,
    ratio_target,
    target,
    throughput_point,
)

#: Seconds the survivors of a leader kill have to agree on a new leader.
ELECTION_TIMEOUT = 15.0
#: The driver's polling period while survivors elect.
ELECTION_POLL = 0.005
#: Writes committed before each leader kill, so the leader's term has entries.
WRITES_BEFORE_KILL = 10
#: The targets of the issue (reported, not asserted).
TARGET_ELECTION_S = 0.3
PAIRED_NOTE = (
    "paired: the systems compared take turns, a few seconds apart, and each ratio is "
    "computed within a round (the main figures are minutes apart, and this machine's "
    "speed drifts within minutes); a paired target's value is the median over the rounds"
)
SUBMIT_NOTE = (
    "submit(): the MemoryStorage cluster driven as PySyncObj's driver drives PySyncObj "
    "(C writes kept in flight by callbacks, Server.submit, no task per write); the "
    "memory column keeps a task per write (await server.write)"
)


# ----------------------------------------------------------------------- measurement
@attrs.frozen(kw_only=True)
class _Params:
    concurrency: tuple[int, ...]
    seconds: float
    warmup: float
    elections: int
    sync_writes: int
    #: Readers of the reads runs (0: none).
    readers: int = 0
    #: The paired rounds (``None``: none).
    paired: PairedParams | None = None


def _await_new_leader(survivors: Sequence[_Child], old: str, killed_at: float) -> Result:
    """Poll the survivors until both name the same leader other than ``old``."""
    deadline = killed_at + ELECTION_TIMEOUT
    while time.monotonic() < deadline:
        sts = [node.call("status") for node in survivors]
        seen = time.monotonic()
        leaders = {st["leader"] for st in sts}
        new = next(iter(leaders))
        if len(leaders) == 1 and new is not None and new != old:
            since = [st["watch"]["since"] if st["watch"]["leader"] == new else seen for st in sts]
            return {
                "seconds": max(since) - killed_at,
                "first_knows_s": min(since) - killed_at,
                "observed_s": seen - killed_at,
                "new_leader": new,
                "term": max(int(st["term"]) for st in sts),
            }
        time.sleep(ELECTION_POLL)
    raise NodeError(f"no new leader known to both survivors within {ELECTION_TIMEOUT:g} s")


def _election_trial(cluster: _ProcessCluster) -> tuple[Result, int]:
    """Kill the stable cluster's leader; time the survivors' agreement on a new one.
    Returns the trial and the killed server's index."""
    leader, waited = cluster.wait_stable()
    leader.call("sync", 30.0, n=WRITES_BEFORE_KILL, max_seconds=20.0)
    cluster.wait_converged()
    old = str(leader.call("status")["name"])
    survivors = [node for node in cluster.nodes if node is not leader]
    links = []  # connections each survivor counts (stale ones included)
    for node in survivors:
        node.call("watch", old=old)
        links.append(node.call("status")["connections"])
    killed_at = time.monotonic()
    leader.sigkill()
    trial = _await_new_leader(survivors, old, killed_at)
    leader.close(graceful=False)
    trial.update(old_leader=old, stable_wait_s=waited, survivor_connections=links)
    return trial, cluster.nodes.index(leader)


def _elections(
    run: _ProcessRun, cluster: _ProcessCluster, trials: int, progress: Reporter, errors: list[str]
) -> Result:
    """``trials`` leader kills, starting with ``cluster``; returns the statistics of
    those that completed (a failure ends the trials, and is added to ``errors``)."""
    done: list[Result] = []
    current = cluster
    killed = 0
    label = cluster.system.label
    try:
        for k in range(trials):
            if k:
                if cluster.system.restarts:
                    current.restart(killed)
                else:
                    current.close()
                    current = _ProcessCluster(run, cluster.system)
            trial, killed = _election_trial(current)
            done.append(trial)
            progress(
                f"tcp: {label}: election {k + 1}/{trials}: {trial['seconds']:.3f} s "
                f"(seen by the driver at {trial['observed_s']:.3f} s)"
            )
    except NodeError as exc:
        errors.append(f"{label}: election trial {len(done) + 1}: {exc}")
        progress(f"tcp: {label}: election trial {len(done) + 1} FAILED: {exc}")
    finally:
        if current is not cluster:
            current.close()
    times = sorted(t["seconds"] for t in done)
    return {
        "median_s": statistics.median(times) if times else None,
        "min_s": times[0] if times else None,
        "max_s": times[-1] if times else None,
        "observed_median_s": statistics.median(t["observed_s"] for t in done) if done else None,
        "restart": "on its directory" if cluster.system.restarts else "fresh cluster per trial",
        "trials": done,
    }


def _empty(system: _System) -> Result:
    return {
        "system": system.label,
        "throughput": [],
        "one_at_a_time": {"samples": 0, "p50_ms": None, "p99_ms": None},
        "election": {"median_s": None, "trials": []},
        "peak_rss_mb": None,
        "errors": [],
    }


def _load_phases(cluster: _ProcessCluster, p: _Params, out: Result, progress: Reporter) -> None:
    """Throughput for each C, one write at a time, convergence and memory: into ``out``."""
    errors: list[str] = out["errors"]
    label = cluster.system.label
    for c in p.concurrency:
        progress(f"tcp: {label}: C={c}, {p.warmup:g} s warm-up + {p.seconds:g} s ...")
        point = throughput_point(cluster, c, p.seconds, p.warmup, errors)
        out["throughput"].append(point)
        progress(
            f"tcp: {label}: C={c}: {point['writes_per_s']:,.0f} writes/s, "
            f"p50 {_num(point['p50_ms'], '.2f')} ms, leader CPU share {point['cpu_share']:.2f}"
        )
    out["one_at_a_time"] = one = one_at_a_time(cluster, p.sync_writes, errors)
    progress(f"tcp: {label}: one at a time: p50 {_num(one['p50_ms'], '.3f')} ms")
    values = cluster.wait_converged()
    out["counters"] = values
    if len(set(values)) != 1:
        errors.append(f"{label}: the three counters disagree after the load: {values}")
    mems = [node.call("mem") for node in cluster.nodes]
    out["rss_kb"] = mems
    peaks = [m.get("vmhwm_kb", m["ru_maxrss_kb"]) for m in mems]
    out["peak_rss_mb"] = max(peaks) / 1024
    out["peak_rss_mb_smallest"] = min(peaks) / 1024
    out["peak_rss_mb_per_server"] = [k / 1024 for k in peaks]


def measure_system(run: _ProcessRun, system: _System, p: _Params, progress: Reporter) -> Result:
    """Every figure of one system; failures are recorded in the result's ``errors``."""
    out = _empty(system)
    started = time.monotonic()
    with recorded(system.label, out["errors"], progress), run.cluster(system) as cluster:
        _, out["first_leader_s"] = cluster.wait_stable()
        _load_phases(cluster, p, out, progress)
        if p.elections:
            out["election"] = _elections(run, cluster, p.elections, progress, out["errors"])
    out["wall_s"] = time.monotonic() - started
    return out


# ------------------------------------------------------------------------- PySyncObj
def pysyncobj_version() -> str | None:
    """The installed PySyncObj's version, or ``None`` when it is not installed."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("pysyncobj") is None:
        return None
    try:
        return importlib.metadata.version("pysyncobj")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _best(configs: Mapping[str, Result], path: Sequence[str], higher: bool) -> tuple[Any, Any]:
    """The best value at ``path`` over the configurations, and which one had it."""
    found: list[tuple[float, str]] = []
    for key, result in configs.items():
        value: Any = result
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            found.append((float(value), key))
    if not found:
        return None, None
    value, key = max(found) if higher else min(found)
    return value, key


def best_of(configs: Mapping[str, Result]) -> Result:
    """PySyncObj's column: per figure, the better configuration's value, and which."""
    by_c: dict[int, dict[str, Result]] = {}
    for key, result in configs.items():
        for point in result["throughput"]:
            by_c.setdefault(point["concurrency"], {})[key] = point
    throughput = []
    for c, points in by_c.items():
        value, key = _best(points, ["writes_per_s"], higher=True)
        if value is not None:
            throughput.append(
                {"concurrency": c, "writes_per_s": value, "configuration": key,
                 "p50_ms": points[key].get("p50_ms"), "p99_ms": points[key].get("p99_ms")}
            )  # fmt: skip
    _, one_key = _best(configs, ["one_at_a_time", "p50_ms"], higher=False)
    one = dict(configs[one_key]["one_at_a_time"]) if one_key else {"p50_ms": None}
    one["configuration"] = one_key
    election_s, election_key = _best(configs, ["election", "median_s"], higher=False)
    rss, rss_key = _best(configs, ["peak_rss_mb"], higher=False)
    rss_smallest, _ = _best(configs, ["peak_rss_mb_smallest"], higher=False)
    return {
        "throughput": throughput,
        "one_at_a_time": one,
        "election": {"median_s": election_s, "configuration": election_key},
        "peak_rss_mb": rss,
        "peak_rss_configuration": rss_key,
        "peak_rss_mb_smallest": rss_smallest,
        "configurations": dict(configs),
    }


# --------------------------------------------------------------------------- targets
def _writes_per_s(result: Result | None, c: int) -> float | None:
    if result is None:
        return None
    for point in result["throughput"]:
        if point["concurrency"] == c:
            return float(point["writes_per_s"])
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def evaluate_targets(
    memory: Result, disk: Result, pso: Result | None, submit: Result | None = None
) -> list[Result]:
    """The issue's targets, each with its value and whether it is met (``None``: no
    figure to compare). With ``submit`` (the MemoryStorage cluster driven through
    ``Server.submit``, PySyncObj's method), its throughput ratios too."""
    out = []
    for name, result in (("MemoryStorage", memory), ("MemoryStorage, submit()", submit)):
        if result is None:
            continue
        for c in (256, 4096):
            ratio = _ratio(_writes_per_s(result, c), _writes_per_s(pso, c))
            what = f"{name} writes/s at C={c} / PySyncObj's best"
            out.append(ratio_target(what, ratio, TARGET_THROUGHPUT_RATIO))
    mine = memory["one_at_a_time"]["p50_ms"]
    theirs = None
    if pso is not None:
        theirs = pso["configurations"].get("batching_off", {}).get("one_at_a_time", {})
        theirs = theirs.get("p50_ms")
    met = None if mine is None or theirs is None else mine <= theirs
    out.append(target("one-at-a-time p50 ms (MemoryStorage)", mine, theirs, met))
    for key, result in (("MemoryStorage", memory), ("DiskStorage", disk)):
        median = result["election"]["median_s"]
        met = None if median is None else median <= TARGET_ELECTION_S
        limit = f"<= {TARGET_ELECTION_S:g}"
        out.append(target(f"election median s ({key})", median, limit, met))
    rss_pso = None if pso is None else pso["peak_rss_mb"]
    for key, result in (("MemoryStorage", memory), ("DiskStorage", disk)):
        rss = result["peak_rss_mb"]
        met = None if rss is None or rss_pso is None else rss <= rss_pso
        out.append(target(f"peak RSS MB per server ({key})", rss, rss_pso, met))
    return out


# ----------------------------------------------------------------------------- entry
def measure_tcp(
    concurrency: Sequence[int] = (1, 16, 256, 4096),
    seconds: float = 10.0,
    elections: int = 5,
    *,
    warmup: float = 1.0,
    sync_writes: int = 100,
    readers: int = 256,
    pysyncobj: bool = True,
    progress: Reporter | None = None,
    profile_dir: Path | None = None,
    election_timeout: tuple[float, float] | None = None,
    paired_rounds: int = 3,
    paired_seconds: float = 4.0,
) -> Result:
    """Measure trioraft (MemoryStorage, then DiskStorage, then with ``readers``
    linearizable readers unless 0: see :mod:`trioraft.bench._tcp_reads`) and, when
    installed and ``pysyncobj`` is true, PySyncObj (batching off, then on), each as a
    cluster of 3 server processes on loopback; see the module's documentation for the
    method.

    ``profile_dir``: the trioraft servers write cProfile statistics there when they stop
    cleanly (the servers killed by the election trials write none). Every process
    started is killed before this returns, whatever happens. ``election_timeout``:
    the trioraft servers' ``(min, max)`` election timeout instead of the defaults (the
    test of this section uses long ones: there a machine that stalls for longer than
    150 ms must not depose a leader, since it checks the machinery, not the figures;
    with them, one server of each new cluster calls the first election at once, rather
    than every cluster waiting for a timeout: that election is not a figure).

    ``paired_rounds`` rounds of ``paired_seconds`` windows then compare the systems taking
    turns (:mod:`trioraft.bench._tcp_paired`; 0: none), at the ``concurrency`` values
    256 and 4096 (the targets'), or the largest one when neither is measured."""
    say = progress if progress is not None else (lambda line: None)
    p = _Params(
        concurrency=tuple(concurrency), seconds=seconds, warmup=warmup,
        elections=elections, sync_writes=sync_writes, readers=readers,
        paired=PairedParams(
            rounds=paired_rounds, seconds=paired_seconds, warmup=warmup,
            concurrency=tuple(c for c in concurrency if c in (256, 4096)) or (max(concurrency),),
            sync_writes=sync_writes, readers=readers,
        ),
    )  # fmt: skip
    version = pysyncobj_version() if pysyncobj else None
    per_system = len(concurrency) * (warmup + seconds + 45) + (elections + 2) * 60 + sync_writes
    run = _ProcessRun(
        lifetime=per_system + 120, profile_dir=profile_dir, election_timeout=election_timeout
    )
    results: dict[str, Result] = {}
    try:
        run.warm_up(["trioraft", "trioraft.recipes", *(["pysyncobj"] if version else [])])
        _measure_all(run, p, version is not None, say, results)
    finally:
        pids = [child.pid for child in run.children]
        failed = any(r["errors"] for r in results.values())
        run.close(keep_files=failed)
    out = _assemble(results, version, pids, run.root if failed else None, pysyncobj)
    out["method"] = _method(p, election_timeout)
    return out


def _method(p: _Params, election_timeout: tuple[float, float] | None) -> Result:
    """The parameters of a run, as its result records them."""
    paired = p.paired or PairedParams(rounds=0, seconds=0.0)
    return {
        "servers": 3,
        "host": "127.0.0.1",
        "warmup_s": p.warmup,
        "seconds": p.seconds,
        "one_at_a_time_writes": p.sync_writes,
        "elections": p.elections,
        "writes_before_each_kill": WRITES_BEFORE_KILL,
        "readers": p.readers,
        "paired_rounds": paired.rounds,
        "paired_seconds": paired.seconds,
        "trioraft_secret": True,
        "trioraft_election_timeout_s": list(election_timeout) if election_timeout else "default",
    }


def _measure_all(
    run: _ProcessRun, p: _Params, pysyncobj: bool, progress: Reporter, results: dict[str, Result]
) -> None:
    """Each system in turn, its result into ``results`` as it ends."""
    for system in (TRIORAFT_MEMORY, TRIORAFT_DISK):
        results[system.key] = measure_system(run, system, p, progress)
    # The same cluster driven as PySyncObj's driver drives it: callbacks, no task per
    # write. Throughput only (one write at a time and elections are the memory run's).
    throughput_only = attrs.evolve(p, elections=0, sync_writes=0)
    results[TRIORAFT_SUBMIT.key] = measure_system(run, TRIORAFT_SUBMIT, throughput_only, progress)
    if p.readers:
        reads = ReadParams(readers=p.readers, seconds=p.seconds, warmup=p.warmup)
        results["reads"] = measure_reads(run, reads, progress)
    for system in (PYSYNCOBJ_NO_BATCH, PYSYNCOBJ_BATCH) if pysyncobj else ():
        results[system.key] = measure_system(run, system, p, progress)
    if p.paired is not None and p.paired.rounds:
        results["paired"] = measure_paired(run, p.paired, pysyncobj, progress)


def _assemble(
    results: Mapping[str, Result],
    version: str | None,
    pids: list[int],
    kept: Path | None,
    wanted: bool,
) -> Result:
    memory, disk, submit = results["memory"], results["disk"], results.get("memory_submit")
    notes: list[str] = []
    pso: Result | None = None
    if version is not None:
        pso = best_of({k: results[k] for k in ("batching_off", "batching_on")})
        pso["version"] = version
        pso["errors"] = [e for k in ("batching_off", "batching_on") for e in results[k]["errors"]]
        notes.append(
            "pysyncobj: per figure, the better of appendEntriesUseBatch off and on "
            "(both configurations are under pysyncobj.configurations)"
        )
        notes.extend(f"pysyncobj sanity: {e}" for e in pso["errors"])
    elif wanted:
        notes.append(
            "pysyncobj is not installed (pip install -e '.[pysyncobj]' in a checkout): not measured"
        )
    paired = results.get("paired")
    if paired is not None:
        notes.append(PAIRED_NOTE)
        notes.extend(f"pysyncobj sanity (paired): {e}" for e in paired["pysyncobj_errors"])
    reads = results.get("reads")
    if reads is not None:
        notes.append(READS_NOTE)
    if kept is not None:
        notes.append(f"node logs kept in {kept}")
    if submit is not None:
        notes.append(SUBMIT_NOTE)
    return {
        "memory": memory,
        "disk": disk,
        "memory_submit": submit,
        "reads": reads,
        "pysyncobj": pso,
        "paired": paired,
        "targets": [
            *evaluate_targets(memory, disk, pso, submit),
            *read_targets(reads),
            *paired_targets(paired),
        ],
        "notes": notes,
        "processes": {"started": len(pids), "pids": pids},
        "errors": [
            *memory["errors"],
            *disk["errors"],
            *(submit["errors"] if submit else []),
            *(reads["errors"] if reads else []),
            *(paired["errors"] if paired else []),
        ],
    }


def run_tcp(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
    """The ``tcp`` section: :func:`measure_tcp` with the options' ``tcp_*`` values."""
    return measure_tcp(
        options.tcp_concurrency,
        options.tcp_seconds,
        options.tcp_elections,
        readers=options.tcp_readers,
        paired_rounds=options.tcp_paired_rounds,
        paired_seconds=options.tcp_paired_seconds,
        progress=progress,
    )


# ---------------------------------------------------------------------------- render
def _rows(
    memory: Result, disk: Result, pso: Result | None, submit: Result | None = None
) -> list[list[str]]:
    cols: list[Result | None] = [memory, disk, submit, pso]
    rows: list[list[str]] = []

    def row(name: str, get: Callable[[Result], Any], fmt: str) -> None:
        values = [None if col is None else get(col) for col in cols]
        ratios = (_ratio(values[0], values[3]), _ratio(values[2], values[3]))
        rows.append([name, *(_num(v, fmt) for v in values), *(_num(r, ".2f") for r in ratios)])

    for c in sorted({pt["concurrency"] for col in cols if col for pt in col["throughput"]}):
        row(f"writes/s, C={c}", functools.partial(_writes_per_s, c=c), ",.0f")
    row("one at a time, p50 ms", lambda r: r["one_at_a_time"]["p50_ms"], ".3f")
    row("one at a time, p99 ms", lambda r: r["one_at_a_time"]["p99_ms"], ".3f")
    row("election after SIGKILL, median s", lambda r: r["election"]["median_s"], ".3f")
    row("peak RSS per server, MB (largest)", lambda r: r["peak_rss_mb"], ".1f")
    row("peak RSS per server, MB (smallest)", lambda r: r.get("peak_rss_mb_smallest"), ".1f")
    return rows


def _detail_rows(systems: Mapping[str, Result]) -> list[list[str]]:
    rows = []
    for label, result in systems.items():
        for pt in result["throughput"]:
            rows.append([
                label, str(pt["concurrency"]), f"{pt['writes_per_s']:,.0f}",
                _num(pt["p50_ms"], ".2f"), _num(pt["p99_ms"], ".2f"),
                _num(pt["cpu_us_per_write"], ".1f"), f"{pt['cpu_share']:.2f}",
                _num(pt.get("followers_cpu_us_per_write"), ".1f"),
            ])  # fmt: skip
    return rows


def render_tcp(result: Result) -> list[str]:
    """Table lines for the ``tcp`` section."""
    memory, disk, pso = result["memory"], result["disk"], result["pysyncobj"]
    submit = result.get("memory_submit")
    header = [
        "metric", "trioraft memory", "trioraft disk", "trioraft submit()", "PySyncObj (best)",
        "memory/PySyncObj", "submit()/PySyncObj",
    ]  # fmt: skip
    lines = _table(header, _rows(memory, disk, pso, submit))
    systems = {"trioraft memory": memory, "trioraft disk": disk}
    if submit is not None:
        systems["trioraft submit()"] = submit
    if pso is not None:
        for key, config in pso["configurations"].items():
            systems[f"PySyncObj {key.replace('_', ' ')}"] = config
        lines.append("PySyncObj (best): per row, the better of batching off and on: " + ", ".join(
            f"C={pt['concurrency']} {pt['configuration'].replace('_', ' ')}"
            for pt in pso["throughput"]
        ))  # fmt: skip
    lines.append("")
    lines.append("per run (CPU: the leader's while measuring; the followers', both together):")
    header = [
        "system", "C", "writes/s", "p50 ms", "p99 ms", "CPU us/write", "CPU share",
        "followers CPU us/write",
    ]  # fmt: skip
    lines.extend(_table(header, _detail_rows(systems)))
    for name, res in systems.items():
        e = res["election"]
        if e.get("trials"):
            times = ", ".join(format(t["seconds"], ".3f") for t in e["trials"])
            lines.append(f"{name}: elections {times} s ({e['restart']})")
    if result.get("reads") is not None:
        lines.append("")
        lines.extend(render_reads(result["reads"]))
    if result.get("paired") is not None:
        lines.append("")
        lines.extend(render_paired(result["paired"]))
    lines.append("")
    for t in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        limit = t["limit"]
        want = _num(limit, ".3f") if isinstance(limit, float) or limit is None else limit
        if isinstance(limit, float) and not t["target"].startswith("election"):
            want = f"<= {want}"  # PySyncObj's figure
        lines.append(f"target: {t['target']}: {_num(t['value'], '.3f')} (want {want}): {verdict}")
    lines.extend(f"note: {n}" for n in result["notes"])
    return lines


SECTION = section(
    "tcp",
    "3 server processes over TCP on loopback, against PySyncObj",
    run_tcp,
    render_tcp,
    default=False,
    options=(
        "tcp_concurrency",
        "tcp_seconds",
        "tcp_elections",
        "tcp_readers",
        "tcp_paired_rounds",
        "tcp_paired_seconds",
    ),
)
