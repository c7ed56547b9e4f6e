"""The ``clients`` section: clients from any Python, against the Trio client.

A cluster of three servers (:class:`~trioraft.MemoryStorage`, a secret) runs over TCP on
loopback in a child process; this process is the client. In paired rounds (the order of
the runs alternates from round to round), it measures writes/s of:

* the Trio client (:func:`trioraft.open_client` under Trio) and the same client under
  asyncio (through AnyIO), with 256 writer tasks each;
* the Trio client with 16 writer tasks, and :class:`trioraft.SyncClient` shared by 16
  threads.

Each run: a new client, ``warmup`` seconds of writes, then ``seconds`` measured. The
ratios (asyncio over Trio at 256, ``SyncClient`` over Trio at 16) are the figures of
record (issue 25's targets: at least 0.8 and 0.5); their medians over the rounds are
reported with each round's.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio

import trioraft

from ._base import BenchOptions, Reporter, Result, _table, section

__all__ = ["measure_clients", "render_clients"]

SECRET = b"the clients benchmark's secret"
WARMUP = 0.5

_CLUSTER = r"""
import json, sys, trio, trioraft
from trioraft.recipes import Counter
from trioraft.testing import free_tcp_ports

async def main():
    names = ["a", "b", "c"]
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_tcp_ports(3))}
    async with trio.open_nursery() as nursery:
        for name in names:
            peers = {m: a for m, a in addresses.items() if m != name}
            network = await nursery.start(serve_network, addresses[name], peers)
            await trioraft.start_server(nursery, Counter, name=name, network=network,
                                        initial_config=names)
        print(json.dumps(list(addresses.values())), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)   # until the driver closes stdin
        nursery.cancel_scope.cancel()

async def serve_network(listen, peers, task_status):
    async with trioraft.open_tcp_network(listen=listen, peers=peers,
                                         secret=bytes.fromhex(sys.argv[1])) as network:
        task_status.started(network)
        await trio.sleep_forever()

trio.run(main)
"""


@contextlib.contextmanager
def _cluster() -> Iterator[list[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER, SECRET.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark's cluster did not start")
        yield list(json.loads(line))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _async_writes(cluster: list[str], writers: int, seconds: float) -> float:
    """Writes/s of ``writers`` tasks sharing one client, on the running event loop."""
    counted = 0
    measuring = False
    first = anyio.Event()

    async def writer(client: trioraft.Client) -> None:
        nonlocal counted
        while True:
            await client.write(1)
            counted += measuring
            first.set()

    async with (
        trioraft.open_client(cluster, secret=SECRET) as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(writers):
            group.start_soon(writer, client)
        # The warm-up counts from the first write done: on a loaded machine, the
        # connections alone could take all of a fixed warm-up, and the run count nothing.
        await first.wait()
        await anyio.sleep(WARMUP)
        measuring, start = True, time.perf_counter()
        await anyio.sleep(seconds)
        measuring, elapsed = False, time.perf_counter() - start
        group.cancel_scope.cancel()
    return counted / elapsed


def _sync_writes(cluster: list[str], threads: int, seconds: float) -> float:
    """Writes/s of ``threads`` threads sharing one :class:`~trioraft.SyncClient`."""
    counts = [0] * threads
    state = {"measuring": False, "stop": False}
    first = threading.Event()

    def writer(i: int, client: trioraft.SyncClient) -> None:
        while not state["stop"]:
            client.write(1)
            counts[i] += state["measuring"]
            first.set()

    with trioraft.SyncClient(cluster, secret=SECRET) as client:
        workers = [threading.Thread(target=writer, args=(i, client)) for i in range(threads)]
        for worker in workers:
            worker.start()
        first.wait(30)  # as in _async_writes: the warm-up counts from the first write
        time.sleep(WARMUP)
        state["measuring"], start = True, time.perf_counter()
        time.sleep(seconds)
        state["measuring"], elapsed = False, time.perf_counter() - start
        state["stop"] = True
        for worker in workers:
            worker.join(30)
    return sum(counts) / elapsed


def _runs(cluster: list[str], seconds: float) -> dict[str, Callable[[], float]]:
    return {
        "trio_256": lambda: anyio.run(_async_writes, cluster, 256, seconds, backend="trio"),
        "asyncio_256": lambda: anyio.run(_async_writes, cluster, 256, seconds, backend="asyncio"),
        "trio_16": lambda: anyio.run(_async_writes, cluster, 16, seconds, backend="trio"),
        "sync_16": lambda: _sync_writes(cluster, 16, seconds),
    }


def measure_clients(rounds: int, seconds: float, progress: Reporter | None = None) -> Result:
    """Paired rounds of the four runs (see the module's documentation)."""
    report = progress or (lambda message: None)
    per_round: list[dict[str, float]] = []
    with _cluster() as cluster:
        runs = _runs(cluster, seconds)
        for number in range(rounds):
            order = list(runs) if number % 2 == 0 else list(reversed(runs))
            figures = {}
            for name in order:
                figures[name] = runs[name]()
                report(f"clients: round {number + 1}, {name}: {figures[name]:,.0f} writes/s")
            per_round.append(figures)
    ratios = {
        "asyncio_over_trio_256": [r["asyncio_256"] / r["trio_256"] for r in per_round],
        "sync_over_trio_16": [r["sync_16"] / r["trio_16"] for r in per_round],
    }
    return {
        "rounds": per_round,
        "ratios": ratios,
        "medians": {name: statistics.median(values) for name, values in ratios.items()},
        "targets": {"asyncio_over_trio_256": 0.8, "sync_over_trio_16": 0.5},
        "cpus": os.cpu_count(),
    }


def run_clients(options: BenchOptions, results: Mapping[str, Result], progress: Reporter) -> Result:
    """The ``clients`` section, with the paired comparisons' rounds and seconds."""
    return measure_clients(
        max(1, options.tcp_paired_rounds), options.tcp_paired_seconds, progress=progress
    )


def render_clients(result: Result) -> list[str]:
    """Table lines for the ``clients`` section."""
    names = ["trio_256", "asyncio_256", "trio_16", "sync_16"]
    rows: list[list[Any]] = [
        [f"round {i + 1}", *(f"{r[name]:,.0f}" for name in names)]
        for i, r in enumerate(result["rounds"])
    ]
    lines = _table(["writes/s", *names], rows)
    for name, median in result["medians"].items():
        each = ", ".join(f"{v:.2f}" for v in result["ratios"][name])
        target = result["targets"][name]
        verdict = "met" if median >= target else "missed"
        lines.append(f"{name}: median {median:.2f} (rounds {each}); target >= {target} {verdict}")
    return lines


SECTION = section(
    "clients",
    "clients from asyncio and threads against the Trio client, over TCP",
    run_clients,
    render_clients,
    default=False,
    options=("tcp_paired_rounds", "tcp_paired_seconds"),
)
