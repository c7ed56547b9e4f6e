"""The ``snapshot`` section of the benchmark (see :mod:`trioraft.bench`): installing a
large snapshot on a new server, against a bare copy of the same bytes over the same
transport."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import trio

import trioraft
from trioraft._core.messages import Config, InstallSnapshot, InstallSnapshotResponse
from trioraft._core.options import CoreOptions

from ._base import (
    BenchOptions,
    Reporter,
    Result,
    _records_table,
    section,
)
from ._cluster import stable_cluster

__all__ = ["BlobMachine", "bare_copy", "measure_snapshot", "render_snapshot"]

#: Bytes of state each write adds (so ``snapshot_mb`` writes make ``snapshot_mb`` MB).
PIECE = 1_000_000


class BlobMachine(trioraft.StateMachine):
    """A state of bytes: ``write(piece)`` appends a ``bytes`` piece and returns how many
    pieces there are; ``read`` returns the total size; the snapshot is the list of
    pieces (a msgpack value)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, command: Any) -> Any:
        """Append the ``bytes`` piece ``command``."""
        if not isinstance(command, bytes):
            raise TypeError(f"BlobMachine stores bytes, not {type(command).__name__}")
        self.pieces.append(command)
        return len(self.pieces)

    def read(self, query: Any) -> Any:
        """The total size of the state in bytes."""
        return sum(len(p) for p in self.pieces)

    def snapshot(self) -> Any:
        """The list of pieces."""
        return self.pieces

    def restore(self, snapshot: Any) -> None:
        """Set the list of pieces."""
        self.pieces = list(snapshot)


async def bare_copy(
    network: trioraft.MemoryNetwork, data: bytes, chunk_size: int, window: int
) -> float:
    """Seconds to send ``data`` from one endpoint of ``network`` to another, in chunks of
    ``chunk_size`` bytes with at most ``window`` chunks unacknowledged, each chunk
    appended to a buffer at the receiver and acknowledged with the length received:
    what a snapshot transfer must do at the least, in the same messages."""
    sender, receiver = network.register("bare-copy-from"), network.register("bare-copy-to")
    size, received = len(data), bytearray()

    async def receive() -> None:
        while len(received) < size:
            for m in await receiver.receive_batch():
                assert isinstance(m, InstallSnapshot)
                received.extend(m.data)
                ack = len(received)
                receiver.send(
                    InstallSnapshotResponse(receiver.name, sender.name, 1, 1, ack, ack >= size)
                )

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        sent = acked = 0
        while acked < size:
            while sent < size and sent - acked < window * chunk_size:
                chunk = data[sent : sent + chunk_size]
                sender.send(
                    InstallSnapshot(
                        sender.name, receiver.name, 1, 1, 1, Config(), sent, size, chunk
                    )
                )
                sent += len(chunk)
            for m in await sender.receive_batch():
                assert isinstance(m, InstallSnapshotResponse)
                acked = max(acked, m.offset)
    elapsed = time.perf_counter() - started
    sender.close()
    receiver.close()
    if received != data:
        raise AssertionError("the bare copy delivered other bytes")
    return elapsed


async def _fill(leader: trioraft.Server, megabytes: int) -> None:
    rng = random.Random(0)
    for _ in range(megabytes):
        await leader.write(rng.randbytes(PIECE))


async def _install(
    nursery: trio.Nursery, network: trioraft.MemoryNetwork, leader: trioraft.Server, index: int
) -> Result:
    """Add an empty server; time until it holds the snapshot and the leader's state, and
    until ``add_server`` returned. Should ``add_server`` give up on it
    (:class:`~trioraft.CatchUpFailed`) while the snapshot is still on its way, that is
    noted, the install timed all the same (the learner keeps receiving it), and
    ``add_server`` called again once it is installed, to promote the learner."""
    newcomer = await trioraft.start_server(
        nursery, BlobMachine, name="raft4", network=network, seed=99, snapshot_trailing=0
    )
    installed, added = trio.Event(), trio.Event()
    failure: list[str] = []
    started = time.perf_counter()

    async def add() -> None:
        try:
            await leader.add_server(newcomer.name)
        except trioraft.CatchUpFailed as exc:
            failure.append(f"after {time.perf_counter() - started:.3f} s: {exc}")
            await installed.wait()
            await leader.add_server(newcomer.name)
        added.set()

    nursery.start_soon(add)
    with trio.fail_after(600):
        while True:
            # The moment the state is seen whole (the comparison's own time left out).
            seen = time.perf_counter()
            if (
                newcomer.status().snapshot_index >= index
                and newcomer.machine.pieces == leader.machine.pieces
            ):
                break
            await trio.sleep(0.001)
        installed.set()
        install_s = seen - started
        await added.wait()
    return {
        "install_s": install_s,
        "add_server_s": time.perf_counter() - started,
        "add_server_failure": failure[0] if failure else None,
    }


async def _snapshot_run(megabytes: int) -> Result:
    options = CoreOptions()
    # snapshot_trailing=0: take_snapshot() drops the whole log behind it.
    blobs = {"machine": BlobMachine, "init": (), "snapshot_trailing": 0}
    async with stable_cluster(**blobs) as cluster:
        leader, network = cluster.leader, cluster.network
        await _fill(leader, megabytes)
        index = await leader.take_snapshot()
        snapshot = leader.storage.snapshot
        assert snapshot is not None and snapshot.index == index
        data = snapshot.data
        chunk, window = options.snapshot_chunk_size, options.max_inflight
        bare_s = await bare_copy(network, data, chunk, window)
        install = await _install(cluster.nursery, network, leader, index)
    size_mb = len(data) / 1e6
    install_s, failure = install["install_s"], install["add_server_failure"]
    return {
        "state_mb": megabytes * PIECE / 1e6,
        "snapshot_mb": size_mb,
        "snapshot_index": index,
        "chunk_size": chunk,
        "window": window,
        "install_s": install_s,
        "add_server_s": install["add_server_s"],
        "add_server_failure": failure,
        "bare_s": bare_s,
        "install_mb_per_s": size_mb / install_s,
        "bare_mb_per_s": size_mb / bare_s,
        "ratio": bare_s / install_s,
        "errors": [] if failure is None else [f"add_server raised CatchUpFailed {failure}"],
    }


def measure_snapshot(megabytes: int) -> Result:
    """Install a ``megabytes`` MB snapshot on a new server, and copy its bytes bare over
    the same transport (see the ``snapshot`` section), in a fresh ``trio.run``."""
    if megabytes < 1:
        raise ValueError(f"megabytes must be at least 1, got {megabytes}")
    return trio.run(_snapshot_run, megabytes)


def run_snapshot(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``snapshot`` section: :func:`measure_snapshot` with ``options.snapshot_mb``."""
    progress(f"snapshot: a {options.snapshot_mb} MB state to a new server ...")
    result = measure_snapshot(options.snapshot_mb)
    progress(
        f"snapshot: install {result['install_mb_per_s']:,.0f} MB/s, bare copy "
        f"{result['bare_mb_per_s']:,.0f} MB/s, ratio {result['ratio']:.2f}"
    )
    return result


def render_snapshot(result: Result) -> list[str]:
    """Table lines for the ``snapshot`` section."""
    rows = [
        ("install on a new server", result["install_s"], result["install_mb_per_s"]),
        ("bare copy, same transport", result["bare_s"], result["bare_mb_per_s"]),
    ]
    lines = _records_table(
        [{"name": name, "s": s, "rate": rate, **result} for name, s, rate in rows],
        "{name} | MB: {snapshot_mb:.1f} | seconds: {s:.3f} | MB/s: {rate:,.1f}",
    )
    lines.append(
        f"ratio install / bare copy = {result['ratio']:.3f} (target >= 0.5); "
        f"add_server returned after {result['add_server_s']:.3f} s; chunks of "
        f"{result['chunk_size']:,} bytes, {result['window']} in flight"
    )
    if result["add_server_failure"] is not None:
        lines.append(
            "add_server gave up on the new server while the snapshot was on its way "
            f"({result['add_server_failure']}); called again once it was installed"
        )
    return lines


SECTION = section(
    "snapshot",
    "Snapshot install on a new server",
    run_snapshot,
    render_snapshot,
    options=("snapshot_mb",),
)
