"""What the ``tcp`` section's two node scripts share (``_tcp_node.py`` for trioraft,
``_pysyncobj_node.py`` for PySyncObj): the guards of a node process, its memory probe,
the JSON-lines protocol's plumbing, and the accounting of a measured load.

The standard library only. The driver runs the nodes by their path, not as modules of
:mod:`trioraft.bench` (importing the benchmark package would load every section, and a
node's peak RSS is one of the figures measured), with this directory on their
``sys.path`` (appended, as ``python path/to/_tcp_node.py`` would put it first): they
import this module as ``_node_common``, so PySyncObj's node loads no trioraft code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

#: Seconds the operations in flight may take to finish once a measured window ends.
DRAIN_TIMEOUT = 15.0
#: How often a watch looks at the leader its server names.
WATCH_PERIOD = 0.001


def guard_orphan(lifetime: float) -> None:
    """End this process if its parent goes away, and after ``lifetime`` seconds."""
    signal.alarm(max(1, math.ceil(lifetime)))  # SIGALRM's default action ends the process
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(2)

    threading.Thread(target=watch, name="orphan-guard", daemon=True).start()


def parser(description: str, peer: str) -> argparse.ArgumentParser:
    """The options every node takes: ``--listen``, ``--peer`` (``peer`` is its form, for
    the help) and ``--lifetime``."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--listen", required=True, help="HOST:PORT")
    out.add_argument("--peer", action="append", default=[], help=peer)
    out.add_argument("--lifetime", type=float, default=600.0, help="hard limit, seconds")
    return out


def memory_kb() -> dict[str, Any]:
    """Peak (``VmHWM``) and current (``VmRSS``) resident memory of this process, in kB,
    and the CPU seconds it has used (``cpu_s``, all threads)."""
    out: dict[str, Any] = {"ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    out["cpu_s"] = time.process_time()
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[f"{key.lower()}_kb"] = int(value.split()[0])
    except OSError:
        pass
    return out


def reply(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def command(line: bytes | str) -> dict[str, Any] | None:
    """The command on one line of stdin; ``None`` (after answering an error) if it is
    not a JSON object."""
    try:
        cmd = json.loads(line)
    except ValueError:
        cmd = None
    if not isinstance(cmd, dict):
        reply({"error": f"not a JSON object: {line[:80]!r}"})
        return None
    return cmd


class Histogram:
    """Latencies counted in buckets 1% wide: its memory stays small however many
    operations it counts (a list of every latency would add megabytes to the peak RSS
    measured)."""

    STEP = math.log(1.01)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    def add(self, seconds: float) -> None:
        key = math.floor(math.log(max(seconds, 1e-9)) / self.STEP)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1

    def merge(self, pairs: Iterable[Sequence[int]]) -> None:
        """Count the ``[bucket, count]`` pairs of another histogram too."""
        for key, n in pairs:
            self.counts[key] = self.counts.get(key, 0) + n
            self.n += n

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q`` percentile, in seconds, within 0.5% (``None``: empty)."""
        if not self.n:
            return None
        rank, seen = max(math.ceil(q * self.n), 1), 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return math.exp((key + 0.5) * self.STEP)
        return None  # pragma: no cover: the counts add up to n

    def ms(self, q: float) -> float | None:
        """:meth:`percentile` in milliseconds."""
        p = self.percentile(q)
        return None if p is None else p * 1e3


class Load:
    """C operations kept in flight, each completion starting the next, and what they
    achieved: the node's loop (its own clock) sleeps through :meth:`window`."""

    def __init__(self, noun: str) -> None:
        #: What is counted (``"write"``, ``"read"``): the names of the figures.
        self.noun = noun
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.stop = False
        self.measuring = False
        self.latencies = Histogram()
        self.figures: dict[str, Any] = {}

    def succeeded(self, started: float) -> None:
        """One operation, begun at ``started`` (:func:`time.perf_counter`), succeeded."""
        self.ok += 1
        if self.measuring:
            self.latencies.add(time.perf_counter() - started)

    def failed(self, name: str) -> None:
        """One operation failed with the error ``name``."""
        self.errors[name] = self.errors.get(name, 0) + 1

    def window(self, seconds: float) -> Iterator[float]:
        """Measure for ``seconds``: yields how long to sleep next, then records the
        operations completed, per-second rates and CPU time in :attr:`figures`."""
        perf = time.perf_counter
        self.measuring = True
        c0, t0, cpu0 = self.ok, perf(), time.process_time()
        rates: list[float] = []
        last_c, last_t = c0, t0
        end = t0 + seconds
        while (now := perf()) < end:
            yield min(1.0, end - now)
            c, t = self.ok, perf()
            rates.append((c - last_c) / max(t - last_t, 1e-9))
            last_c, last_t = c, t
        c1, t1, cpu1 = self.ok, perf(), time.process_time()
        self.measuring = False
        done, elapsed, noun = c1 - c0, max(t1 - t0, 1e-9), self.noun
        self.figures = {
            f"{noun}s": done,
            "seconds": elapsed,
            f"{noun}s_per_s": done / elapsed,
            "per_second_min": min(rates) if rates else None,
            "per_second_max": max(rates) if rates else None,
            "cpu_s": cpu1 - cpu0,
            "cpu_share": (cpu1 - cpu0) / elapsed,
            f"cpu_us_per_{noun}": (cpu1 - cpu0) / done * 1e6 if done else None,
        }

    def histogram(self) -> list[list[int]]:
        """The latencies of the window, as ``[bucket, count]`` pairs (JSON-able; see
        :meth:`Histogram.merge`)."""
        return [[key, n] for key, n in sorted(self.latencies.counts.items())]

    def report(self, concurrency: int, **more: Any) -> dict[str, Any]:
        """The answer to a load command: the window's figures, latency percentiles,
        the mean latency by Little's law, errors, every success (warm-up and drain
        included) and ``more``."""
        done, elapsed = self.figures[f"{self.noun}s"], self.figures["seconds"]
        return {
            **self.figures,
            "concurrency": concurrency,
            "p50_ms": self.latencies.ms(0.50),
            "p99_ms": self.latencies.ms(0.99),
            "mean_ms_littles_law": concurrency * elapsed / done * 1e3 if done else None,
            "errors": self.errors,
            "total_ok": self.ok,
            **more,
        }


class LeaderWatch:
    """The :func:`time.monotonic` instant at which the leader a server names last
    changed, as :meth:`see` is told (every :data:`WATCH_PERIOD`)."""

    def __init__(self, old: str | None, leader: str | None) -> None:
        self.record: dict[str, Any] = {"old": old, "leader": leader, "since": time.monotonic()}

    def see(self, leader: str | None) -> None:
        if leader != self.record["leader"]:
            self.record["leader"], self.record["since"] = leader, time.monotonic()


#: What :meth:`Node.handle` returns for ``quit``.
QUIT = "quit"


class Node:
    """A node's commands: ``{"op": NAME, ...}`` is answered by its method ``op_NAME``,
    given the command (``quit`` is the node's loop's own)."""

    def __init__(self) -> None:
        self.watch: LeaderWatch | None = None

    def handle(self, line: bytes | str) -> Any:
        """Take one line of stdin: :data:`QUIT` (answered) for ``quit``, ``None`` for a
        line that is no command (answered), else what the command's method returns (the
        answer, or an awaitable of it for the trio node's long commands)."""
        cmd = command(line)
        if cmd is None:
            return None
        if cmd.get("op") == "quit":
            reply({"bye": True})
            return QUIT
        method: Callable[[dict[str, Any]], Any] = getattr(self, f"op_{cmd.get('op')}", _unknown)
        return method(cmd)

    def op_mem(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Peak and current RSS and CPU seconds (:func:`memory_kb`)."""
        return memory_kb()

    def watch_leader(self, old: str | None, leader: str | None) -> LeaderWatch:
        """A new watch (it replaces the last one in the status)."""
        self.watch = LeaderWatch(old, leader)
        return self.watch


def _unknown(cmd: dict[str, Any]) -> dict[str, Any]:
    return {"error": f"unknown command {cmd.get('op')!r}"}
