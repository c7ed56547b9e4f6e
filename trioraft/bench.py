"""trioraft's benchmark: ``python -m trioraft.bench [--json]``.

The benchmark is a list of named *sections*, run in order; each returns a JSON-able dict.
The human-readable output is one table per section (on stdout; progress goes to stderr).
With ``--json`` the only stdout output is one JSON object on one line:
``{"ok": ..., "errors": [...], "meta": {...}, "options": {...}, "sections": {name: ...},
"skipped": {name: reason}}``. The exit status is 1 if any sanity check failed.

Sections and their method:

``throughput``
    A 3-server cluster in this process (a :class:`~trioraft.MemoryNetwork`, default
    server options), in a fresh ``trio.run`` on the *real* clock, one cluster per
    concurrency ``C``. Once a leader is elected and known to all three servers, ``C``
    writer tasks each loop ``await leader.write(1)``, timing every write with
    :func:`time.perf_counter`. They run for a warm-up (``--warmup``, writes not counted),
    then for ``--seconds`` more; no write starts after that, and the run ends when the
    last one in flight completes. Throughput is the writes completed after the warm-up
    divided by the time from the end of the warm-up to that last completion (the same
    accounting as the Trio floor, which has no warm-up). Latency p50/p99 are over the
    same writes (nearest-rank percentiles); C=1 gives the one-write-at-a-time latency.
    Sanity check: the leader's counter (``read_dirty``) equals the number of writes
    completed, warm-up included, no write raised, and the leader never changed. Each run
    also reports the CPU time (:func:`time.process_time`) it used per write, and its CPU
    share (CPU seconds / wall seconds), which falls well below 1 when other processes
    compete for the CPU: on a busy machine, CPU per write is the steadier figure.

``floor``
    The Trio floor (``trio_floor.py``, see the anchors' README), the least work any Trio
    design of a 3-server replicated write can do, run as a subprocess of this same
    Python once per concurrency with the same ``--seconds``; its JSON line is parsed,
    and trioraft's throughput is reported as a ratio of the floor's for each ``C``
    (ratio = trioraft writes/s / floor writes/s, measured in the same run, on the same
    machine). The floor hands each write to a leader task through an unbuffered channel,
    a rendezvous trioraft does not make (its writer appends in its own task), so ratios
    above 1 are possible at high C. The floor's CPU share (the child's CPU time over its
    wall time, start-up included) shows whether it had a CPU to itself. ``--floor PATH``
    names the script; by default ``../shared/anchors/trio_floor.py`` is looked for
    relative to the working directory, then relative to the repository root. Skipped
    with a note when not found, or with ``--no-floor``.

``election``
    ``--trials`` seeded trials, each a fresh deterministic run under
    :func:`trioraft.testing.run` (``seed=trial``) on Trio's virtual clock: 3 servers with
    default timeouts and seeds derived from the trial, ``MemoryNetwork(seed=trial)``.
    Wait for a leader, commit one write through it, stop it, and measure the virtual
    time from the stop until a surviving server is leader and the other survivor knows
    it (its ``leader()`` names it). The moment is caught exactly, by a network observer
    that checks the condition whenever a message moves (the survivor that learns of the
    new leader always answers it), not by polling. Reports median, p99 and max in
    seconds of virtual time. It measures the protocol (timeouts, PreVote, CheckQuorum
    leases), not the CPU.

Adding a section: write ``def run_x(options, results, progress) -> dict`` and a
``render_x(result) -> list[str]``, and register them with :func:`register_section`.
Each section gets a ``--skip-x`` flag; ``run_x`` may raise :class:`SkipSection` with a
reason, and may put sanity failures in its result under ``"errors"`` (a list of strings),
which make the whole run fail. New tunables go in :class:`BenchOptions` and
:func:`parse_args`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

import trioraft
import trioraft.testing

__all__ = [
    "SECTIONS",
    "BenchOptions",
    "ElectionStats",
    "Progress",
    "Section",
    "SkipSection",
    "ThroughputRun",
    "find_floor",
    "main",
    "measure_election",
    "measure_throughput",
    "parse_args",
    "percentile",
    "register_section",
    "render_report",
    "run_benchmark",
    "run_floor",
]

#: A section's result: a JSON-able mapping.
Result = dict[str, Any]
#: Where sections report progress (a line of text); stderr by default.
Progress = Callable[[str], None]

_SERVER_NAMES = ("raft1", "raft2", "raft3")
_FLOOR_RELATIVE = Path("..") / "shared" / "anchors" / "trio_floor.py"
_REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- options
def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _concurrency_list(text: str) -> tuple[int, ...]:
    values = tuple(_positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return values


@attrs.frozen(kw_only=True)
class BenchOptions:
    """The benchmark's parameters (the command line's options, for the function API)."""

    #: Measured seconds per throughput run (and per floor run).
    seconds: float = 3.0
    #: Seconds of writes before measuring each throughput run.
    warmup: float = 0.5
    #: Numbers of concurrent writer tasks, one throughput run (and floor run) each.
    concurrency: tuple[int, ...] = (1, 16, 256)
    #: Election trials (seeds ``0 .. trials - 1``).
    trials: int = 200
    #: The Trio floor script; ``None`` looks in the default places (:func:`find_floor`).
    floor: Path | None = None
    #: Log length a new server catches up with in the ``catchup`` section.
    catchup_entries: int = 100_000
    #: Simulated runs (seeds) in the ``simulation`` section.
    sim_seeds: int = 5
    #: Virtual seconds per simulated run.
    sim_seconds: float = 60.0

    def as_json(self) -> Result:
        """These options as a JSON-able dict."""
        return {
            "seconds": self.seconds,
            "warmup": self.warmup,
            "concurrency": list(self.concurrency),
            "trials": self.trials,
            "floor": None if self.floor is None else str(self.floor),
            "catchup_entries": self.catchup_entries,
            "sim_seeds": self.sim_seeds,
            "sim_seconds": self.sim_seconds,
        }


# --------------------------------------------------------------------------- registry
class SkipSection(Exception):
    """Raised by a section's ``run`` to skip itself; the message is the reason shown."""


@attrs.frozen
class Section:
    """A named part of the benchmark.

    ``run(options, results, progress)`` measures and returns a JSON-able dict (``results``
    holds the sections that ran before it, by name). ``render(result)`` turns that dict
    into table lines. ``aliases`` are extra command-line flags that skip it, besides
    ``--skip-<name>``.
    """

    name: str
    title: str
    run: Callable[[BenchOptions, Mapping[str, Result], Progress], Result]
    render: Callable[[Result], list[str]]
    aliases: tuple[str, ...] = ()


#: Every section, in the order they run.
SECTIONS: dict[str, Section] = {}


def register_section(
    name: str,
    title: str,
    run: Callable[[BenchOptions, Mapping[str, Result], Progress], Result],
    render: Callable[[Result], list[str]],
    *,
    aliases: Sequence[str] = (),
) -> Section:
    """Add a section to :data:`SECTIONS` (run after those registered before it)."""
    if name in SECTIONS:
        raise ValueError(f"a section named {name!r} is already registered")
    section = Section(name, title, run, render, tuple(aliases))
    SECTIONS[name] = section
    return section


# --------------------------------------------------------------------------- helpers
class _Counter(trioraft.StateMachine):
    """The replicated counter every section writes to."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def write(self, command: int) -> int:
        self.value += command
        return self.value

    def read(self, query: object) -> int:
        return self.value


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (``0 < q <= 1``) of ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _start_cluster(
    nursery: trio.Nursery, network: trioraft.MemoryNetwork, seed_base: int
) -> dict[str, trioraft.Server]:
    servers: dict[str, trioraft.Server] = {}
    for i, name in enumerate(_SERVER_NAMES):
        servers[name] = await trioraft.start_server(
            nursery,
            _Counter,
            0,
            name=name,
            network=network,
            initial_config=_SERVER_NAMES,
            seed=seed_base + i,
        )
    return servers


# ------------------------------------------------------------------------ throughput
@attrs.frozen(kw_only=True)
class ThroughputRun:
    """One throughput run: ``concurrency`` writers against a fresh 3-server cluster."""

    concurrency: int
    #: Writes completed after the warm-up.
    writes: int
    #: Seconds from the end of the warm-up to the last write's completion.
    elapsed_s: float
    writes_per_s: float
    #: Latency percentiles of the measured writes (``None`` if there were none).
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: Writes completed during the warm-up (not measured).
    warmup_writes: int
    #: The leader's counter at the end (should be ``writes + warmup_writes``).
    counter: int
    #: CPU seconds this process used while measuring (:func:`time.process_time`).
    cpu_s: float
    #: ``cpu_s / elapsed_s``: about 1 when the run had a CPU to itself, less when other
    #: processes took some (then every figure of the run is pessimistic).
    cpu_share: float
    #: CPU microseconds per measured write: steadier than writes/s on a busy machine.
    cpu_us_per_write: float | None
    #: Sanity-check failures (empty when all is well).
    errors: tuple[str, ...] = ()

    def as_json(self) -> Result:
        """This run as a JSON-able dict."""
        out = attrs.asdict(self)
        out["errors"] = list(self.errors)
        return out


async def _throughput_run(concurrency: int, seconds: float, warmup: float) -> ThroughputRun:
    network = trioraft.MemoryNetwork(seed=0)
    perf = time.perf_counter
    latencies: list[float] = []
    failures: list[str] = []
    completed = 0
    cpu_start: float | None = None
    cpu = time.process_time
    async with trio.open_nursery() as nursery:
        servers = await _start_cluster(nursery, network, seed_base=0)
        with trio.fail_after(30):
            leader = await _await_stable_leader(servers)
        term = leader.status().term
        write = leader.write
        measure_from = perf() + warmup
        stop_at = measure_from + seconds

        async def writer() -> None:
            nonlocal completed, cpu_start
            while True:
                t0 = perf()
                if t0 >= stop_at:
                    return
                try:
                    await write(1)
                except trioraft.RaftError as exc:
                    failures.append(f"C={concurrency}: a write raised {exc!r}")
                    return
                t1 = perf()
                completed += 1
                if t1 >= measure_from:
                    if cpu_start is None:
                        cpu_start = cpu()
                    latencies.append(t1 - t0)

        async with trio.open_nursery() as writers:
            for _ in range(concurrency):
                writers.start_soon(writer)
        finished = perf()
        cpu_s = cpu() - cpu_start if cpu_start is not None else 0.0
        counter: int = await leader.read_dirty(None)
        status = leader.status()
        nursery.cancel_scope.cancel()

    errors = list(failures[:3])
    if len(failures) > 3:
        errors.append(f"C={concurrency}: ... and {len(failures) - 3} more writes raised")
    if counter != completed:
        errors.append(
            f"C={concurrency}: the leader's counter is {counter} but {completed} writes completed"
        )
    if status.role is not trioraft.Role.LEADER or status.term != term:
        errors.append(
            f"C={concurrency}: leadership changed during the run "
            f"(term {term} -> {status.term}, role now {status.role.value})"
        )
    latencies.sort()
    measured = len(latencies)
    elapsed = max(finished - measure_from, 1e-9)
    if not measured:
        errors.append(f"C={concurrency}: no write completed after the warm-up")
    return ThroughputRun(
        concurrency=concurrency,
        writes=measured,
        elapsed_s=elapsed,
        writes_per_s=measured / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1e3 if measured else None,
        p99_ms=percentile(latencies, 0.99) * 1e3 if measured else None,
        max_ms=latencies[-1] * 1e3 if measured else None,
        warmup_writes=completed - measured,
        counter=counter,
        cpu_s=cpu_s,
        cpu_share=cpu_s / elapsed,
        cpu_us_per_write=cpu_s / measured * 1e6 if measured else None,
        errors=tuple(errors),
    )


async def _await_stable_leader(servers: Mapping[str, trioraft.Server]) -> trioraft.Server:
    """Wait (on whatever clock) until one server leads and every server knows it."""
    first = next(iter(servers.values()))
    while True:
        name = await first.await_leader()
        leader = servers.get(name)
        if (
            leader is not None
            and leader.status().role is trioraft.Role.LEADER
            and all(s.leader() == name for s in servers.values())
        ):
            return leader
        await trio.sleep(0.005)


def measure_throughput(concurrency: int, seconds: float, warmup: float = 0.5) -> ThroughputRun:
    """Run ``concurrency`` writers against a fresh in-process 3-server cluster, in a new
    ``trio.run`` on the real clock, for ``warmup`` then ``seconds`` seconds."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return trio.run(_throughput_run, concurrency, seconds, warmup)


def run_throughput(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``throughput`` section: :func:`measure_throughput` for each concurrency."""
    runs: list[Result] = []
    errors: list[str] = []
    for c in options.concurrency:
        progress(f"throughput: C={c}, {options.warmup:g} s warm-up + {options.seconds:g} s ...")
        run = measure_throughput(c, options.seconds, options.warmup)
        progress(
            f"throughput: C={c}: {run.writes_per_s:,.0f} writes/s, "
            f"p50 {_num(run.p50_ms, '.3f')} ms, p99 {_num(run.p99_ms, '.3f')} ms"
        )
        runs.append(run.as_json())
        errors.extend(run.errors)
    out: Result = {"runs": runs, "errors": errors}
    if 1 in options.concurrency:
        one = runs[options.concurrency.index(1)]
        out["one_at_a_time"] = {"p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"]}
    return out


def render_throughput(result: Result) -> list[str]:
    """Table lines for the ``throughput`` section."""
    rows = [
        [
            str(r["concurrency"]),
            f"{r['writes_per_s']:,.0f}",
            _num(r["p50_ms"], ".3f"),
            _num(r["p99_ms"], ".3f"),
            _num(r["max_ms"], ".3f"),
            f"{r['writes']:,}",
            _num(r["cpu_us_per_write"], ".1f"),
            f"{r['cpu_share']:.2f}",
        ]
        for r in result["runs"]
    ]
    header = ["C", "writes/s", "p50 ms", "p99 ms", "max ms", "writes", "CPU us/write", "CPU share"]
    lines = _table(header, rows)
    one = result.get("one_at_a_time")
    if one is not None:
        lines.append(
            f"one write at a time (C=1): p50 {_num(one['p50_ms'], '.3f')} ms, "
            f"p99 {_num(one['p99_ms'], '.3f')} ms"
        )
    lines.append(
        "CPU share: CPU s / wall s while measuring (well below 1: other processes took CPU)"
    )
    return lines


# ----------------------------------------------------------------------------- floor
def find_floor(explicit: Path | None = None) -> Path | None:
    """The Trio floor script: ``explicit`` if given (and it exists), else
    ``../shared/anchors/trio_floor.py`` relative to the working directory, then relative
    to the repository root. ``None`` if none exists."""
    if explicit is not None:
        return explicit if explicit.is_file() else None
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = (base / _FLOOR_RELATIVE).resolve()
        if candidate.is_file():
            return candidate
    return None


def run_floor(path: Path, concurrency: int, seconds: float) -> Result:
    """Run the floor script once as a subprocess of this Python; return its JSON object,
    plus ``cpu_share``: the child's CPU seconds over its wall seconds (startup included),
    where the platform tells (``None`` elsewhere)."""
    before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(path), "--concurrency", str(concurrency), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{path} --concurrency {concurrency} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    wall = time.perf_counter() - started
    after = _children_cpu()
    data = json.loads(lines[-1])
    if not isinstance(data, dict) or "floor_writes_per_s" not in data:
        raise RuntimeError(f"{path} printed no floor_writes_per_s: {lines[-1][:200]!r}")
    data["cpu_share"] = (
        (after - before) / wall if before is not None and after is not None else None
    )
    return data


def _children_cpu() -> float | None:
    """CPU seconds used by this process's finished children, where the platform tells."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_floor_section(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``floor`` section: the Trio floor per concurrency, and trioraft's ratio to it."""
    path = find_floor(options.floor)
    if path is None:
        where = (
            str(options.floor)
            if options.floor is not None
            else f"{_FLOOR_RELATIVE} from {Path.cwd()} or {_REPO_ROOT}"
        )
        raise SkipSection(f"trio_floor.py not found ({where}); pass --floor PATH")
    ours: dict[int, float] = {}
    if "throughput" in results:
        ours = {r["concurrency"]: r["writes_per_s"] for r in results["throughput"]["runs"]}
    runs: list[Result] = []
    for c in options.concurrency:
        progress(f"floor: C={c}, {options.seconds:g} s ...")
        data = run_floor(path, c, options.seconds)
        floor = float(data["floor_writes_per_s"])
        row: Result = {
            "concurrency": c,
            "floor_writes_per_s": floor,
            "floor_p50_ms": data.get("p50_ms"),
            "floor_p99_ms": data.get("p99_ms"),
            "trioraft_writes_per_s": ours.get(c),
            "floor_cpu_share": data.get("cpu_share"),
            "ratio": ours[c] / floor if c in ours and floor > 0 else None,
        }
        progress(
            f"floor: C={c}: {floor:,.0f} writes/s"
            + (f", trioraft/floor = {row['ratio']:.3f}" if row["ratio"] is not None else "")
        )
        runs.append(row)
    return {"path": str(path), "runs": runs}


def render_floor(result: Result) -> list[str]:
    """Table lines for the ``floor`` section."""
    num = _num
    rows = [
        [
            str(r["concurrency"]),
            num(r["trioraft_writes_per_s"], ",.0f"),
            num(r["floor_writes_per_s"], ",.0f"),
            num(r["ratio"], ".3f"),
            num(r["floor_p50_ms"], ".3f"),
            num(r["floor_p99_ms"], ".3f"),
            num(r["floor_cpu_share"], ".2f"),
        ]
        for r in result["runs"]
    ]
    lines = _table(
        [
            "C",
            "trioraft w/s",
            "floor w/s",
            "ratio",
            "floor p50 ms",
            "floor p99 ms",
            "floor CPU share",
        ],
        rows,
    )
    lines.append(f"floor: {result['path']}")
    return lines


# -------------------------------------------------------------------------- election
@attrs.frozen(kw_only=True)
class ElectionStats:
    """Election times after the leader stops, in seconds of virtual time."""

    trials: int
    median_s: float
    p99_s: float
    max_s: float
    min_s: float
    mean_s: float
    #: Wall-clock seconds the trials took.
    wall_s: float

    def as_json(self) -> Result:
        """These statistics as a JSON-able dict."""
        return attrs.asdict(self)


async def _election_trial(trial: int) -> float:
    network = trioraft.MemoryNetwork(seed=trial)
    async with trio.open_nursery() as nursery:
        servers = await _start_cluster(nursery, network, seed_base=trial * len(_SERVER_NAMES))
        with trio.fail_after(60):
            while True:
                leader = servers[await servers[_SERVER_NAMES[0]].await_leader()]
                try:
                    await leader.write(1)
                    break
                except (trioraft.NotLeader, trioraft.OutcomeUnknown):
                    await trio.sleep(0.01)  # a stale leader: ask again
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
        with trio.fail_after(60):
            await elected.wait()
        if not settled():
            raise AssertionError(f"trial {trial}: the new leader did not last")
        nursery.cancel_scope.cancel()
    return elected_at - stopped_at


def measure_election(trials: int, progress: Progress | None = None) -> ElectionStats:
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
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
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
    rows = [
        [
            str(result["trials"]),
            f"{result['min_s']:.3f}",
            f"{result['median_s']:.3f}",
            f"{result['mean_s']:.3f}",
            f"{result['p99_s']:.3f}",
            f"{result['max_s']:.3f}",
        ]
    ]
    lines = _table(["trials", "min s", "median s", "mean s", "p99 s", "max s"], rows)
    lines.append(
        "virtual seconds from stopping the leader until a survivor leads and the other "
        f"knows it ({result['wall_s']:.1f} s wall)"
    )
    return lines


# -------------------------------------------------------------------------- catch-up
@attrs.frozen(kw_only=True)
class CatchUpRun:
    """One catch-up: a new server joins a cluster whose log holds ``entries`` entries."""

    clock: str
    entries: int
    #: Seconds (on this run's clock) for ``add_server`` of an empty server to return:
    #: learner added, log replicated, promotion to voter committed.
    catch_up_s: float
    #: Wall seconds of the same call.
    catch_up_wall_s: float
    #: Entries per wall second the cluster wrote while filling the log (the baseline).
    fill_writes_per_s: float
    #: Entries per wall second the new server received during catch-up.
    catch_up_entries_per_s: float

    def as_json(self) -> Result:
        """This run as a JSON-able dict."""
        return attrs.asdict(self)


async def _catch_up_trial(entries: int, clock: str) -> CatchUpRun:
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        servers = await _start_cluster(nursery, network, seed_base=0)
        leader = servers[await servers[_SERVER_NAMES[0]].await_leader()]
        fill_start = time.perf_counter()
        remaining = entries

        async def writer() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await leader.write(1)

        async with trio.open_nursery() as writers:
            for _ in range(256):
                writers.start_soon(writer)
        fill_wall = time.perf_counter() - fill_start
        newcomer = await trioraft.start_server(
            nursery, _Counter, 0, name="raft4", network=network, seed=99
        )
        start, wall_start = trio.current_time(), time.perf_counter()
        await leader.add_server(newcomer.name)
        elapsed, wall = trio.current_time() - start, time.perf_counter() - wall_start
        if newcomer.name not in leader.status().voters:
            raise AssertionError("the new server was not promoted")
        if newcomer.status().last_log_index < entries:
            raise AssertionError("the new server was promoted without the log")
        nursery.cancel_scope.cancel()
    return CatchUpRun(
        clock=clock,
        entries=entries,
        catch_up_s=elapsed,
        catch_up_wall_s=wall,
        fill_writes_per_s=entries / fill_wall,
        catch_up_entries_per_s=entries / wall,
    )


def measure_catch_up(entries: int) -> list[CatchUpRun]:
    """Catch-up of a new server over an ``entries``-entry log: once on the virtual clock
    (deterministic, :func:`trioraft.testing.run`), once on the real clock."""
    if entries < 1:
        raise ValueError(f"entries must be at least 1, got {entries}")
    virtual = trioraft.testing.run(_catch_up_trial, entries, "virtual", seed=0)
    real = trio.run(_catch_up_trial, entries, "real")
    return [virtual, real]


def run_catch_up(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``catchup`` section: :func:`measure_catch_up` with ``options.catchup_entries``."""
    progress(f"catch-up: a new server over a {options.catchup_entries:,}-entry log ...")
    runs = measure_catch_up(options.catchup_entries)
    return {"runs": [r.as_json() for r in runs]}


def render_catch_up(result: Result) -> list[str]:
    """Table lines for the ``catchup`` section."""
    rows = [
        [
            r["clock"],
            f"{r['entries']:,}",
            f"{r['catch_up_s']:.3f}",
            f"{r['catch_up_wall_s']:.3f}",
            f"{r['catch_up_entries_per_s']:,.0f}",
            f"{r['fill_writes_per_s']:,.0f}",
            f"{r['catch_up_entries_per_s'] / r['fill_writes_per_s']:.2f}",
        ]
        for r in result["runs"]
    ]
    lines = _table(
        ["clock", "entries", "catch-up s", "wall s", "entries/s", "fill w/s", "ratio"], rows
    )
    lines.append(
        "add_server of an empty server: learner, catch-up rounds, promotion committed; "
        "ratio = catch-up entries/s over the cluster's own write rate while filling"
    )
    return lines


# ------------------------------------------------------------------------ simulation
@attrs.frozen(kw_only=True)
class SimulationRun:
    """One simulated run: 5 servers under random faults with a steady write load."""

    seed: int
    virtual_s: float
    wall_s: float
    writes_ok: int
    faults: int
    messages: int

    @property
    def speed(self) -> float:
        """Virtual seconds simulated per wall second."""
        return self.virtual_s / self.wall_s

    def as_json(self) -> Result:
        """This run as a JSON-able dict."""
        return {**attrs.asdict(self), "speed": self.speed}


async def _simulation_trial(seed: int, duration: float, rate: float) -> tuple[int, int, int]:
    from .testing import FaultSchedule, open_cluster

    schedule = FaultSchedule.random(
        random.Random(seed),
        [f"s{i}" for i in range(1, 6)],
        duration=duration,
        count=max(1, int(duration)),
        recover_every=5.0,
    )
    ok = 0
    async with open_cluster(_Counter, 5, seed=seed, init_arg=0) as cluster:

        async def client() -> None:
            nonlocal ok
            while True:
                with trio.move_on_after(1.0):
                    try:
                        await cluster.write(1, attempts=1)
                        ok += 1
                    except trioraft.RaftError:
                        pass
                await trio.sleep(1 / rate)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await schedule.run(cluster)
            await trio.sleep_until(duration)
            nursery.cancel_scope.cancel()
        messages = cluster.network.statistics().sent
    return ok, len(schedule), messages


def measure_simulation(seeds: int, duration: float, rate: float = 10.0) -> list[SimulationRun]:
    """Simulation speed: ``seeds`` runs of 5 servers for ``duration`` virtual seconds under
    a random fault schedule (one fault per virtual second) with ``rate`` writes per
    virtual second, each a fresh :func:`trioraft.testing.run`."""
    runs = []
    for seed in range(seeds):
        start = time.perf_counter()
        ok, faults, messages = trioraft.testing.run(
            _simulation_trial, seed, duration, rate, seed=seed
        )
        wall = time.perf_counter() - start
        runs.append(
            SimulationRun(
                seed=seed,
                virtual_s=duration,
                wall_s=wall,
                writes_ok=ok,
                faults=faults,
                messages=messages,
            )
        )
    return runs


def run_simulation(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``simulation`` section: :func:`measure_simulation`."""
    progress(f"simulation: {options.sim_seeds} runs of {options.sim_seconds:g} virtual s ...")
    runs = measure_simulation(options.sim_seeds, options.sim_seconds)
    total_virtual = sum(r.virtual_s for r in runs)
    total_wall = sum(r.wall_s for r in runs)
    return {
        "runs": [r.as_json() for r in runs],
        "speed": total_virtual / total_wall,
        "min_speed": min(r.speed for r in runs),
    }


def render_simulation(result: Result) -> list[str]:
    """Table lines for the ``simulation`` section."""
    rows = [
        [
            str(r["seed"]),
            f"{r['virtual_s']:.0f}",
            f"{r['wall_s']:.2f}",
            f"{r['speed']:.0f}",
            str(r["writes_ok"]),
            str(r["faults"]),
            f"{r['messages']:,}",
        ]
        for r in result["runs"]
    ]
    lines = _table(
        ["seed", "virtual s", "wall s", "speed", "writes ok", "faults", "messages"], rows
    )
    lines.append(
        f"overall {result['speed']:.0f} virtual s per wall s "
        f"(slowest run {result['min_speed']:.0f}): 5 servers, one random fault per virtual "
        "second and a recovery every 5, 10 writes per virtual second"
    )
    return lines


# ------------------------------------------------------------------- linearizability
def simulated_counter_history(
    operations: int, clients: int, seed: int, *, corrupt: bool = False
) -> list[Any]:
    """A history a correct counter service could produce: ``clients`` clients, each
    calling one operation after another with random durations, each operation taking
    effect at a random instant within its call (two writes for every read). With
    ``corrupt``, one read answers a value no linearization explains."""
    from .testing import Operation

    rng = random.Random(seed)
    pending: list[tuple[float, float, float, int, str, int]] = []
    clock = [0.0] * clients
    for op_id in range(operations):
        client = op_id % clients
        call = clock[client] + rng.uniform(0, 1)
        ret = call + rng.uniform(0.1, 5)
        clock[client] = ret
        kind = "write" if rng.random() < 2 / 3 else "read"
        amount = rng.randint(1, 10**9) if kind == "write" else 0
        pending.append((rng.uniform(call, ret), call, ret, client, kind, amount))
    total = 0
    ops = []
    for op_id, (_, call, ret, client, kind, amount) in enumerate(sorted(pending)):
        total += amount
        ops.append(Operation(op_id, client, kind, amount or None, total, call, ret))
    ops.sort(key=lambda o: o.call)
    if corrupt:
        victim = next(i for i in range(len(ops) // 2, len(ops)) if ops[i].kind == "read")
        ops[victim] = attrs.evolve(ops[victim], output=ops[victim].output - 1)
    return ops


def measure_linearizability(operations: int = 1000, clients: int = 10, seed: int = 0) -> Result:
    """Check time of a correct and of a corrupted ``operations``-operation history from
    ``clients`` clients, against the time to replay the same operations sequentially
    through the model (the baseline: what checking costs when nothing is concurrent)."""
    from .testing import check_linearizability, counter_model

    model = counter_model()
    good = simulated_counter_history(operations, clients, seed)
    bad = simulated_counter_history(operations, clients, seed, corrupt=True)
    start = time.perf_counter()
    state = model.init()
    for op in sorted(good, key=lambda o: o.output if o.kind == "write" else -1):
        state, _ = model.step(state, op.kind, op.input)
    replay_s = max(time.perf_counter() - start, 1e-9)
    start = time.perf_counter()
    accepted = check_linearizability(good, model)
    good_s = time.perf_counter() - start
    start = time.perf_counter()
    rejected = check_linearizability(bad, model)
    bad_s = time.perf_counter() - start
    if accepted.ok is not True or rejected.ok is not False:
        raise AssertionError("the linearizability checker decided a simulated history wrongly")
    return {
        "operations": operations,
        "clients": clients,
        "accept_s": good_s,
        "reject_s": bad_s,
        "replay_s": replay_s,
        "accept_ratio": good_s / replay_s,
        "explored_accept": accepted.explored,
        "explored_reject": rejected.explored,
    }


class DictMachine(trioraft.StateMachine):
    """The state machine of the linearizability section's second case: a dict of
    ``keys`` keys (``"k0"``, ``"k1"``...). ``("set", key, value)`` stores ``value`` and
    returns the previous value; ``("get", key)`` returns the value. Like many a service's
    machine, it has ``write`` and ``read`` only, no ``snapshot``/``restore``."""

    def __init__(self, keys: int) -> None:
        self.data: dict[str, Any] = {f"k{i}": 0 for i in range(keys)}

    def write(self, command: Any) -> Any:
        """Apply ``("set", key, value)``."""
        _, key, value = command
        previous = self.data.get(key)
        self.data[key] = value
        return previous

    def read(self, query: Any) -> Any:
        """Answer ``("get", key)``."""
        return self.data.get(query[1])


def simulated_dict_history(
    operations: int, clients: int, keys: int, seed: int, *, corrupt: bool = False
) -> tuple[list[Any], list[int]]:
    """A history a correct :class:`DictMachine` service could produce, and the ids of the
    operations that took effect, in the order they did.

    Each of ``clients`` clients calls one operation after another, pausing 0 to 50 ms
    between them; an operation lasts 2 to 20 ms and takes effect at a random instant
    within it (timings like those of clients of a 3-server cluster in a test, on the
    virtual clock: about 15 operations in flight at a time with 50 clients). Half the
    operations are sets of a unique value, half are gets; a fifth go to 10 hot keys and
    the rest to any of ``keys`` keys. 3% lose their outcome (unknown): half of those
    took effect, half never did. With ``corrupt``, one get answers a value no
    linearization explains."""
    from .testing import Operation

    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    free_at = [rng.uniform(0, 0.05) for _ in range(clients)]
    raw: list[tuple[float, float, float, int, str, tuple[Any, ...], str]] = []
    for k in range(operations):
        client = min(range(clients), key=free_at.__getitem__)
        call = free_at[client] + rng.uniform(0, 0.05)
        ret = free_at[client] = call + rng.uniform(0.002, 0.02)
        key = rng.choice(names[:10] if rng.random() < 0.2 else names)
        kind, input = (
            ("write", ("set", key, k + 1)) if rng.random() < 0.5 else ("read", ("get", key))
        )
        fate = rng.choice(["applied", "vanished"]) if rng.random() < 0.03 else "ok"
        raw.append((call, ret, rng.uniform(call, ret), client, kind, input, fate))
    raw.sort()
    machine = DictMachine(keys)
    outputs: dict[int, Any] = {}
    applied = sorted(
        (i for i, item in enumerate(raw) if item[6] != "vanished"), key=lambda i: raw[i][2]
    )
    for i in applied:
        _, _, _, _, kind, input, _ = raw[i]
        outputs[i] = machine.write(input) if kind == "write" else machine.read(input)
    ops = [
        Operation(i, client, kind, input, outputs[i], call, ret)
        if fate == "ok"
        else Operation(i, client, kind, input, None, call, None)
        for i, (call, ret, _, client, kind, input, fate) in enumerate(raw)
    ]
    if corrupt:
        middle = ops[len(ops) // 2 :]
        victim = next(op for op in middle if op.kind == "read" and not op.unknown)
        ops[victim.id] = attrs.evolve(victim, output=-1)
    return ops, applied


def measure_dict_linearizability(
    operations: int = 1050, clients: int = 50, keys: int = 1000, seed: int = 0
) -> Result:
    """Check time of a correct and of a corrupted history of a :class:`DictMachine`
    service (:func:`simulated_dict_history`), against a model made of the machine class
    (:meth:`~trioraft.testing.Model.from_state_machine`, checking key by key with
    :meth:`~trioraft.testing.Model.command_key`), and the time to replay the operations
    that took effect through the same model, in order (the baseline)."""
    from .testing import Model, check_linearizability

    model = Model.from_state_machine(DictMachine, keys, partition_key=Model.command_key)
    good, applied = simulated_dict_history(operations, clients, keys, seed)
    bad, _ = simulated_dict_history(operations, clients, keys, seed, corrupt=True)
    start = time.perf_counter()
    state = model.init()
    for i in applied:
        state, _ = model.step(state, good[i].kind, good[i].input)
    replay_s = max(time.perf_counter() - start, 1e-9)
    start = time.perf_counter()
    accepted = check_linearizability(good, model)
    good_s = time.perf_counter() - start
    start = time.perf_counter()
    rejected = check_linearizability(bad, model)
    bad_s = time.perf_counter() - start
    if accepted.ok is not True or rejected.ok is not False:
        raise AssertionError("the linearizability checker decided a simulated history wrongly")
    return {
        "operations": operations,
        "clients": clients,
        "keys": keys,
        "keys_used": len({op.input[1] for op in good}),
        "unknown": sum(op.unknown for op in good),
        "accept_s": good_s,
        "reject_s": bad_s,
        "replay_s": replay_s,
        "accept_ratio": good_s / replay_s,
        "explored_accept": accepted.explored,
        "explored_reject": rejected.explored,
    }


def run_linearizability(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``linearizability`` section: :func:`measure_linearizability`, with
    :func:`measure_dict_linearizability` under ``"dict_machine"``."""
    progress("linearizability: checking 1,000-operation counter histories ...")
    result = measure_linearizability()
    progress("linearizability: checking 1,050 operations on a 1,000-key state machine ...")
    result["dict_machine"] = measure_dict_linearizability()
    return result


def render_linearizability(result: Result) -> list[str]:
    """Table lines for the ``linearizability`` section."""
    cases = [("counter", result)]
    if "dict_machine" in result:
        cases.append(
            (f"dict machine, {result['dict_machine']['keys']:,} keys", result["dict_machine"])
        )
    rows = [
        [
            name,
            f"{case['operations']:,}",
            str(case["clients"]),
            f"{case['accept_s'] * 1e3:.1f}",
            f"{case['reject_s'] * 1e3:.1f}",
            f"{case['replay_s'] * 1e3:.2f}",
            f"{case['accept_ratio']:.0f}",
        ]
        for name, case in cases
    ]
    lines = _table(
        ["history", "ops", "clients", "accept ms", "reject ms", "replay ms", "accept/replay"], rows
    )
    lines.append(
        "histories simulated from a seed; reject: one read corrupted; replay: the operations "
        "that took effect applied in order through the model (the baseline)"
    )
    if "dict_machine" in result:
        dm = result["dict_machine"]
        lines.append(
            f"dict machine: Model.from_state_machine (write/read only, no snapshot) checked key "
            f"by key ({dm['keys_used']} keys used), {dm['unknown']} operations of unknown outcome"
        )
    return lines


register_section(
    "throughput", "Throughput and write latency (real clock)", run_throughput, render_throughput
)
register_section(
    "floor",
    "Against the Trio floor (same run)",
    run_floor_section,
    render_floor,
    aliases=("--no-floor",),
)
register_section(
    "election", "Election after the leader stops (virtual clock)", run_election, render_election
)
register_section(
    "catchup", "Catch-up of a new server (learner, then voter)", run_catch_up, render_catch_up
)
register_section(
    "simulation", "Simulation speed (virtual clock, faults)", run_simulation, render_simulation
)
register_section(
    "linearizability",
    "Linearizability checking (1,000-operation histories)",
    run_linearizability,
    render_linearizability,
)


# ----------------------------------------------------------------------------- driver
def _meta() -> Result:
    return {
        "trioraft": trioraft.__version__,
        "trio": trio.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_before": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    """The system's 1, 5 and 15 minute load averages (other work skews every figure)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_benchmark(
    options: BenchOptions,
    *,
    skip: Sequence[str] = (),
    progress: Progress | None = None,
) -> Result:
    """Run every registered section not named in ``skip``, in order, and return the report:
    ``{"ok", "errors", "meta", "options", "sections", "skipped"}`` (JSON-able).

    ``ok`` is false when a section reported sanity-check failures (listed in ``errors``).
    """
    unknown = sorted(set(skip) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; sections are {list(SECTIONS)}")
    say = progress if progress is not None else _stderr
    meta = _meta()
    sections: dict[str, Result] = {}
    skipped: dict[str, str] = {}
    errors: list[str] = []
    for name, section in SECTIONS.items():
        if name in skip:
            skipped[name] = "skipped on request"
            continue
        try:
            result = section.run(options, sections, say)
        except SkipSection as exc:
            skipped[name] = str(exc)
            say(f"{name}: skipped: {exc}")
            continue
        sections[name] = result
        errors.extend(f"{name}: {e}" for e in result.get("errors", ()))
    return {
        "ok": not errors,
        "errors": errors,
        "meta": {**meta, "load_after": _loadavg()},
        "options": options.as_json(),
        "sections": sections,
        "skipped": skipped,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return out


def render_report(report: Mapping[str, Any]) -> str:
    """The human-readable form of a :func:`run_benchmark` report."""
    meta = report["meta"]
    opts = report["options"]
    parts = [
        f"trioraft {meta['trioraft']} benchmark: Python {meta['python']}, trio {meta['trio']}, "
        f"{meta['cpus']} CPUs, {meta['platform']}",
        f"options: seconds={opts['seconds']:g} warmup={opts['warmup']:g} "
        f"concurrency={','.join(map(str, opts['concurrency']))} trials={opts['trials']}",
    ]
    if meta.get("load_before") is not None and meta.get("load_after") is not None:
        parts.append(
            f"load average (1/5/15 min) before: {'/'.join(map(str, meta['load_before']))}, "
            f"after: {'/'.join(map(str, meta['load_after']))} (other load skews the figures)"
        )
    for name, section in SECTIONS.items():
        if name in report["sections"]:
            parts.append("")
            parts.append(f"== {section.title} [{name}]")
            parts.extend(section.render(report["sections"][name]))
        elif name in report["skipped"]:
            parts.append("")
            parts.append(f"== {section.title} [{name}]: skipped ({report['skipped'][name]})")
    if report["errors"]:
        parts.append("")
        parts.extend(f"ERROR: {e}" for e in report["errors"])
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchOptions, list[str], bool]:
    """Parse the command line into ``(options, sections to skip, json output?)``."""
    parser = argparse.ArgumentParser(
        prog="python -m trioraft.bench",
        description="Benchmark trioraft: throughput, latency, election time, catch-up, "
        "Trio floor ratio.",
    )
    defaults = BenchOptions()
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=defaults.seconds,
        help="measured seconds per throughput run and per floor run (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=defaults.warmup,
        help="seconds of unmeasured writes before each throughput run (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=defaults.concurrency,
        help="comma-separated numbers of concurrent writers (default 1,16,256)",
    )
    parser.add_argument(
        "--trials",
        type=_positive_int,
        default=defaults.trials,
        help="election trials (default %(default)s)",
    )
    parser.add_argument(
        "--floor",
        type=Path,
        default=None,
        help="path of trio_floor.py (default: ../shared/anchors/trio_floor.py from the "
        "working directory, then from the repository root)",
    )
    parser.add_argument(
        "--catchup-entries",
        type=_positive_int,
        default=defaults.catchup_entries,
        help="log length a new server catches up with (default %(default)s)",
    )
    parser.add_argument(
        "--sim-seeds",
        type=_positive_int,
        default=defaults.sim_seeds,
        help="simulated runs in the simulation section (default %(default)s)",
    )
    parser.add_argument(
        "--sim-seconds",
        type=_positive_float,
        default=defaults.sim_seconds,
        help="virtual seconds per simulated run (default %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last stdout line"
    )
    for name, section in SECTIONS.items():
        parser.add_argument(
            f"--skip-{name}",
            *section.aliases,
            dest=f"skip_{name}",
            action="store_true",
            help=f"skip the {name!r} section: {section.title}",
        )
    args = parser.parse_args(argv)
    options = BenchOptions(
        seconds=args.seconds,
        warmup=args.warmup,
        concurrency=args.concurrency,
        trials=args.trials,
        floor=args.floor,
        catchup_entries=args.catchup_entries,
        sim_seeds=args.sim_seeds,
        sim_seconds=args.sim_seconds,
    )
    if options.floor is not None and not options.floor.is_file():
        parser.error(f"--floor {options.floor}: no such file")
    skip = [name for name in SECTIONS if getattr(args, f"skip_{name}")]
    return options, skip, bool(args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run the benchmark, print the table or the JSON line; returns the
    exit status (1 if a sanity check failed)."""
    options, skip, as_json = parse_args(argv)
    report = run_benchmark(options, skip=skip)
    if as_json:
        print(json.dumps(report, allow_nan=False), flush=True)
    else:
        print(render_report(report), flush=True)
    for error in report["errors"]:
        _stderr(f"ERROR: {error}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
