"""The attacker process of the ``hostile`` section (see :mod:`trioraft.bench.hostile`).

Not a public entry point: the driver runs this file by its path, as it runs the nodes
(``_tcp_node.py``), and drives it over stdin/stdout with the nodes' JSON-lines protocol.
It only ever connects to the address it is given (the driver gives 127.0.0.1 only).

``{"op": "attack", "kind": K, "target": "127.0.0.1:PORT", ...}``
    start attack ``K`` on the server at ``target`` and answer once it is under way
    (``ready``: every connection it keeps was opened once, or the first one was made),
    within :data:`READY_TIMEOUT`. The attacks (their parameters in the command):

    ``idle`` (``count``, ``reopen``)
        ``count`` connections that never send a byte; each one the server closes is
        opened again after ``reopen`` seconds.
    ``slowloris`` (``count``, ``interval``, ``reopen``)
        ``count`` connections, each sending the start of a plausible handshake frame one
        byte every ``interval`` seconds; each one the server closes is opened again
        after ``reopen`` seconds.
    ``garbage`` (``workers``)
        ``workers`` tasks each looping: connect, send 1 to 1024 random bytes, close (a
        reset, so no port waits in TIME_WAIT), as fast as this process can.
    ``flood`` (``connections``, ``window``)
        ``connections`` clients that authenticate with the client secret (the
        environment's ``TRIORAFT_BENCH_CLIENT_SECRET``), each keeping ``window`` requests
        in flight, alternately ``status`` and ``read``, sent in batches as answers free
        room.

    Meanwhile, whatever the attack, a *probe* does what an honest client does: every
    :data:`PROBE_PERIOD` seconds it opens a new client (:func:`trioraft.open_client`, the
    client secret) and asks the server its status, within :data:`PROBE_TIMEOUT`.
``{"op": "stop"}``
    end the attack; answer its figures (connections opened, closed by the server before
    or after its hello, bytes and requests sent, answers, the probe's successes and
    latencies, this process's CPU seconds over the attack).
``{"op": "quit"}``
    exit.

The process exits by itself if its parent dies, if stdin closes, and after
``--lifetime`` seconds (see ``_node_common.guard_orphan``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

import trioraft
from trioraft._network import wire
from trioraft._network.frames import FrameStream
from trioraft._network.tcp import client_handshake, parse_address
from trioraft._protocol import ClientRequest

if TYPE_CHECKING or __package__:
    from . import _node_common as common
    from . import _tcp_node as node
else:  # run by its path, its directory on sys.path (see _node_common)
    import _node_common as common
    import _tcp_node as node

#: Seconds an attack may take to be under way.
READY_TIMEOUT = 20.0
#: Seconds a failed connect waits before the next (a flood's connection, once closed).
REOPEN = 0.05
#: Seconds between two probes, and the longest a probe may take.
PROBE_PERIOD = 0.5
PROBE_TIMEOUT = 3.0
#: Requests of a flood sent in one batch at the most.
BURST = 64
_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)

Address = tuple[str, int]


class _Figures:
    """What an attack did, counted as it goes."""

    def __init__(self, kind: str, ready_on: str, count: int) -> None:
        self.kind = kind
        self.counts = dict.fromkeys(
            ("opened", "authenticated", "connect_errors", "refused", "closed_after_hello",
             "bytes_sent", "requests", "answers", "probes_ok", "probes_failed"),
            0,
        )  # fmt: skip
        self.probe_ms: list[float] = []
        #: The attack is under way once the count of ``ready_on`` reaches ``count``.
        self.ready_on, self.count = ready_on, count
        self.ready = trio.Event()
        self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n
        if key == self.ready_on and self.counts[key] >= self.count:
            self.ready.set()

    def as_json(self) -> dict[str, Any]:
        seconds = max(time.monotonic() - self.t0, 1e-9)
        probes = sorted(self.probe_ms)
        rates = {f"{k}_per_s": self.counts[k] / seconds for k in ("opened", "requests")}
        return {
            "kind": self.kind,
            "seconds": seconds,
            **self.counts,
            **rates,
            "probe_p50_ms": probes[len(probes) // 2] if probes else None,
            "probe_max_ms": probes[-1] if probes else None,
            "cpu_share": (time.process_time() - self.cpu0) / seconds,
        }


async def _connect(target: Address, figures: _Figures) -> trio.SocketStream | None:
    try:
        stream = await trio.open_tcp_stream(*target)
    except OSError:
        figures.add("connect_errors")
        await trio.sleep(REOPEN)
        return None
    figures.add("opened")
    return stream


async def _until_closed(stream: trio.SocketStream, figures: _Figures) -> None:
    """Read (and drop) what the server sends until it closes; count how it closed."""
    hello = False
    try:
        while await stream.receive_some(4096):
            hello = True
    except _CONNECTION_ERRORS:
        pass
    figures.add("closed_after_hello" if hello else "refused")


async def _keep_open(
    target: Address,
    figures: _Figures,
    params: dict[str, Any],
    use: Callable[[trio.SocketStream], Awaitable[None]],
) -> None:
    """``params["count"]`` connections, each ``use``d until it ends, then opened again
    ``params["reopen"]`` seconds later."""
    reopen = float(params["reopen"])

    async def slot() -> None:
        while True:
            stream = await _connect(target, figures)
            if stream is None:
                continue
            async with stream:
                await use(stream)
            await trio.sleep(reopen)

    async with trio.open_nursery() as nursery:
        for _ in range(int(params["count"])):
            nursery.start_soon(slot)
            await trio.sleep(0)


async def _idle(target: Address, figures: _Figures, params: dict[str, Any]) -> None:
    await _keep_open(target, figures, params, lambda stream: _until_closed(stream, figures))


async def _dribble(stream: trio.SocketStream, interval: float, figures: _Figures) -> None:
    """The start of a handshake frame (a 200-byte intro's length), one byte at a time."""
    data = struct.pack(">I", 200) + bytes([1]) + os.urandom(199)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                await _until_closed(stream, figures)
                scope.cancel()

            nursery.start_soon(watch)
            for byte in itertools.cycle(data):
                try:
                    await stream.send_all(bytes([byte]))
                except _CONNECTION_ERRORS:
                    break
                figures.add("bytes_sent")
                await trio.sleep(interval)
            scope.cancel()


async def _slowloris(target: Address, figures: _Figures, params: dict[str, Any]) -> None:
    interval = float(params["interval"])
    await _keep_open(target, figures, params, lambda stream: _dribble(stream, interval, figures))


def _reset(stream: trio.SocketStream) -> None:
    """Close with a reset (SO_LINGER 0): no TIME_WAIT on either side."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _garbage(target: Address, figures: _Figures, params: dict[str, Any]) -> None:
    rng = random.Random()

    async def worker() -> None:
        while True:
            stream = await _connect(target, figures)
            if stream is None:
                continue
            data = rng.randbytes(rng.randint(1, 1024))
            try:
                await stream.send_all(data)
                figures.add("bytes_sent", len(data))
            except _CONNECTION_ERRORS:
                pass
            _reset(stream)
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        for _ in range(int(params["workers"])):
            nursery.start_soon(worker)


async def _flood_connection(target: Address, window: int, figures: _Figures) -> None:
    """One authenticated client connection, ``window`` requests in flight, until it ends."""
    secret = bytes.fromhex(os.environ["TRIORAFT_BENCH_CLIENT_SECRET"])
    name = f"flood-{os.urandom(6).hex()}"
    stream = await trio.open_tcp_stream(*target)
    figures.add("opened")
    async with stream:
        frames = FrameStream(stream, 64 << 20)
        server = await client_handshake(frames, secret, "client", name)
        figures.add("authenticated")
        room = trio.Semaphore(window)
        ids = itertools.count(1)
        ops = itertools.cycle(("status", "read"))

        async def answers() -> None:
            while await frames.receive() is not None:
                figures.add("answers")
                room.release()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answers)
            while True:
                await room.acquire()
                n = 1
                while n < BURST:
                    try:
                        room.acquire_nowait()
                    except trio.WouldBlock:
                        break
                    n += 1
                batch = [
                    wire.encode(ClientRequest(name, server, 0, next(ids), next(ops)))
                    for _ in range(n)
                ]
                await stream.send_all(frames.seal_batch(batch))
                figures.add("requests", n)


async def _flood(target: Address, figures: _Figures, params: dict[str, Any]) -> None:
    window = int(params["window"])

    async def client() -> None:
        while True:
            try:
                await _flood_connection(target, window, figures)
            except Exception:  # refused, reset, a failed handshake: connect again
                figures.add("connect_errors")
            await trio.sleep(REOPEN)

    async with trio.open_nursery() as nursery:
        for _ in range(int(params["connections"])):
            nursery.start_soon(client)


async def _probe(target: str, figures: _Figures) -> None:
    """What an honest client gets meanwhile: a new client, and the server's status."""
    secret = bytes.fromhex(os.environ["TRIORAFT_BENCH_CLIENT_SECRET"])
    while True:
        started, ok = time.perf_counter(), False
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                async with trioraft.open_client([target], secret=secret) as client:
                    await client.status()
                    ok = True
            except (*_CONNECTION_ERRORS, trioraft.RaftError):
                pass
        if not ok:
            figures.add("probes_failed")
        else:
            figures.add("probes_ok")
            figures.probe_ms.append((time.perf_counter() - started) * 1e3)
        await trio.sleep(max(0.0, PROBE_PERIOD - (time.perf_counter() - started)))


Attack = Callable[[Address, _Figures, dict[str, Any]], Awaitable[None]]
#: Each attack, the figure that says it is under way, and its parameter that says when.
ATTACKS: dict[str, tuple[Attack, str, str]] = {
    "idle": (_idle, "opened", "count"),
    "slowloris": (_slowloris, "opened", "count"),
    "garbage": (_garbage, "opened", "workers"),
    "flood": (_flood, "authenticated", "connections"),
}


class _Attacker(common.Node):
    """The attack under way (one at a time), and its figures."""

    def __init__(self, nursery: trio.Nursery) -> None:
        super().__init__()
        self.nursery = nursery
        self.scope: trio.CancelScope | None = None
        self.figures: _Figures | None = None
        self.done = trio.Event()

    async def op_attack(self, cmd: dict[str, Any]) -> dict[str, Any]:
        await self.op_stop(cmd)
        kind, target = str(cmd["kind"]), str(cmd["target"])
        attack, ready_on, count_key = ATTACKS[kind]
        self.figures = figures = _Figures(kind, ready_on, int(cmd[count_key]))
        self.scope, self.done = trio.CancelScope(), trio.Event()
        self.nursery.start_soon(self._run, attack, target, figures, cmd, self.scope, self.done)
        with trio.move_on_after(READY_TIMEOUT):
            await figures.ready.wait()
        return {"started": kind, "ready": figures.ready.is_set(), **figures.counts}

    async def _run(
        self, attack: Attack, target: str, figures: _Figures, params: dict[str, Any],
        scope: trio.CancelScope, done: trio.Event,
    ) -> None:  # fmt: skip
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(attack, parse_address(target), figures, params)
                    nursery.start_soon(_probe, target, figures)
        finally:
            done.set()

    async def op_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.scope is None or self.figures is None:
            return {"stopped": None}
        self.scope.cancel()
        await self.done.wait()
        self.scope = None
        return {"stopped": self.figures.kind, **self.figures.as_json()}


async def _run(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        common.reply({"hello": "attacker", "pid": os.getpid()})
        attacker = _Attacker(nursery)
        await node._obey(attacker)
        await attacker.op_stop({})
        nursery.cancel_scope.cancel()


def main() -> None:
    """Run the attacker (see the module's documentation)."""
    parser = argparse.ArgumentParser(description="the hostile section's attacker")
    parser.add_argument("--lifetime", type=float, default=600.0, help="hard limit, seconds")
    args = parser.parse_args()
    common.guard_orphan(args.lifetime)
    trio.run(_run, args)


if __name__ == "__main__":
    main()
