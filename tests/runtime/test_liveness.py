"""Liveness: a cluster whose quorum is up and connected always elects a leader again.

Each test is a way a cluster was once left without a leader for good (or a server left
stuck), reproduced on the autojump clock. The rules they check: a server removed by an
*uncommitted* configuration entry may still have to lead (dissertation §4.2.2); a leader
tells removed servers of their removal until they know it committed, whoever removed
them; a name that rejoins starts from fresh progress; membership never drops below the
``min_majority`` floor; the runtime runs one replication task per member, whatever
happens between two looks; and the testing toolkit's liveness check catches a cluster
that does not elect a leader in bounded time after a recovery.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trioraft
from trioraft import MemoryStorage, Role
from trioraft._core.messages import AppendEntries, AppendResponse, Heartbeat, InstallSnapshot
from trioraft.testing import (
    LIVENESS_ELECTION_TIMEOUTS,
    Cluster,
    InvariantViolation,
    open_cluster,
)

from machines import Counter


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


@pytest.mark.parametrize("seed", range(6))
async def test_leader_removed_by_uncommitted_entry_leads_again_after_restart(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """§4.2.2: L removes X (committed); Y goes down; L removes itself (appended, not
    committed); L goes down. L and Y come back: L has the longer log and is outside its
    latest configuration, Y cannot win without L's vote. L must campaign, win with Y's
    vote, commit its removal and hand over to Y."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=seed) as cluster:
        leader = await stable(cluster)
        await cluster.write(1)
        x, y = sorted(n for n in "abc" if n != leader.name)
        with trio.fail_after(5):
            await leader.remove_server(x)
        await cluster.crash(y)
        with trio.move_on_after(0.5):
            await leader.remove_server(leader.name)  # cannot commit: y is down
        assert leader.status().voters == {y}
        assert leader.storage.commit_index < leader.status().last_log_index
        await cluster.crash(leader.name)
        await cluster.crash(x)  # removed for good: it stays down
        del cluster.storages[x]
        await cluster.recover()
        new = await stable(cluster)
        assert new.name == y and new.status().voters == {y}
        assert await cluster.write(2) == 3


async def test_removed_while_down_learns_its_removal_from_a_new_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.2: a server removed while it was down, restarted after the leader that
    removed it is gone, is told of its removal by the new leader (which learns of it from
    the configurations in its log, or from the server's campaign), and stops campaigning."""
    async with open_cluster(Counter, ["a", "b", "c", "d"], seed=3, check_quorum=False) as cluster:
        leader = await stable(cluster)
        victim = sorted(n for n in "abcd" if n != leader.name)[0]
        await cluster.crash(victim)
        with trio.fail_after(5):
            await leader.remove_server(victim)
        await cluster.write(1)
        old = leader.name
        await cluster.crash(old)
        new = await stable(cluster)
        assert new.name != old
        await cluster.restart(victim)
        await cluster.restart(old)
        with trio.fail_after(10):
            while not (
                cluster[victim].status().waiting_to_be_added
                and cluster[victim].storage.commit_index >= cluster[victim]._node.config_index
            ):
                await trio.sleep(0.05)
        term = new.status().term
        await trio.sleep(5)  # many election timeouts: the removed server stays quiet
        assert cluster[victim].status().role is Role.FOLLOWER
        assert new.status().role is Role.LEADER and new.status().term == term
        assert victim not in new._node.progress  # and the leader no longer sends to it


async def test_name_readded_with_fresh_storage_gets_the_whole_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A voter removed while down and re-added under the same name with empty storage
    is caught up from the start: the leader forgets what it knew of the old one."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=1) as cluster:
        leader = await stable(cluster)
        victim = sorted(n for n in "abc" if n != leader.name)[0]
        for _ in range(20):
            await cluster.write(1)
        await trio.sleep(0.2)
        await cluster.crash(victim)
        with trio.fail_after(5):
            await leader.remove_server(victim)
        await cluster.write(1)
        del cluster.storages[victim]
        await cluster.start(victim, initial_config=(), storage=MemoryStorage())
        with trio.fail_after(10):
            await leader.add_server(victim)
        assert cluster[victim].status().last_log_index == leader.status().last_log_index
        assert cluster[victim].machine.value == 21


async def test_new_member_gets_a_replication_task_whatever_else_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The runtime keeps exactly one replication task per peer the leader tracks, even
    when a member joins and a removed one retires between two looks (equal counts once
    hid the change)."""
    async with open_cluster(
        Counter,
        ["a", "b", "c"],
        seed=3,
        heartbeat_interval=0.1,
        min_election_timeout=0.5,
        max_election_timeout=1.0,
    ) as cluster:
        await cluster.start("q", initial_config=())
        leader = await stable(cluster)
        b, c = sorted(n for n in "abc" if n != leader.name)
        await cluster.write(1)
        cluster.isolate(c)
        with trio.fail_after(5):
            await leader.remove_server(c)
        config_index = leader.status().last_log_index
        sent = trio.Event()

        def observe(event: str, m: object) -> None:
            if (
                event == "sent"
                and isinstance(m, AppendEntries)
                and m.dst == c
                and m.prev_log_index + len(m.entries) >= config_index
            ):
                sent.set()
            if (
                event == "delivered"
                and isinstance(m, AppendResponse)
                and m.src == c
                and m.success
                and m.match_index >= config_index
            ):
                cluster.network.heal()

        cluster.network.add_observer(observe)
        cluster.set_delay(0.02, 0.02)
        cluster.partition([leader.name, c, "q"], [b])
        async with trio.open_nursery() as nursery:
            with trio.fail_after(5):
                await sent.wait()
            nursery.start_soon(lambda: leader.add_server("q", voter=False))
            await trio.sleep(1)
        cluster.heal()
        cluster.set_delay(0, 0)
        await cluster.write(1)
        await trio.sleep(1)
        assert leader._replicators.keys() == leader._node.progress.keys()
        assert cluster["q"].status().last_log_index == leader.status().last_log_index


async def test_messages_leave_from_the_task_that_made_them_snapshots_from_the_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A leader's message to a peer with nothing waiting leaves from the task that made
    it, not through the peer's replication task (a hop there waits for every task woken
    meanwhile); a snapshot chunk goes through the lagging peer's own task, and the peers
    with nothing waiting are not held up by it. Every message still arrives: the
    lagging follower catches up from the snapshot."""
    senders: list[tuple[str, str, bool]] = []

    def observe(event: str, m: object) -> None:
        if event == "sent" and isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            task = trio.lowlevel.current_task().name
            senders.append((type(m).__name__, m.dst, task.endswith("._replicate")))

    async with open_cluster(
        Counter, ["a", "b", "c"], seed=5, snapshot_threshold=5, snapshot_trailing=0
    ) as cluster:
        leader = await stable(cluster)
        b, c = sorted(n for n in "abc" if n != leader.name)
        cluster.network.add_observer(observe)
        cluster.isolate(c)
        for _ in range(20):
            await cluster.write(1)
        assert leader.status().snapshot_index >= 15
        cluster.heal()
        with trio.fail_after(10):
            while cluster[c].status().last_applied < leader.status().commit_index:
                await trio.sleep(0.05)
        assert cluster[c].machine.value == 20
        assert [r.waiting for r in leader._replicators.values()] == [0, 0]
        caught_up = len(senders)
        await cluster.write(1)  # nothing waits for c any more: straight out again
        assert [via for _, dst, via in senders[caught_up:] if dst == c] == [False]
    snapshots = [via_task for kind, dst, via_task in senders if kind == "InstallSnapshot"]
    assert snapshots and all(snapshots), "a snapshot chunk left outside its peer's task"
    to_b = [via_task for kind, dst, via_task in senders if dst == b]
    assert to_b and not any(to_b), "a message to a peer with nothing waiting took the hop"


async def test_concurrent_trigger_elections_leave_a_working_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two trigger_election calls in one scheduler batch on a single voter: each makes
    it leader of a new term; the leadership of the first term, ended before its task ran,
    must not take over the second's (membership changes and replication keep working)."""
    for seed in range(10):
        async with open_cluster(Counter, ["a"], seed=seed) as cluster:
            await cluster.start("b", initial_config=())
            a = await stable(cluster)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.trigger_election)
                nursery.start_soon(a.trigger_election)
            await trio.sleep(0.1)
            with trio.fail_after(5):
                await a.add_server("b")
            assert a.status().voters == {"a", "b"}
            assert await cluster.write(5) == 5


async def test_remove_below_min_majority_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A removal that leaves fewer voters than min_majority would brick the cluster for
    good: refused with a clear error; the cluster keeps its members and its leader."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=1, min_majority=3) as cluster:
        leader = await stable(cluster)
        victim = sorted(n for n in "abc" if n != leader.name)[0]
        with pytest.raises(ValueError, match="min_majority=3"):
            await leader.remove_server(victim)
        assert leader.status().voters == {"a", "b", "c"}
        assert await cluster.write(1) == 1


async def test_liveness_check_reports_a_cluster_that_elects_no_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The toolkit's liveness check: after recover(), a cluster whose quorum runs but
    elects nobody within the bound fails with a clear 'Liveness violated' message."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=1, check_interval=None) as cluster:
        await stable(cluster)
        for name in "abc":
            await cluster.crash(name)
        for name in "abc":  # timeouts far beyond the bound the cluster promised
            await cluster.restart(
                name, min_election_timeout=50, max_election_timeout=60, heartbeat_interval=1
            )
        await cluster.recover()
        bound = cluster.liveness_bound
        assert bound == pytest.approx(LIVENESS_ELECTION_TIMEOUTS * 0.3)
        start = trio.current_time()
        with pytest.raises(InvariantViolation, match="Liveness violated"), trio.fail_after(30):
            await cluster.wait_for_leader()
        assert trio.current_time() - start == pytest.approx(bound, abs=0.05)


async def test_a_fault_after_recovery_suspends_the_liveness_check(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Liveness is promised only while the network stays whole: a partition right after
    a recovery cancels the promise (no false alarm while a minority is cut off)."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=2) as cluster:
        await stable(cluster)
        await cluster.recover()
        cluster.partition(["a"], ["b"], ["c"])
        await trio.sleep(cluster.liveness_bound * 2)
        cluster.check()  # no violation
        await cluster.recover()
        await stable(cluster)
