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
    writer tasks each loop ``await leader.write(1)`` on a :class:`~trioraft.recipes.Counter`
    (which snapshots, so the servers compact their logs as they would in use), timing
    every write with :func:`time.perf_counter`. They run for a warm-up (``--warmup``,
    writes not counted), then for ``--seconds`` more; no write starts after that, and
    the run ends when the last one in flight completes. Throughput is the writes
    completed after the warm-up divided by the time from the end of the warm-up to that
    last completion (the accounting of the floor, disk and reads sections too). Latency
    p50/p99 are over the same writes (nearest-rank percentiles); C=1 gives the
    one-write-at-a-time latency. The latencies stay in memory for ``--plot``.
    Sanity check: the leader's counter (``read_dirty``) equals the number of writes
    completed, warm-up included, no write raised, and the leader never changed. Each run
    also reports the CPU time (:func:`time.process_time`) it used per write, and its CPU
    share (CPU seconds / wall seconds), which falls well below 1 when other processes
    compete for the CPU: on a busy machine, CPU per write is the steadier figure.

``floor``
    The Trio floor (:mod:`trioraft.bench.floor`): the least work any Trio design does for
    a write replicated on 3 servers. ``C`` writer tasks append to the leader's list in
    their own tasks (as trioraft's writers do), one replicator task per follower ships
    everything new as one batch over a trio memory channel (at most 8 batches queued,
    trioraft's ``max_inflight``), each follower appends the batch and acknowledges the
    length of its log, and the leader commits at the quorum (itself and its furthest
    follower), applies to a counter and wakes the writers. No terms, checks, elections
    or storage. It runs in this process, in a fresh ``trio.run`` on the real clock per
    concurrency, with the same ``--warmup``, ``--seconds`` and accounting as
    ``throughput`` (:func:`~trioraft.bench.floor.closed_loop`); trioraft's throughput is
    reported as a ratio of the floor's for each ``C`` (ratio = trioraft writes/s / floor
    writes/s, measured in the same run). Its CPU share shows whether it had a CPU to
    itself. Sanity check: the floor's counter equals the writes completed. ``--floor
    PATH`` (an external floor script, formerly) is accepted and ignored, and not listed
    by ``--help``.

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

``catchup``, ``simulation``, ``linearizability``
    See their modules (:mod:`trioraft.bench.catchup`, ...). ``catchup`` keeps log
    compaction off, so the new server catches up over the whole log.

``memory``
    Memory under endless writes, in a fresh Python process of its own (so the figures
    are not those of the sections before): 3 servers in that process (a
    :class:`~trioraft.MemoryNetwork`, :class:`~trioraft.MemoryStorage`, default options:
    ``snapshot_threshold`` 10,000, ``snapshot_trailing`` 1,000), 256 writer tasks each
    looping ``await leader.write(1)`` on a :class:`~trioraft.recipes.Counter`. At each
    checkpoint of ``--memory-writes`` (100k and 1M writes) the writers stop, every server
    applies all that is committed, the garbage collector runs, and the section reads the
    process's RSS (``VmRSS`` of ``/proc/self/status``; elsewhere the peak RSS from
    :mod:`resource`) and each server's log length (last index - snapshot index). It
    reports them per checkpoint with the leader's snapshot index, and RSS(last) /
    RSS(first) (target <= 1.2, reported, not checked). Sanity checks: at every checkpoint
    no log is longer than ``snapshot_threshold + snapshot_trailing`` and the counter
    equals the writes. RSS and the longest log are also sampled every 0.1 s while
    writing (for the plot; the longest log then includes entries in flight).

``snapshot``
    A 3-server in-process cluster (a :class:`~trioraft.MemoryNetwork`,
    :class:`~trioraft.MemoryStorage`, ``snapshot_trailing=0``, real clock) of a
    :class:`~trioraft.bench.snapshot.BlobMachine`, whose state is a list of ``bytes``
    pieces, is given ``--snapshot-mb`` writes of 1,000,000 random bytes each; the leader
    takes a snapshot (dropping its whole log). Then, over the same network: (1) a bare
    copy of the snapshot's bytes between two new endpoints, in the messages a snapshot
    transfer uses (``InstallSnapshot`` chunks of ``snapshot_chunk_size``, 1 MiB, at
    most ``max_inflight`` = 8 unacknowledged, each appended to a buffer at the receiver
    and acknowledged with the length received) until the last acknowledgement; (2)
    ``add_server`` of a new empty server, timed from the call until the new server's
    ``snapshot_index`` is the leader's and its state equals the leader's. Reports MB/s
    (10^6 bytes of the encoded snapshot per second) of both, and install / bare copy
    (target >= 0.5, reported). The bare copy is the fairest floor: the same bytes, the
    same transport, chunking and window, and none of the work a snapshot install adds
    (the follower's checks, storing, decoding and restoring the state).

``disk``
    Write throughput of a 3-server in-process cluster (:class:`~trioraft.MemoryNetwork`)
    on :class:`~trioraft.DiskStorage` (each server in a directory of a temporary
    directory, removed afterwards; with ``--disk-dirs A,B,C``, of a temporary directory
    under its own), then on :class:`~trioraft.MemoryStorage`, at each
    ``--disk-concurrency`` (1, 16, 256), each run a fresh ``trio.run`` on the real clock
    with the ``throughput`` section's method (warm-up, ``--seconds``, accounting). In
    the same run, the raw fsync latency of the same disk: 200 times (100 before the
    DiskStorage runs, 100 right after them, as the disk's latency drifts with other
    load), append a 4 KiB block to a file in the temporary directory and ``os.fsync``
    it; and the same probe in a thread per server at once. Reports writes/s,
    p50/p99 per storage and ``C``, the writes per transaction of the leader's storage
    (group commit), the raw fsync p50/p99, and the ratio disk p50 at ``C=1`` / raw fsync
    p50 (target <= 3) and disk writes/s at the largest ``C`` (target >= 10,000), beside
    memory's. Sanity check: the counter equals the writes.

``reads``
    Linearizable reads/s of a 3-server in-process cluster (real clock), at each
    ``--reads-concurrency`` (1, 16, 256) in three modes, each a fresh ``trio.run``:
    ``leader`` (default options, ReadIndex: a heartbeat round confirms each batch of
    reads), ``lease`` (``lease_reads=True``) and ``spread`` (``follower_reads=True``,
    reader ``i`` reads on server ``i mod 3``: a follower asks the leader for a read
    index). Each reader loops ``await server.read(None)`` with the ``throughput``
    section's method, after one write. Reports reads/s and p50/p99 per mode and ``C``,
    and at the largest ``C`` the ratios lease / leader (target >= 3) and spread / leader
    (target >= 1.5), reported. Sanity checks: every read returns the written value, and
    the leader does not change.

With ``--plot DIR``, SVG plots of the report are written into ``DIR`` after it
(:mod:`trioraft.bench.plots`; needs matplotlib, the ``bench`` extra).

Adding a section: write ``def run_x(options, results, progress) -> dict`` and a
``render_x(result) -> list[str]``, make them a ``SECTION = section(...)`` in the
section's module, naming the options it uses, and list that module in
:data:`trioraft.bench._runner.SECTIONS` where it is to run (the report's header
shows the options of the sections run).
Each section gets a ``--skip-x`` flag; ``run_x`` may raise :class:`SkipSection` with a
reason, and may put sanity failures in its result under ``"errors"`` (a list of strings),
which make the whole run fail. A new tunable is a field of :class:`BenchOptions` and a
flag of the same name in :data:`_FLAGS` or :data:`_LATE_FLAGS`. What the in-process
sections share (a 3-server cluster, the closed-loop driver and its table) is in
:mod:`trioraft.bench._cluster`.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import string
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import attrs
import trio

import trioraft
from trioraft import _build

#: A section's result: a JSON-able mapping.
Result = dict[str, Any]
#: Where sections report progress (a line of text); stderr by default.
Reporter = Callable[[str], None]

_SERVER_NAMES = ("raft1", "raft2", "raft3")
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


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


def _int_at_least(low: int) -> Callable[[str], int]:
    """An option type: an integer, at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _directory_list(text: str) -> tuple[Path, ...]:
    values = tuple(Path(part.strip()) for part in text.split(",") if part.strip())
    missing = [str(v) for v in values if not v.is_dir()]
    if missing:
        raise argparse.ArgumentTypeError(f"not a directory: {', '.join(missing)}")
    if len(values) != len(_SERVER_NAMES):
        raise argparse.ArgumentTypeError(
            f"expected {len(_SERVER_NAMES)} comma-separated directories (one per server), "
            f"got {text!r}"
        )
    return values


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
    #: Ignored (the Trio floor is now :mod:`trioraft.bench.floor`, in this process).
    floor: Path | None = None
    #: Log length a new server catches up with in the ``catchup`` section.
    catchup_entries: int = 100_000
    #: Simulated runs (seeds) in the ``simulation`` section.
    sim_seeds: int = 5
    #: Virtual seconds per simulated run.
    sim_seconds: float = 60.0
    #: Writes to a counter after which the ``memory`` section measures RSS and log length.
    memory_writes: tuple[int, ...] = (100_000, 1_000_000)
    #: Megabytes of state the ``snapshot`` section installs on a new server.
    snapshot_mb: int = 50
    #: Numbers of concurrent writers of the ``disk`` section (DiskStorage throughput).
    disk_concurrency: tuple[int, ...] = (1, 16, 256)
    #: One directory per server for the ``disk`` section (on a disk each, to measure
    #: what a disk per server gives); empty: one temporary directory for all three.
    disk_dirs: tuple[Path, ...] = ()
    #: Numbers of concurrent readers of the ``reads`` section.
    reads_concurrency: tuple[int, ...] = (1, 16, 256)
    #: Numbers of writes kept in flight on the leader by the ``tcp`` section.
    tcp_concurrency: tuple[int, ...] = (1, 16, 256, 4096)
    #: Measured seconds per ``tcp`` throughput run.
    tcp_seconds: float = 10.0
    #: Leader kills (SIGKILL) the ``tcp`` section times the election after.
    tcp_elections: int = 5
    #: Linearizable readers of the ``tcp`` section's reads runs (0: no reads runs).
    tcp_readers: int = 256
    #: Rounds of the ``tcp`` section's paired comparisons (0: none).
    tcp_paired_rounds: int = 3
    #: Measured seconds per system and round of the paired comparisons.
    tcp_paired_seconds: float = 4.0
    #: Measured seconds per window of the ``hostile`` section (and per A/B turn).
    hostile_seconds: float = 2.0
    #: Rounds of the ``hostile`` section's attacks (each attack on the leader, then on a
    #: follower, each between quiet windows).
    hostile_rounds: int = 2
    #: Rounds of the ``hostile`` section's A/B of sealed records (0: none).
    hostile_frame_rounds: int = 5
    #: Directory to write the plots (SVG) into; ``None``: no plots.
    plot: Path | None = None

    def as_json(self) -> Result:
        """These options as a JSON-able dict."""
        out: Result = {}
        for field in attrs.fields(BenchOptions):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            out[field.name] = value
        return out


# --------------------------------------------------------------------------- registry
class SkipSection(Exception):
    """Raised by a section's ``run`` to skip itself; the message is the reason shown."""


@attrs.frozen
class Section:
    """A named part of the benchmark.

    ``run(options, results, progress)`` measures and returns a JSON-able dict (``results``
    holds the sections that ran before it, by name). ``render(result)`` turns that dict
    into table lines. ``aliases`` are extra command-line flags that skip it, besides
    ``--skip-<name>``. ``options`` are the :class:`BenchOptions` fields it uses (the
    report's header shows those of the sections that ran).
    """

    name: str
    title: str
    run: Callable[[BenchOptions, Mapping[str, Result], Reporter], Result]
    render: Callable[[Result], list[str]]
    aliases: tuple[str, ...] = ()
    #: Whether it runs when no section is named on the command line (long sections,
    #: such as ``tcp``, run only when named).
    default: bool = True
    options: tuple[str, ...] = ()


def section(
    name: str,
    title: str,
    run: Callable[[BenchOptions, Mapping[str, Result], Reporter], Result],
    render: Callable[[Result], list[str]],
    *,
    aliases: Sequence[str] = (),
    default: bool = True,
    options: Sequence[str] = (),
) -> Section:
    """A :class:`Section` (its ``options`` checked against :class:`BenchOptions`' fields).
    A section module makes one as ``SECTION``; :mod:`trioraft.bench._runner` lists them,
    in the order they run."""
    unknown = set(options) - {field.name for field in attrs.fields(BenchOptions)}
    if unknown:
        raise ValueError(f"section {name!r}: no such option(s) {sorted(unknown)}")
    return Section(name, title, run, render, tuple(aliases), default, tuple(options))


# --------------------------------------------------------------------------- helpers
class Record:
    """A base of the sections' result classes (``attrs`` classes): their JSON form is
    their fields, as a dict."""

    def as_json(self) -> Result:
        """This record as a JSON-able dict."""
        return attrs.asdict(cast(attrs.AttrsInstance, self))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (``0 < q <= 1``) of ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(math.ceil(q * len(sorted_values)), 1)
    return sorted_values[rank - 1]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def quiet(line: str) -> None:
    """A :data:`Reporter` that drops the lines."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- driver
def _meta() -> Result:
    return {
        "trioraft": trioraft.__version__,
        #: "compiled" (mypyc) or "pure", and why pure where compiled modules are.
        "build": _build.build(),
        "build_reason": _build.build_reason(),
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "-" * len(line)]
    out.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return out


def _records_table(records: Iterable[Mapping[str, Any]], row: str) -> list[str]:
    """A table with a row per record. ``row`` is a format string of columns separated by
    ``|``, each a header, a colon and a replacement field
    (``"C: {concurrency} | writes/s: {writes_per_s:,.0f}"``): the cell is the record's
    value under that key in that format (``-`` for ``None``)."""
    columns = [
        (text.strip(" |").removesuffix(":"), name, spec or "")
        for text, name, spec, _ in string.Formatter().parse(row)
        if name is not None
    ]
    cells = [[_num(record[name], spec) for _, name, spec in columns] for record in records]
    return _table([header for header, _, _ in columns], cells)
