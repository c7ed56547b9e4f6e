"""One trioraft server in a process of its own, obeying the ``tcp`` section's driver.

Not a public entry point. The driver (:mod:`trioraft.bench.tcp`) runs this file by its
path (``python -c <bootstrap> .../_tcp_node.py --name ...``), not as
``-m trioraft.bench._tcp_node``: importing the benchmark package would load every
section (about 10 MB more), and the process's peak RSS is one of the figures measured.
So this module imports only :mod:`trioraft` and the standard library.

The server runs :class:`trioraft.recipes.Counter` on :func:`trioraft.open_tcp_network`
(127.0.0.1, default server options) with :class:`~trioraft.MemoryStorage` or
:class:`~trioraft.DiskStorage`. The shared secret, if any, comes from the environment
variable ``TRIORAFT_BENCH_SECRET`` (hex). Once it listens, the node prints
``{"hello": NAME, "pid": PID, "listen": ADDRESS}``; then each JSON line on stdin is a
command, answered by one JSON line on stdout:

``{"op": "status"}``
    role, term, leader, commit and apply indexes, the counter's value, the number of
    open connections (``mesh`` is ``null``: trioraft cannot tell whether every link is
    up); with a watch armed, ``watch``.
``{"op": "bench", "concurrency": C, "seconds": S, "warmup": W}``
    C tasks each loop ``await server.write(1)`` (each completion submits the next) for
    W seconds unmeasured, then S seconds measured; committed writes/s over the window.
``{"op": "sync", "n": N, "max_seconds": T}``
    N writes one at a time; their latencies in milliseconds.
``{"op": "watch", "old": NAME}``
    from now on, record the :func:`time.monotonic` instant at which the leader this
    server names last changed (polled every millisecond), shown in ``status``.
``{"op": "mem"}``
    peak and current RSS (``VmHWM``/``VmRSS`` of ``/proc/self/status``), in kB, and the
    CPU seconds the process has used.
``{"op": "quit"}``
    stop the server and exit.

The node exits by itself if its parent dies (``os.getppid()`` changes, checked every
0.25 s), if stdin closes, and after ``--lifetime`` seconds whatever happens (SIGALRM).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import trio

import trioraft
from trioraft.recipes import Counter

#: Seconds the writers may take to finish once a throughput window ends.
DRAIN_TIMEOUT = 15.0
#: Seconds the server may take to stop on ``quit``.
STOP_TIMEOUT = 5.0
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


class _Load:
    """C writers keeping C writes in flight on the leader, and what they achieved."""

    def __init__(self, server: trioraft.Server) -> None:
        self.server = server
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.stop = False
        self.measuring = False
        self.latencies = Histogram()

    async def writer(self) -> None:
        write = self.server.write
        perf = time.perf_counter
        while not self.stop:
            started = perf()
            try:
                await write(1)
            except trioraft.RaftError as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                if isinstance(exc, (trioraft.NotLeader, trioraft.ServerStopped)):
                    return
                continue
            self.ok += 1
            if self.measuring:
                self.latencies.add(perf() - started)


async def _window(load: _Load, seconds: float) -> dict[str, Any]:
    """Measure ``load`` for ``seconds``: committed writes, per-second rates, CPU."""
    perf = time.perf_counter
    load.measuring = True
    c0, t0, cpu0 = load.ok, perf(), time.process_time()
    rates: list[float] = []
    last_c, last_t = c0, t0
    end = t0 + seconds
    while (now := perf()) < end:
        await trio.sleep(min(1.0, end - now))
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


async def run_load(
    server: trioraft.Server, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The ``bench`` command: ``concurrency`` writers on this server (the leader)."""
    load = _Load(server)
    before = server.machine.value
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(load.writer)
        await trio.sleep(warmup)
        out = await _window(load, seconds)
        load.stop = True
        nursery.cancel_scope.deadline = trio.current_time() + DRAIN_TIMEOUT
    p50, p99 = load.latencies.percentile(0.50), load.latencies.percentile(0.99)
    writes, elapsed = out["writes"], out["seconds"]
    out.update(
        concurrency=concurrency,
        p50_ms=None if p50 is None else p50 * 1e3,
        p99_ms=None if p99 is None else p99 * 1e3,
        mean_ms_littles_law=concurrency * elapsed / writes * 1e3 if writes else None,
        errors=load.errors,
        drained=not nursery.cancel_scope.cancelled_caught,
        total_ok=load.ok,
        counter_delta=server.machine.value - before,
    )
    return out


async def sync_writes(server: trioraft.Server, n: int, max_seconds: float) -> dict[str, Any]:
    """The ``sync`` command: ``n`` writes one at a time, each timed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    perf = time.perf_counter
    with trio.move_on_after(max_seconds):
        while len(latencies) < n:
            started = perf()
            try:
                await server.write(1)
            except trioraft.RaftError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                if isinstance(exc, (trioraft.NotLeader, trioraft.ServerStopped)):
                    break
                continue
            latencies.append((perf() - started) * 1e3)
    return {"latencies_ms": latencies, "errors": errors}


class _Node:
    """This process's server, its network, and the leader watch."""

    def __init__(self, server: trioraft.Server, network: trioraft.TcpNetwork) -> None:
        self.server = server
        self.network = network
        self.watch: dict[str, Any] | None = None
        self._watch_scope: trio.CancelScope | None = None

    def status(self) -> dict[str, Any]:
        st = self.server.status()
        connections = self.network.statistics().connections
        return {
            "name": st.name,
            "role": st.role.value,
            "is_leader": st.role is trioraft.Role.LEADER,
            "term": st.term,
            "leader": st.leader,
            "commit_index": st.commit_index,
            "applied": st.last_applied,
            "value": self.server.machine.value,
            "connections": connections,
            # Not observable: an outgoing connection that never sends does not notice
            # that its peer died, so the count can include dead links (see the report).
            "mesh": None,
            "watch": self.watch,
        }

    def arm_watch(self, nursery: trio.Nursery, old: str | None) -> None:
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        self.watch = {"old": old, "leader": self.server.leader(), "since": time.monotonic()}
        self._watch_scope = trio.CancelScope()
        nursery.start_soon(self._watch_leader, self._watch_scope, self.watch)

    async def _watch_leader(self, scope: trio.CancelScope, record: dict[str, Any]) -> None:
        with scope:
            while True:
                leader = self.server.leader()
                if leader != record["leader"]:
                    record["leader"], record["since"] = leader, time.monotonic()
                await trio.sleep(WATCH_PERIOD)


class _LineReader:
    """Lines of a byte stream (stdin), without the newline; ``None`` at the end."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def readline(self) -> bytes | None:
        while (end := self.buffer.find(b"\n")) < 0:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        return line


async def _dispatch(node: _Node, nursery: trio.Nursery, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "status":
        return node.status()
    if op == "bench":
        return await run_load(
            node.server, int(cmd["concurrency"]), float(cmd["seconds"]), float(cmd["warmup"])
        )
    if op == "sync":
        return await sync_writes(node.server, int(cmd["n"]), float(cmd["max_seconds"]))
    if op == "watch":
        node.arm_watch(nursery, cmd.get("old"))
        return {"armed": True}
    if op == "mem":
        return memory_kb()
    return {"error": f"unknown command {op!r}"}


async def _obey(node: _Node, nursery: trio.Nursery) -> None:
    """Answer the driver's commands until ``quit`` or the end of stdin."""
    lines = _LineReader(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))
    while (line := await lines.readline()) is not None:
        try:
            cmd = json.loads(line)
        except ValueError:
            reply({"error": f"not JSON: {line[:80]!r}"})
            continue
        if cmd.get("op") == "quit":
            reply({"bye": True})
            return
        reply(await _dispatch(node, nursery, cmd))


async def _run(args: argparse.Namespace) -> None:
    peers = dict(p.split("=", 1) for p in args.peer)
    storage: Any = (
        trioraft.MemoryStorage()
        if args.storage == "memory"
        else trioraft.DiskStorage(args.data_dir)
    )
    secret_hex = os.environ.get("TRIORAFT_BENCH_SECRET")
    secret = bytes.fromhex(secret_hex) if secret_hex else None
    async with (
        trioraft.open_tcp_network(listen=args.listen, peers=peers, secret=secret) as network,
        trio.open_nursery() as nursery,
    ):
        server = await trioraft.start_server(
            nursery,
            Counter,
            0,
            name=args.name,
            network=network,
            initial_config=sorted([args.name, *peers]),
            storage=storage,
        )
        node = _Node(server, network)
        reply({"hello": args.name, "pid": os.getpid(), "listen": network.listen})
        await _obey(node, nursery)
        with trio.move_on_after(STOP_TIMEOUT):
            await server.stop()
        nursery.cancel_scope.cancel()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="a trioraft node of the tcp benchmark")
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--peer", action="append", default=[], help="NAME=HOST:PORT")
    parser.add_argument("--storage", choices=("memory", "disk"), default="memory")
    parser.add_argument("--data-dir", help="the DiskStorage directory")
    parser.add_argument("--lifetime", type=float, default=600.0, help="hard limit, seconds")
    parser.add_argument("--profile", help="write cProfile statistics here on quit")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the node (see the module's documentation)."""
    args = _parser().parse_args(argv)
    if args.storage == "disk" and not args.data_dir:
        raise SystemExit("--storage disk needs --data-dir")
    guard_orphan(args.lifetime)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            trio.run(_run, args)
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        trio.run(_run, args)


if __name__ == "__main__":
    main()
