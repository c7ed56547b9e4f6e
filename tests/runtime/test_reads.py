"""Reads beyond the leader: follower reads (§6.4) and lease reads (§6.4.1), in clusters.

The promises checked (API, "Reads beyond the leader"): with ``follower_reads``, ``read``
on any server is linearizable; with ``lease_reads``, the leader answers without a round
while its lease holds, and a lease read never returns a value older than a write that
completed before it began, even while a new leader is elected on the other side of a
partition; the linearizability checker accepts histories of reads from every server
under partitions, jumps of the virtual clock and leader changes.
"""

from __future__ import annotations

import contextlib
import random

import pytest
import trio
import trio.testing

import trioraft
from trioraft.testing import Cluster, History, counter_model, open_cluster, run

from machines import Counter

READS = {"follower_reads": True, "lease_reads": True}


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def test_read_on_a_follower_is_linearizable(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(Counter, 3, seed=1, **READS) as cluster:
        leader = await stable(cluster)
        await leader.write(7)
        for server in cluster.servers.values():
            assert await server.read(None) == 7  # followers too: they wait to apply


async def test_without_follower_reads_a_follower_redirects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, 3, seed=2) as cluster:
        leader = await stable(cluster)
        follower = next(s for s in cluster.servers.values() if s is not leader)
        with pytest.raises(trioraft.NotLeader) as info:
            await follower.read(None)
        assert info.value.leader == leader.name


async def test_lease_read_needs_no_round(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(Counter, 3, seed=3, lease_reads=True) as cluster:
        leader = await stable(cluster)
        await leader.write(1)
        await trio.sleep(0.06)  # a heartbeat round renews the lease
        before = cluster.network.statistics().sent
        assert await leader.read(None) == 1
        assert cluster.network.statistics().sent == before  # answered without a message


@pytest.mark.parametrize("seed", range(3))
def test_lease_read_is_never_stale_across_a_partition(seed: int) -> None:
    """The old leader, cut off with its lease, serves reads; the majority elects a new
    leader and completes a write. No read on the old leader that begins after that
    write completed returns a value without it: the lease ended before anyone else could
    be elected."""

    async def scenario() -> None:
        async with open_cluster(Counter, 5, seed=seed, lease_reads=True) as cluster:
            old = await stable(cluster)
            await old.write(1)
            await trio.sleep(0.06)
            others = [n for n in cluster.names if n != old.name]
            cluster.partition([old.name], others)
            done_at: list[float] = []
            stale: list[tuple[float, int]] = []

            async def read_old_leader() -> None:
                while True:
                    began = trio.current_time()
                    try:
                        value = await old.read(None)
                    except trioraft.RaftError:
                        return
                    if done_at and began >= done_at[0] and value < 2:
                        stale.append((began, value))
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_old_leader)
                new = await cluster.wait_for_leader(exclude=[old.name])
                assert await new.write(1) == 2
                done_at.append(trio.current_time())
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
            assert not stale, f"stale lease reads: {stale}"

    run(scenario, seed=seed)


@pytest.mark.parametrize("seed", range(3))
def test_a_follower_read_through_a_deposed_leader_is_never_stale(seed: int) -> None:
    """§6.4: a leader cut off with one follower (five voters, CheckQuorum off, so it
    keeps leading in its own eyes) while the majority elects a new leader and completes
    a write. That follower's reads go to the old leader, which cannot gather a quorum:
    none of them returns a value without the write (they wait, or fail)."""

    async def scenario() -> None:
        async with open_cluster(
            Counter, 5, seed=seed, follower_reads=True, check_quorum=False
        ) as cluster:
            old = await stable(cluster)
            await old.write(1)
            await trio.sleep(0.1)
            friend = next(n for n in cluster.names if n != old.name)
            cluster.partition([old.name, friend], [n for n in cluster.names
                                                   if n not in (old.name, friend)])  # fmt: skip
            new = await cluster.wait_for_leader(exclude=[old.name, friend])
            assert await new.write(1) == 2
            follower = cluster.servers[friend]
            assert follower.leader() == old.name  # it still follows the old leader
            answers: list[int] = []
            with trio.move_on_after(1):
                while True:
                    with contextlib.suppress(trioraft.RaftError):
                        answers.append(await follower.read(None))
                    await trio.sleep(0.01)
            assert all(value >= 2 for value in answers), f"stale follower reads: {answers}"

    run(scenario, seed=seed)


@pytest.mark.parametrize(
    ("servers", "options", "seed"),
    [(5, READS, seed) for seed in range(4)]
    # Three voters, ReadIndex only: a follower's request and the leader are a quorum, so
    # the leader answers it with no round (its lease plays no part).
    + [(3, {"follower_reads": True}, seed) for seed in range(4)],
)
def test_reads_from_every_server_are_linearizable_under_faults(
    servers: int, options: dict[str, bool], seed: int
) -> None:
    async def scenario(clock_jumps: list[float]) -> History:
        history = History()
        rng = random.Random(seed)
        async with open_cluster(Counter, servers, seed=seed, **options) as cluster:
            await stable(cluster)

            async def reader(k: int) -> None:
                while True:
                    server = cluster.servers.get(rng.choice(cluster.names))
                    if server is not None:
                        try:
                            with trio.move_on_after(1):
                                async with history.operation(k, "read", None) as op:
                                    op.output = await server.read(None)
                        except trioraft.RaftError:
                            pass
                    await trio.sleep(rng.uniform(0.0, 0.05))

            async def writer(k: int) -> None:
                while True:
                    leader = cluster.leader()
                    if leader is not None:
                        amount = rng.randint(1, 10**6)
                        try:
                            with trio.move_on_after(1):
                                async with history.operation(k, "write", amount) as op:
                                    op.output = await leader.write(amount)
                        except trioraft.RaftError:
                            pass
                    await trio.sleep(rng.uniform(0.0, 0.1))

            async def faults() -> None:
                clock = trio.lowlevel.current_clock()
                assert isinstance(clock, trio.testing.MockClock)
                for _ in range(8):
                    await trio.sleep(rng.uniform(0.2, 0.6))
                    names = list(cluster.names)
                    rng.shuffle(names)
                    cut = rng.randint(1, 2)
                    cluster.partition(names[:cut], names[cut:])
                    await trio.sleep(rng.uniform(0.2, 0.6))
                    jump = rng.choice([0.0, 0.1, 0.5])
                    clock.jump(jump)  # time leaps: leases lapse, timers fire at once
                    clock_jumps.append(jump)
                    leader = cluster.leader()
                    if leader is not None and rng.random() < 0.5:
                        await cluster.crash(leader.name)
                    await cluster.recover()

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(reader, k)
                nursery.start_soon(writer, 10)
                nursery.start_soon(writer, 11)
                await faults()
                nursery.cancel_scope.cancel()
        return history

    jumps: list[float] = []
    history = run(scenario, jumps, seed=seed, hang_timeout=120)
    reads = [op for op in history.operations if op.kind == "read" and not op.unknown]
    assert len(reads) > 50
    result = history.check(counter_model(), max_seconds=60)
    assert result.ok is True, str(result)


async def test_follower_reads_finish_when_requests_are_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.4 (follower reads): a lost request for a read index (or its answer) is asked
    again, so every follower read ends, with a value or NotLeader, under message loss;
    none waits for a leader change that may never come."""
    async with open_cluster(Counter, 3, seed=4, follower_reads=True) as cluster:
        leader = await stable(cluster)
        await leader.write(1)
        cluster.set_loss(0.3)
        answered = 0
        for _ in range(40):
            follower = next(
                (
                    s
                    for s in cluster.servers.values()
                    if s.status().role is not trioraft.Role.LEADER
                ),
                None,
            )
            assert follower is not None
            with trio.fail_after(2):  # virtual seconds: a few retries at most
                try:
                    assert await follower.read(None) == 1
                    answered += 1
                except trioraft.NotLeader:
                    await trio.sleep(0.3)
        assert answered >= 20
