"""One trioraft server in a process of its own, obeying the ``tcp`` section's driver.

Not a public entry point. The driver (:mod:`trioraft.bench.tcp`) runs this file by its
path (``python -c <bootstrap> .../_tcp_node.py --name ...``), not as
``-m trioraft.bench._tcp_node``: importing the benchmark package would load every
section (about 10 MB more), and the process's peak RSS is one of the figures measured.
So this module imports only :mod:`trioraft`, the standard library and its sibling
``_node_common.py`` (what it shares with PySyncObj's node), as a top-level module.

The server runs :class:`trioraft.recipes.Counter` on :func:`trioraft.open_tcp_network`
(127.0.0.1, default server options but ``--follower-reads`` and ``--lease-reads``) with
:class:`~trioraft.MemoryStorage` or
:class:`~trioraft.DiskStorage`. The shared secret, if any, comes from the environment
variable ``TRIORAFT_BENCH_SECRET`` (hex), and the secret of clients, if apart, from
``TRIORAFT_BENCH_CLIENT_SECRET``; with ``TRIORAFT_BENCH_PLAIN_FRAMES=1``, frames are not
sealed after the handshake (what records cost, measured A/B). Once it listens, the node prints
``{"hello": NAME, "pid": PID, "listen": ADDRESS}``; then each JSON line on stdin is a
command, answered by one JSON line on stdout:

``{"op": "status"}``
    role, term, leader, commit and apply indexes, the counter's value, the number of
    open connections (``mesh`` is ``null``: trioraft cannot tell whether every link is
    up), the messages the network sent and received; with a watch armed, ``watch``.
``{"op": "bench", "concurrency": C, "seconds": S, "warmup": W}``
    C tasks each loop ``await server.write(1)`` (each completion submits the next) for
    W seconds unmeasured, then S seconds measured; committed writes/s over the window.
``{"op": "reads", "readers": R, "seconds": S, "warmup": W, "expect": V}``
    R tasks each loop ``await server.read(None)`` (linearizable: on a follower, with
    ``--follower-reads``), W seconds unmeasured, then S seconds measured; reads/s over
    the window, latency percentiles and their histogram (``histogram``: 1% buckets, so
    that the driver can merge several nodes'), and how many reads returned another
    value than ``V`` (``wrong``; ``value``: the last value read).
``{"op": "sync", "n": N, "max_seconds": T}``
    N writes one at a time; their latencies in milliseconds.
``{"op": "campaign"}``
    this server starts an election now (:meth:`trioraft.Server.trigger_election`).
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
import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

import trioraft
from trioraft.__main__ import _tune_collector
from trioraft.recipes import Counter

if TYPE_CHECKING or __package__:
    from . import _node_common as common
else:  # run by its path, its directory on sys.path (see _node_common)
    import _node_common as common

#: Seconds the server may take to stop on ``quit``.
STOP_TIMEOUT = 5.0


class _TrioraftLoad(common.Load):
    """C tasks each looping ``await operation()``: what they achieved."""

    async def worker(self, operation: Callable[[], Awaitable[object]]) -> None:
        perf = time.perf_counter
        while not self.stop:
            started = perf()
            try:
                await operation()
            except trioraft.RaftError as exc:
                self.failed(type(exc).__name__)
                if isinstance(exc, (trioraft.NotLeader, trioraft.ServerStopped)):
                    return
                continue
            self.succeeded(started)


async def run_load(
    operation: Callable[[], Awaitable[object]],
    load: _TrioraftLoad,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> bool:
    """``concurrency`` tasks looping ``await operation()`` into ``load``: ``warmup``
    seconds, then a window of ``seconds``; whether they all finished in time after it."""
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(load.worker, operation)
        await trio.sleep(warmup)
        for pause in load.window(seconds):
            await trio.sleep(pause)
        load.stop = True
        nursery.cancel_scope.deadline = trio.current_time() + common.DRAIN_TIMEOUT
    return not nursery.cancel_scope.cancelled_caught


class _SubmitLoad(common.Load):
    """C writes kept in flight with :meth:`trioraft.Server.submit`, each callback
    submitting the next: PySyncObj's driver's method (its callback API), with no task per
    write."""

    def __init__(self, server: trioraft.Server, concurrency: int) -> None:
        super().__init__("write")
        self.server = server
        self.in_flight = concurrency
        self.drained = trio.Event()

    def submit(self) -> None:
        started = time.perf_counter()
        try:
            self.server.submit(1, lambda result: self.done(started, result))
        except trioraft.RaftError as exc:  # not the leader any more: this one ends
            self.failed(type(exc).__name__)
            self._ended()

    def done(self, started: float, result: Any) -> None:
        try:
            result.unwrap()
        except Exception as exc:
            self.failed(type(exc).__name__)
        else:
            self.succeeded(started)
        if self.stop:
            self._ended()
        else:
            self.submit()

    def _ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.drained.set()


async def run_submitted(load: _SubmitLoad, concurrency: int, seconds: float, warmup: float) -> bool:
    """``concurrency`` writes in flight through ``load``: ``warmup`` seconds, then a
    window of ``seconds``; whether they all ended in time after it."""
    for _ in range(concurrency):
        load.submit()
    await trio.sleep(warmup)
    for pause in load.window(seconds):
        await trio.sleep(pause)
    load.stop = True
    with trio.move_on_after(common.DRAIN_TIMEOUT):
        await load.drained.wait()
    return load.drained.is_set()


async def sync_writes(server: trioraft.Server, n: int, max_seconds: float) -> dict[str, Any]:
    """The ``sync`` command: ``n`` writes one at a time, each timed."""
    latencies: list[float] = []
    load = common.Load("write")
    perf = time.perf_counter
    with trio.move_on_after(max_seconds):
        while len(latencies) < n:
            started = perf()
            try:
                await server.write(1)
            except trioraft.RaftError as exc:
                load.failed(type(exc).__name__)
                if isinstance(exc, (trioraft.NotLeader, trioraft.ServerStopped)):
                    break
                continue
            latencies.append((perf() - started) * 1e3)
    return {"latencies_ms": latencies, "errors": load.errors}


class _TrioraftNode(common.Node):
    """This process's server, its network, and the leader watch."""

    def __init__(
        self, server: trioraft.Server, network: trioraft.TcpNetwork, nursery: trio.Nursery
    ) -> None:
        super().__init__()
        self.server = server
        self.network = network
        self.nursery = nursery
        self._watch_scope: trio.CancelScope | None = None

    def op_status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        st = self.server.status()
        net = self.network.statistics()
        return {
            "name": st.name,
            "role": st.role.value,
            "is_leader": st.role is trioraft.Role.LEADER,
            "term": st.term,
            "leader": st.leader,
            "commit_index": st.commit_index,
            "applied": st.last_applied,
            "value": self.server.machine.value,
            "connections": net.connections,
            "sent": net.sent,
            "received": net.received,
            # Not observable: an outgoing connection that never sends does not notice
            # that its peer died, so the count can include dead links (see the report).
            "mesh": None,
            "watch": None if self.watch is None else self.watch.record,
        }

    async def op_bench(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``concurrency`` writers on this server (the leader)."""
        c, server = int(cmd["concurrency"]), self.server
        seconds, warmup = float(cmd["seconds"]), float(cmd["warmup"])
        before = server.machine.value
        load: common.Load
        if cmd.get("api") == "submit":  # callbacks, no task per write
            load = _SubmitLoad(server, c)
            drained = await run_submitted(load, c, seconds, warmup)
        else:  # a task per write, each looping ``await server.write(1)``
            load = _TrioraftLoad("write")
            write = functools.partial(server.write, 1)
            drained = await run_load(write, load, c, seconds, warmup)
        return load.report(c, drained=drained, counter_delta=server.machine.value - before)

    async def op_reads(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """``readers`` tasks reading the counter on this server."""
        expect, readers, load = cmd["expect"], int(cmd["readers"]), _TrioraftLoad("read")
        seen: dict[str, Any] = {"wrong": 0, "value": None}

        async def read() -> None:
            seen["value"] = value = await self.server.read(None)
            if value != expect:
                seen["wrong"] += 1

        drained = await run_load(read, load, readers, float(cmd["seconds"]), float(cmd["warmup"]))
        role = self.server.status().role.value
        return load.report(readers, drained=drained, role=role, **seen, histogram=load.histogram())

    async def op_campaign(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Start an election now (the driver's first election under long timeouts)."""
        await self.server.trigger_election()
        return {"campaigning": True}

    async def op_sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return await sync_writes(self.server, int(cmd["n"]), float(cmd["max_seconds"]))

    def op_watch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        watch = self.watch_leader(cmd.get("old"), self.server.leader())
        self._watch_scope = trio.CancelScope()
        self.nursery.start_soon(self._watch_leader, self._watch_scope, watch)
        return {"armed": True}

    async def _watch_leader(self, scope: trio.CancelScope, watch: common.LeaderWatch) -> None:
        with scope:
            while True:
                watch.see(self.server.leader())
                await trio.sleep(common.WATCH_PERIOD)


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


async def _obey(node: common.Node) -> None:
    """Answer the driver's commands until ``quit`` or the end of stdin."""
    lines = _LineReader(trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())))
    while (line := await lines.readline()) is not None:
        answer = node.handle(line)
        if answer is common.QUIT:
            return
        if inspect.isawaitable(answer):
            common.reply(await answer)
        elif answer is not None:
            common.reply(answer)


async def _log_role_changes(server: trioraft.Server) -> None:
    """Log each change of role, term or leader (kept when a run fails: it tells when
    leadership moved and what the server saw; a tracer would cost every write)."""
    log = logging.getLogger("trioraft.bench.node")
    # A restarted server (the election trials) begins with what its storage held.
    what = "started: "
    async for st in server.role_changes():
        log.warning(
            "%s: %s%s, term %d, leader %s, commit %d, applied %d",
            st.name, what, st.role.value, st.term, st.leader, st.commit_index,
            st.last_applied,
        )  # fmt: skip
        what = ""


def _timeouts(spec: str | None) -> dict[str, float]:
    """``--election-timeout MIN,MAX`` as server options (none: the defaults)."""
    if spec is None:
        return {}
    low, high = (float(x) for x in spec.split(","))
    return {"min_election_timeout": low, "max_election_timeout": high}


async def _run(args: argparse.Namespace) -> None:
    peers = dict(p.split("=", 1) for p in args.peer)
    storage: Any = (
        trioraft.MemoryStorage()
        if args.storage == "memory"
        else trioraft.DiskStorage(args.data_dir)
    )
    secret_hex = os.environ.get("TRIORAFT_BENCH_SECRET")
    secret = bytes.fromhex(secret_hex) if secret_hex else None
    # What clients prove instead (the hostile section's attacker holds only this one).
    client_hex = os.environ.get("TRIORAFT_BENCH_CLIENT_SECRET")
    client_secret = bytes.fromhex(client_hex) if client_hex else None
    # The benchmark's "handshake only" mode: frames not sealed (what they cost, A/B).
    records = os.environ.get("TRIORAFT_BENCH_PLAIN_FRAMES") != "1"
    async with (
        trioraft.open_tcp_network(
            listen=args.listen,
            peers=peers,
            secret=secret,
            client_secret=client_secret,
            _records=records,
        ) as network,
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
            follower_reads=args.follower_reads,
            lease_reads=args.lease_reads,
            **_timeouts(args.election_timeout),
        )
        common.reply({"hello": args.name, "pid": os.getpid(), "listen": network.listen})
        nursery.start_soon(_log_role_changes, server)
        _tune_collector()  # as `python -m trioraft serve` does
        await _obey(_TrioraftNode(server, network, nursery))
        with trio.move_on_after(STOP_TIMEOUT):
            await server.stop()
        nursery.cancel_scope.cancel()


def _parser() -> argparse.ArgumentParser:
    parser = common.parser("a trioraft node of the tcp benchmark", peer="NAME=HOST:PORT")
    parser.add_argument("--name", required=True)
    parser.add_argument("--storage", choices=("memory", "disk"), default="memory")
    parser.add_argument("--data-dir", help="the DiskStorage directory")
    parser.add_argument("--follower-reads", action="store_true", help="follower_reads=True")
    parser.add_argument("--lease-reads", action="store_true", help="lease_reads=True")
    parser.add_argument("--election-timeout", metavar="MIN,MAX", help="seconds (default: 0.15,0.3)")
    parser.add_argument("--profile", help="write cProfile statistics here on quit")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the node (see the module's documentation)."""
    args = _parser().parse_args(argv)
    if args.storage == "disk" and not args.data_dir:
        raise SystemExit("--storage disk needs --data-dir")
    common.guard_orphan(args.lifetime)
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
