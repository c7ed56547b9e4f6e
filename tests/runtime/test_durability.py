"""Durability and snapshots in running clusters (autojump clock, MemoryStorage).

The promises checked: a server snapshots and compacts its log once ``snapshot_threshold``
entries were applied (dissertation §5), and its log stays bounded; a follower that falls
behind the compacted log, and a server added after compaction, catch up by
InstallSnapshot; a restarted server restores its snapshot, then applies its log; a state
machine without ``snapshot()`` never compacts; ``take_snapshot()`` and
``Status.snapshot_index``; and nothing is acknowledged before it is durable: a crash
during a storage sync loses what was not synced, and what it loses was never reported
as done.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trioraft
from trioraft import MemoryStorage
from trioraft.testing import Cluster, open_cluster

from machines import Counter

SMALL = {"snapshot_threshold": 20, "snapshot_trailing": 5}


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def settled(cluster: Cluster) -> None:
    """Every running member has applied everything the leader committed."""
    leader = await stable(cluster)
    target = leader.status().commit_index
    with trio.fail_after(20):
        while any(s.status().last_applied < target for s in cluster.servers.values()):
            await trio.sleep(0.01)


class NoSnapshots(trioraft.StateMachine):
    def __init__(self) -> None:
        self.value = 0

    def write(self, command: Any) -> Any:
        self.value += command
        return self.value

    def read(self, query: Any) -> Any:
        return self.value


async def test_log_is_compacted_and_stays_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(Counter, 3, seed=1, **SMALL) as cluster:
        await stable(cluster)
        for i in range(1, 201):
            assert await cluster.write(1) == i
            for server in cluster.servers.values():
                log = server._node.log
                assert log.last_index - log.snapshot_index <= 20 + 5 + 2
        await settled(cluster)
        for server in cluster.servers.values():
            status = server.status()
            assert status.snapshot_index >= 180
            assert server.storage.snapshot.index == status.snapshot_index
            assert server.machine.value == 200


async def test_follower_partitioned_during_compaction_catches_up_by_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, 3, seed=2, **SMALL) as cluster:
        leader = await stable(cluster)
        lagging = next(n for n in cluster.servers if n != leader.name)
        cluster.isolate(lagging)
        for _ in range(100):
            await cluster.write(1)
        assert leader.status().snapshot_index >= 80
        assert cluster[lagging].status().snapshot_index == 0
        cluster.heal()
        await settled(cluster)
        follower = cluster[lagging]
        assert follower.status().snapshot_index >= 80  # installed the leader's snapshot
        assert follower.machine.value == 100
        assert follower.machine.applied == leader.machine.applied


async def test_server_added_after_compaction_gets_the_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, 3, seed=3, **SMALL) as cluster:
        leader = await stable(cluster)
        for _ in range(60):
            await cluster.write(2)
        newcomer = await cluster.start("d", initial_config=())
        with trio.fail_after(10):
            await leader.add_server("d")
        await settled(cluster)
        assert newcomer.status().snapshot_index > 0
        assert newcomer.machine.value == 120
        assert "d" in leader.status().voters


async def test_restart_restores_snapshot_then_applies_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, 3, seed=4, **SMALL) as cluster:
        leader = await stable(cluster)
        for _ in range(47):
            await cluster.write(1)
        await settled(cluster)
        victim = next(n for n in cluster.servers if n != leader.name)
        snap = cluster[victim].status().snapshot_index
        assert snap > 0
        await cluster.crash(victim)
        restarted = await cluster.restart(victim)
        assert restarted.status().snapshot_index == snap
        assert restarted.status().last_applied >= snap  # restored, not replayed
        await settled(cluster)
        assert restarted.machine.value == 47


async def test_machine_without_snapshot_never_compacts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(NoSnapshots, 3, seed=5, **SMALL) as cluster:
        leader = await stable(cluster)
        for _ in range(60):
            await cluster.write(1)
        await settled(cluster)
        for server in cluster.servers.values():
            assert server.status().snapshot_index == 0
            assert server._node.log.first_index == 1
        with pytest.raises(TypeError, match="snapshot"):
            await leader.take_snapshot()


async def test_take_snapshot_now(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(Counter, 3, seed=6) as cluster:
        leader = await stable(cluster)
        for _ in range(10):
            await cluster.write(1)
        index = await leader.take_snapshot()
        status = leader.status()
        assert index == status.last_applied == status.snapshot_index
        assert leader.storage.snapshot.index == index  # durable when it returns
        assert await leader.take_snapshot() == index  # nothing new: the same one


class Unencodable(Counter):
    def snapshot(self) -> Any:
        return {1, 2, 3}  # a set: not a msgpack value


class UnencodableBelow30(Counter):
    """A snapshot that cannot be encoded while the count is below 30."""

    attempts = 0

    def snapshot(self) -> Any:
        UnencodableBelow30.attempts += 1
        return {1, 2, 3} if self.value < 30 else super().snapshot()


async def test_snapshot_that_cannot_be_encoded_stops_compaction_not_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Unencodable, 3, seed=7, **SMALL) as cluster:
        leader = await stable(cluster)
        with pytest.raises(TypeError, match=r"builtins\.set"):
            await leader.take_snapshot()
        for _ in range(40):
            await cluster.write(1)  # automatic snapshots fail quietly (logged)
        assert not leader.stopped and leader.status().snapshot_index == 0


async def test_a_failed_snapshot_is_tried_again_a_threshold_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A snapshot that fails does not switch compaction off for good (the log would grow
    without bound after one bad moment): the next try comes once another
    ``snapshot_threshold`` entries are applied, and not at every entry until then."""
    UnencodableBelow30.attempts = 0
    async with open_cluster(UnencodableBelow30, 3, seed=7, **SMALL) as cluster:
        leader = await stable(cluster)
        for _ in range(29):
            await cluster.write(1)
        assert leader.status().snapshot_index == 0  # the try at 20 failed (a set)
        failed = UnencodableBelow30.attempts
        assert 1 <= failed <= 3  # one try per server that reached 20, not one per entry
        for _ in range(40):
            await cluster.write(1)
        # Tried again a threshold after the failure, with the count at 30 or more.
        assert leader.status().snapshot_index >= 40
        assert leader.status().last_log_index - leader.status().snapshot_index <= 20 + 5
        assert not leader.stopped


async def test_crash_during_sync_loses_only_what_was_never_acknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A single-server cluster whose storage takes a second to sync: a write whose
    entry is not yet durable when the server crashes is not there after the restart,
    and its caller was never told it succeeded."""
    network = trioraft.MemoryNetwork(seed=0)
    storage = MemoryStorage(sync_latency=(1.0, 1.0))
    async with trio.open_nursery() as nursery:
        server = await trioraft.start_server(
            nursery, Counter, name="a", network=network, initial_config=["a"], storage=storage
        )
        await server.await_leader()
        assert await server.write(5) == 5
        durable = storage.log.last_index
        outcome: list[BaseException] = []
        done = trio.Event()

        async def write() -> None:
            try:
                await server.write(7)
            except trioraft.RaftError as exc:
                outcome.append(exc)
            done.set()

        nursery.start_soon(write)
        await trio.sleep(0.5)  # appended, staged, not yet synced
        assert server._node.log.last_index > storage.log.last_index == durable
        await server.stop()
        await done.wait()  # the writer has seen how its write ended
        assert len(outcome) == 1 and isinstance(outcome[0], trioraft.OutcomeUnknown)
        assert storage.log.last_index == durable  # the unsynced entry is gone
        again = await trioraft.start_server(
            nursery, Counter, name="a", network=network, initial_config=["a"], storage=storage
        )
        await again.await_leader()
        assert await again.read(None) == 5
        nursery.cancel_scope.cancel()
