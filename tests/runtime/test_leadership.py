"""Leader-scoped work and Trio-shaped handles (autojump clock).

The promises checked: ``async with server.leadership() as term:`` runs its body only
while the server leads with its lease, is cancelled within an election timeout of the
leader being cut off, and restarts on the new leader; bodies on different servers never
overlap (in virtual time, hence in the log); ``server.terms()`` yields each term the
server leads; ``open_server`` owns its server; ``aclose``; ``statistics()``.
"""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

import trioraft
from trioraft.testing import Cluster, open_cluster, run

from machines import Counter


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def test_body_runs_while_leading_and_is_cancelled_within_an_election_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, 3, seed=1) as cluster:
        leader = await stable(cluster)
        started: list[int] = []
        ended: list[float] = []

        async def work() -> None:
            async with leader.leadership() as term:
                started.append(term)
                await trio.sleep_forever()
            ended.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work)
            await trio.sleep(1)
            assert started == [leader.status().term] and not ended
            cut = trio.current_time()
            cluster.isolate(leader.name)
            await trio.sleep(2)
        assert ended and ended[0] - cut <= 0.30  # the longest election timeout


async def test_body_waits_until_the_server_leads(autojump_clock: trio.testing.MockClock) -> None:
    async with open_cluster(Counter, 3, seed=2) as cluster:
        leader = await stable(cluster)
        follower = next(s for s in cluster.servers.values() if s is not leader)
        ran: list[int] = []

        async def work() -> None:
            async with follower.leadership() as term:
                ran.append(term)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work)
            await trio.sleep(1)
            assert ran == []  # not the leader: still waiting
            await leader.transfer_leadership(follower.name)
            await trio.sleep(0.5)
        assert ran == [follower.status().term]


@pytest.mark.parametrize("seed", range(3))
def test_leadership_moves_and_bodies_never_overlap(seed: int) -> None:
    """Every server runs ``async for term in server.terms(): async with
    server.leadership():`` under faults. Bodies restart on each new leader, and no two
    bodies ever run at the same (virtual) time: as seen from the log, leadership never
    overlaps."""

    async def scenario() -> list[tuple[float, float, str, int]]:
        intervals: list[tuple[float, float, str, int]] = []
        rng = random.Random(seed)
        async with open_cluster(Counter, 5, seed=seed) as cluster:
            await stable(cluster)

            async def lead(name: str) -> None:
                server = cluster[name]
                async for term in server.terms():
                    async with server.leadership() as held:
                        assert held == term
                        start = trio.current_time()
                        try:
                            await trio.sleep_forever()
                        finally:
                            intervals.append((start, trio.current_time(), name, term))

            async with trio.open_nursery() as nursery:
                for name in cluster.names:
                    nursery.start_soon(lead, name)
                for _ in range(8):
                    await trio.sleep(rng.uniform(0.5, 1.5))
                    leader = cluster.leader()
                    if leader is not None:
                        cluster.isolate(leader.name)
                    await trio.sleep(rng.uniform(0.5, 1.5))
                    cluster.heal()
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
        return intervals

    intervals = sorted(run(scenario, seed=seed))
    assert len({name for _, _, name, _ in intervals}) >= 2  # it moved
    terms = [term for _, _, _, term in intervals]
    assert terms == sorted(terms) and len(set(terms)) == len(terms)
    for (_, e1, n1, t1), (s2, _, n2, t2) in itertools.pairwise(intervals):
        assert e1 <= s2, f"{n1} (term {t1}) and {n2} (term {t2}) led at once: {e1} > {s2}"


async def test_open_server_owns_its_server_and_statistics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = trioraft.MemoryNetwork(seed=0)
    async with trioraft.open_server(
        Counter, name="a", network=network, initial_config=["a"]
    ) as server:
        await server.await_leader()
        for _ in range(3):
            await server.write(1)
        stats = server.statistics()
        assert stats.role is trioraft.Role.LEADER and stats.last_applied == stats.commit_index
        assert stats.writes_in_flight == stats.reads_in_flight == 0 and stats.apply_lag == 0
        assert stats.log_length == 4  # the no-op and three writes
    assert server.stopped and network.servers == ()
    async with trioraft.open_server(Counter, name="b", network=network) as other:
        await other.aclose()
        assert other.stopped


async def test_role_changes_tells_where_the_server_is_and_ends_when_it_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``server.role_changes()`` yields the server's status at once, then one for each
    change of role, term or leader, in order (here up to s1 leading, by election or by a
    transfer), none repeated, and ends when the server stops."""
    async with open_cluster(Counter, 3, seed=4) as cluster:
        follower = cluster["s1"]
        seen: list[tuple[trioraft.Role, int, str | None]] = []
        done = trio.Event()

        async def watch() -> None:
            async for status in follower.role_changes():
                seen.append((status.role, status.term, status.leader))
            done.set()

        cluster.nursery.start_soon(watch)
        leader = await stable(cluster)
        await trio.sleep(0.1)
        if leader is not follower:
            await leader.transfer_leadership("s1")
            await trio.sleep(0.1)
        assert seen[0] == (trioraft.Role.FOLLOWER, 0, None)
        term = follower.status().term
        assert seen[-1] == (trioraft.Role.LEADER, term, "s1")
        # Every step, in order: the election that made s1 leader made it a candidate first.
        assert seen[-2] == (trioraft.Role.CANDIDATE, term, None)
        assert len(set(seen)) == len(seen)  # a line per change, none repeated
        await follower.stop()
        with trio.fail_after(1):
            await done.wait()
