"""One PySyncObj server in a process of its own, obeying the ``tcp`` section's driver.

Not a public entry point. It speaks the same JSON-lines protocol as ``_tcp_node.py``
(``status``, ``bench``, ``sync``, ``watch``, ``mem``, ``quit``), so the driver measures
both libraries the same way. The driver runs this file by its path, and it imports only
the standard library and :mod:`pysyncobj` (not trioraft, nor trio), so that its peak
RSS is PySyncObj's own.

The server is a ``SyncObj`` holding a counter with one ``@replicated`` method,
``incr()``; ``--no-batch`` sets ``appendEntriesUseBatch=False``, everything else is
PySyncObj's default configuration. PySyncObj runs its own thread (``autoTick``); the
``bench`` command keeps C calls in flight with the callback API (each callback submits
the next), ``sync`` uses ``incr(sync=True)``. Callbacks run on PySyncObj's thread; the
counters they update are only read by the main thread (the GIL makes that safe).

The node exits by itself if its parent dies, if stdin closes, and after ``--lifetime``
seconds whatever happens.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

#: Seconds the in-flight calls may take to finish once a throughput window ends.
DRAIN_TIMEOUT = 15.0
#: Seconds one synchronous write may take.
SYNC_TIMEOUT = 5.0
#: How often the watch looks at the leader the server names.
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


class Histogram:
    """Latencies counted in buckets 1% wide: its memory stays small however many writes
    it counts (a list of every latency would add megabytes to the peak RSS measured)."""

    STEP = math.log(1.01)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    def add(self, seconds: float) -> None:
        key = math.floor(math.log(max(seconds, 1e-9)) / self.STEP)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.n += 1

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


def reply(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def make_counter(pso: Any, me: str, others: list[str], batch: bool) -> Any:
    """A started PySyncObj server at ``me`` holding a replicated counter."""
    conf = pso.SyncObjConf(appendEntriesUseBatch=batch)

    class Counter(pso.SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(me, others, conf)
            self.value = 0

        @pso.replicated  # type: ignore[untyped-decorator]
        def incr(self) -> int:
            self.value += 1
            return self.value

    return Counter()


class _Load:
    """C calls kept in flight with the callback API, and what they achieved."""

    def __init__(self, obj: Any, success: Any) -> None:
        self.obj = obj
        self.success = success
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.stop = False
        self.measuring = False
        self.in_flight = 0
        self.drained = threading.Event()
        self.latencies = Histogram()

    def submit(self) -> None:
        started = time.perf_counter()
        self.obj.incr(callback=lambda result, error: self.done(started, error))

    def done(self, started: float, error: Any) -> None:
        # On PySyncObj's thread.
        if error == self.success:
            self.ok += 1
            if self.measuring:
                self.latencies.add(time.perf_counter() - started)
        else:
            self.errors[str(error)] = self.errors.get(str(error), 0) + 1
        if self.stop:
            self.in_flight -= 1
            if self.in_flight <= 0:
                self.drained.set()
        else:
            self.submit()


def _window(load: _Load, seconds: float) -> dict[str, Any]:
    """Measure ``load`` for ``seconds``: committed writes, per-second rates, CPU."""
    perf = time.perf_counter
    load.measuring = True
    c0, t0, cpu0 = load.ok, perf(), time.process_time()
    rates: list[float] = []
    last_c, last_t = c0, t0
    end = t0 + seconds
    while (now := perf()) < end:
        time.sleep(min(1.0, end - now))
        c, t = load.ok, perf()
        rates.append((c - last_c) / max(t - last_t, 1e-9))
        last_c, last_t = c, t
    c1, t1, cpu1 = load.ok, perf(), time.process_time()
    load.measuring = False
    writes, elapsed = c1 - c0, max(t1 - t0, 1e-9)
    return {
        "writes": writes,
        "seconds": elapsed,
        "writes_per_s": writes / elapsed,
        "per_second_min": min(rates) if rates else None,
        "per_second_max": max(rates) if rates else None,
        "cpu_s": cpu1 - cpu0,
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "cpu_us_per_write": (cpu1 - cpu0) / writes * 1e6 if writes else None,
    }


def run_load(
    obj: Any, success: Any, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The ``bench`` command: ``concurrency`` calls in flight on this server."""
    load = _Load(obj, success)
    before = obj.value
    load.in_flight = concurrency
    for _ in range(concurrency):
        load.submit()
    time.sleep(warmup)
    out = _window(load, seconds)
    load.stop = True
    drained = load.drained.wait(DRAIN_TIMEOUT)
    p50, p99 = load.latencies.percentile(0.50), load.latencies.percentile(0.99)
    writes, elapsed = out["writes"], out["seconds"]
    out.update(
        concurrency=concurrency,
        p50_ms=None if p50 is None else p50 * 1e3,
        p99_ms=None if p99 is None else p99 * 1e3,
        mean_ms_littles_law=concurrency * elapsed / writes * 1e3 if writes else None,
        errors=load.errors,
        drained=drained,
        total_ok=load.ok,
        counter_delta=obj.value - before,
    )
    return out


def sync_writes(obj: Any, n: int, max_seconds: float) -> dict[str, Any]:
    """The ``sync`` command: ``n`` writes one at a time, each timed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    perf = time.perf_counter
    deadline = perf() + max_seconds
    while len(latencies) < n and perf() < deadline:
        started = perf()
        try:
            obj.incr(sync=True, timeout=SYNC_TIMEOUT)
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        latencies.append((perf() - started) * 1e3)
    return {"latencies_ms": latencies, "errors": errors}


class _Node:
    """This process's server and the leader watch."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.watch: dict[str, Any] | None = None
        self._watch_stop = threading.Event()

    def leader(self) -> str | None:
        leader = self.obj._getLeader()
        return None if leader is None else str(leader)

    def status(self) -> dict[str, Any]:
        for _ in range(10):  # getStatus iterates dicts PySyncObj's thread may change
            try:
                st = self.obj.getStatus()
                break
            except RuntimeError:
                time.sleep(0.001)
        else:
            return {"error": "getStatus kept failing"}
        links = [v for k, v in st.items() if k.startswith("partner_node_status_server_")]
        return {
            "name": str(st["self"]),
            "role": {0: "follower", 1: "candidate", 2: "leader"}.get(st["state"], st["state"]),
            "is_leader": bool(self.obj._isLeader()),
            "term": st["raft_term"],
            "leader": self.leader(),
            "ready": bool(self.obj.isReady()),
            "commit_index": st["commit_idx"],
            "applied": st["last_applied"],
            "value": self.obj.value,
            "connections": sum(1 for v in links if v == 2),
            "mesh": all(v == 2 for v in links),
            "watch": self.watch,
        }

    def arm_watch(self, old: str | None) -> None:
        self._watch_stop.set()
        self._watch_stop = threading.Event()
        self.watch = {"old": old, "leader": self.leader(), "since": time.monotonic()}
        args = (self._watch_stop, self.watch)
        threading.Thread(target=self._watch_leader, args=args, daemon=True).start()

    def _watch_leader(self, stop: threading.Event, record: dict[str, Any]) -> None:
        while not stop.wait(WATCH_PERIOD):
            leader = self.leader()
            if leader != record["leader"]:
                record["since"], record["leader"] = time.monotonic(), leader


def _dispatch(node: _Node, success: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "status":
        return node.status()
    if op == "bench":
        conc, seconds, warmup = int(cmd["concurrency"]), float(cmd["seconds"]), cmd["warmup"]
        return run_load(node.obj, success, conc, seconds, float(warmup))
    if op == "sync":
        return sync_writes(node.obj, int(cmd["n"]), float(cmd["max_seconds"]))
    if op == "watch":
        node.arm_watch(cmd.get("old"))
        return {"armed": True}
    if op == "mem":
        return memory_kb()
    return {"error": f"unknown command {op!r}"}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the node (see the module's documentation)."""
    parser = argparse.ArgumentParser(description="a PySyncObj node of the tcp benchmark")
    parser.add_argument("--listen", required=True, help="HOST:PORT (also its name)")
    parser.add_argument("--peer", action="append", default=[], help="HOST:PORT")
    parser.add_argument("--no-batch", action="store_true", help="appendEntriesUseBatch=False")
    parser.add_argument("--lifetime", type=float, default=600.0, help="hard limit, seconds")
    args = parser.parse_args(argv)
    guard_orphan(args.lifetime)
    pso = importlib.import_module("pysyncobj")
    obj = make_counter(pso, args.listen, list(args.peer), batch=not args.no_batch)
    node = _Node(obj)
    success = pso.FAIL_REASON.SUCCESS
    reply({"hello": args.listen, "pid": os.getpid(), "listen": args.listen})
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
        except ValueError:
            reply({"error": f"not JSON: {line[:80]!r}"})
            continue
        if cmd.get("op") == "quit":
            reply({"bye": True})
            break
        reply(_dispatch(node, success, cmd))
    obj.destroy()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
