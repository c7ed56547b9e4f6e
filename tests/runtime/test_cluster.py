"""Clusters on the autojump clock: elections, commitment and quorums, log repair, reads,
leader-only calls, stopping and crash-restart, with a first pass over transfer and
membership (test_membership.py goes further).

Each test names the rule it checks (a section of the Raft paper, §5, or of Ongaro's
dissertation: §3.10, §4, §6, §9) or the promise of the public contract (the API contract,
docs/semantics.rst) it keeps, and fails if that rule or promise is broken.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

import trioraft
from trioraft import Role
from trioraft._core.messages import AppendResponse, Message
from trioraft.testing import open_cluster

from machines import Counter


def leaders(cluster: trioraft.testing.Cluster) -> list[str]:
    return [n for n, s in cluster.servers.items() if s.status().role is Role.LEADER]


async def applied_everywhere(cluster: trioraft.testing.Cluster, index: int) -> None:
    while any(s.status().last_applied < index for s in cluster.servers.values()):
        await trio.sleep(0.01)


async def test_initial_election_three_servers(autojump_clock: trio.testing.MockClock) -> None:
    """§5.2: three fresh voters elect exactly one leader, and every server learns its name and
    term (two leaders, or a server following no one or another term, fails it)."""
    async with open_cluster(Counter, 3, seed=1) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert leaders(cluster) == [leader.name]
        term = leader.status().term
        for server in cluster.servers.values():
            assert server.leader() == leader.name
            assert server.status().term == term


async def test_initial_election_five_servers(autojump_clock: trio.testing.MockClock) -> None:
    """§5.2: the same with five voters (quorum 3): exactly one leader, known to every server."""
    async with open_cluster(Counter, 5, seed=2) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert leaders(cluster) == [leader.name]
        assert {s.leader() for s in cluster.servers.values()} == {leader.name}


async def test_await_leader_on_every_server(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (``await_leader``): it returns on every server once a leader is known, and
    every server names the same one."""
    async with open_cluster(Counter, 3, seed=3) as cluster:
        with trio.fail_after(5):
            names = {await s.await_leader() for s in cluster.servers.values()}
        assert len(names) == 1


async def test_reelection_after_leader_isolated(autojump_clock: trio.testing.MockClock) -> None:
    """§5.2 + §6.2: when the leader is cut off, the others elect a leader of a later term;
    CheckQuorum makes the isolated one step down within about an election timeout, and once
    healed it follows the new leader."""
    async with open_cluster(Counter, 3, seed=4) as cluster:
        with trio.fail_after(5):
            old = await cluster.wait_for_leader()
        old_term = old.status().term
        cluster.network.isolate(old.name)
        with trio.fail_after(5):
            while True:
                new = [
                    s
                    for s in cluster.servers.values()
                    if s is not old and s.status().role is Role.LEADER
                ]
                if new:
                    break
                await trio.sleep(0.01)
        assert new[0].status().term > old_term
        # CheckQuorum: the isolated leader steps down within about an election timeout.
        with trio.fail_after(1):
            while old.status().role is Role.LEADER:
                await trio.sleep(0.01)
        cluster.network.heal()
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert leader.status().term > old_term
        assert old.leader() == leader.name


async def test_no_commit_without_quorum(autojump_clock: trio.testing.MockClock) -> None:
    """§5.3: an entry commits only once a majority holds it. A leader cut off from both
    followers commits and applies nothing; when it loses its leadership the pending write
    raises OutcomeUnknown (semantics, "Writes")."""
    async with open_cluster(Counter, 3, seed=5) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert await leader.write(1) == 1
        commits = {n: s.status().commit_index for n, s in cluster.servers.items()}
        for name in cluster.servers:
            if name != leader.name:
                cluster.network.isolate(name)
        # The write cannot commit; the leader loses its quorum and says it cannot know.
        with trio.fail_after(2), pytest.raises(trioraft.OutcomeUnknown):
            await leader.write(10)
        assert {n: s.status().commit_index for n, s in cluster.servers.items()} == commits
        assert all(10 not in s.machine.applied for s in cluster.servers.values())


async def test_a_cancelled_write_stops_waiting_and_its_entry_still_commits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Semantics ("Writes"): cancelling a write stops the caller's wait at once, but the
    command was proposed and may still be applied; the leader forgets the waiter (nothing
    stays in flight), and a write after it returns as usual."""
    async with open_cluster(Counter, 3, seed=5) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert await leader.write(1) == 1
        others = [name for name in cluster.servers if name != leader.name]
        for name in others:
            cluster.network.isolate(name)
        with trio.move_on_after(0.05) as scope:
            await leader.write(10)  # cannot commit while the followers are cut off
        assert scope.cancelled_caught
        assert leader.statistics().writes_in_flight == 0
        cluster.network.heal()  # within the election timeout: the same leader goes on
        with trio.fail_after(2):
            assert await leader.write(100) == 111  # the cancelled write was applied too
        assert leader.status().role is Role.LEADER


async def test_a_burst_of_writes_is_replicated_in_pieces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Runtime promise (docs/performance.rst, overload): writes proposed together are
    handed to replication ``FLUSH_EVERY`` entries at a time (the writer that brings the
    count there carries the Ready out itself), so replies, commits and writers' wake-ups
    flow in a pipeline of pieces, not in one round of the whole burst (which would go
    out as one message of up to ``max_entries_per_message`` entries). Every write still
    commits, once."""
    from trioraft._core.messages import AppendEntries
    from trioraft._runtime.driver import FLUSH_EVERY

    async with open_cluster(Counter, 3, seed=2) as cluster:
        leader = await cluster.wait_for_leader()
        sizes: list[int] = []

        def observe(event: str, message: Message) -> None:
            if event == "sent" and isinstance(message, AppendEntries) and message.entries:
                sizes.append(len(message.entries))

        cluster.network.add_observer(observe)
        writers = 3 * FLUSH_EVERY + 10
        async with trio.open_nursery() as nursery:
            for _ in range(writers):
                nursery.start_soon(leader.write, 1)
        assert await leader.read(None) == writers
        assert max(sizes) <= FLUSH_EVERY
        assert sum(sizes) == 2 * writers  # each entry sent to each follower once


async def test_four_servers_two_isolated_do_not_commit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§5.3: the quorum of four voters is three: a leader with one follower commits and
    applies nothing (the write stays pending or ends in OutcomeUnknown, never in success)."""
    async with open_cluster(Counter, 4, seed=6) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        await leader.write(1)
        others = [n for n in cluster.servers if n != leader.name]
        cluster.network.partition([leader.name, others[0]], others[1:])
        before = leader.status().commit_index
        result = "pending"
        with trio.move_on_after(2):
            try:
                await leader.write(5)
                result = "committed"
            except trioraft.OutcomeUnknown:
                result = "unknown"
        assert result in ("pending", "unknown")
        # Two of four is not a quorum (quorum = 4 // 2 + 1 = 3): nothing committed anywhere.
        assert leader.status().commit_index == before
        assert all(s.status().commit_index <= before for s in cluster.servers.values())
        assert all(5 not in s.machine.applied for s in cluster.servers.values())


async def test_min_majority_raises_the_quorum(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (``min_majority``): the quorum is max(min_majority, majority). With
    min_majority=3 in a cluster of three, a leader that lost one follower cannot commit,
    where 2 of 3 would otherwise do."""
    async with open_cluster(Counter, 3, seed=7, min_majority=3) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert await leader.write(2) == 2
        follower = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(follower)
        with trio.move_on_after(1) as scope:
            with contextlib.suppress(trioraft.OutcomeUnknown):
                await leader.write(3)
        # 2 of 3 would be a majority, but min_majority=3 demands all three.
        assert leader.machine.value == 2
        assert scope.cancelled_caught or leader.status().role is not Role.LEADER


async def test_follower_catches_up_after_heal(autojump_clock: trio.testing.MockClock) -> None:
    """§5.3: the leader repairs a lagging follower's log. A follower cut off for 200 writes
    receives them once healed and applies the same commands in the same order."""
    async with open_cluster(Counter, 3, seed=8) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        lagger = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(lagger)
        for _i in range(200):
            await leader.write(1)
        assert cluster[lagger].machine.value == 0
        cluster.network.heal()
        with trio.fail_after(5):
            await applied_everywhere(cluster, leader.status().commit_index)
        assert cluster[lagger].machine.value == 200
        assert cluster[lagger].machine.applied == leader.machine.applied


async def test_deposed_leader_discards_uncommitted_entries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§5.3 + §5.4: entries a deposed leader appended but never committed (their writes raised
    OutcomeUnknown) are overwritten by the new leader's log when it rejoins, and no server
    ever applies them."""
    async with open_cluster(Counter, 3, seed=9) as cluster:
        with trio.fail_after(5):
            old = await cluster.wait_for_leader()
        await old.write(1)
        cluster.network.isolate(old.name)
        outcomes: list[str] = []

        async def doomed_write(n: int) -> None:
            try:
                await old.write(n)
                outcomes.append("ok")
            except trioraft.OutcomeUnknown:
                outcomes.append("unknown")

        async with trio.open_nursery() as nursery:
            for n in range(100, 105):
                nursery.start_soon(doomed_write, n)
        assert outcomes == ["unknown"] * 5
        assert old.status().last_log_index > old.status().commit_index  # they are in its log
        with trio.fail_after(5):
            new = await cluster.wait_for_leader(exclude=[old.name])
        await new.write(2)
        cluster.network.heal()
        with trio.fail_after(5):
            await applied_everywhere(cluster, new.status().commit_index)
            while old.status().last_log_index != new.status().last_log_index:
                await trio.sleep(0.01)
        cluster.check()
        assert all(s.machine.applied == [1, 2] for s in cluster.servers.values())
        assert all(e.data not in range(100, 105) for e in old.storage.log.slice(1, 10**6))


async def test_fast_backup_over_divergent_entries(autojump_clock: trio.testing.MockClock) -> None:
    """§5.3 (fast backup): a deposed leader with 60 uncommitted entries of its term is repaired
    in a few round trips thanks to the conflict term hint, not one entry per round trip."""
    async with open_cluster(Counter, 3, seed=10, check_quorum=False) as cluster:
        with trio.fail_after(5):
            old = await cluster.wait_for_leader()
        await old.write(1)
        cluster.network.isolate(old.name)

        async def doomed_write(n: int) -> None:
            with contextlib.suppress(trioraft.OutcomeUnknown):
                await old.write(n)

        async with trio.open_nursery() as nursery:
            for n in range(60):
                nursery.start_soon(doomed_write, 1000 + n)
            await trio.sleep(0.01)
            assert old.status().last_log_index >= 62
            with trio.fail_after(5):
                second = await cluster.wait_for_leader(exclude=[old.name])
            for n in range(40):
                await second.write(n)
            # Hand over to the third server: its log runs ~40 entries past the point
            # where the old leader's log diverges, so it must back up over them.
            third = next(s for s in cluster.servers.values() if s not in (old, second))
            with trio.fail_after(2):
                await second.transfer_leadership(third.name)
            rejections = []

            def count(event: str, message: Message) -> None:
                if (
                    event == "sent"
                    and isinstance(message, AppendResponse)
                    and not message.success
                    and message.src == old.name
                ):
                    rejections.append(message)

            cluster.network.add_observer(count)
            cluster.network.heal()
            with trio.fail_after(5):
                while old.status().last_applied < third.status().commit_index:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        assert old.machine.applied == third.machine.applied == [1, *range(40)]
        # One entry per round trip would take ~40 rejections; the term hint takes one.
        assert 1 <= len(rejections) <= 3, rejections
        assert rejections[0].reject_index >= 40


async def test_raising_state_machine(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (API, "The state machine"): an exception raised by the machine's ``write``
    reaches the writer, happens identically on every replica, and stops nothing: later
    writes commit and apply."""
    async with open_cluster(Counter, 3, seed=11) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert await leader.write(5) == 5
        with pytest.raises(ValueError, match="boom"):
            await leader.write("boom")
        assert await leader.write(1) == 6  # the server keeps serving
        with trio.fail_after(5):
            await applied_everywhere(cluster, leader.status().commit_index)
        for server in cluster.servers.values():
            assert server.machine.applied == [5, "boom", 1]
            assert server.machine.value == 6


async def test_not_leader_redirects(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (semantics, "Leaders, redirects and elections"): every leader-only call (write,
    read, add_server, remove_server, transfer_leadership) on a follower raises NotLeader
    naming the leader it knows."""
    async with open_cluster(Counter, 3, seed=12) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        for name, server in cluster.servers.items():
            if name == leader.name:
                continue
            for call in (server.write(1), server.read(None)):
                try:
                    await call
                except trioraft.NotLeader as exc:
                    assert exc.leader == leader.name
                else:
                    raise AssertionError("a follower accepted a leader-only call")
            for call in (
                server.add_server("x"),
                server.remove_server(leader.name),
                server.transfer_leadership(),
            ):
                try:
                    await call
                except trioraft.NotLeader as exc:
                    assert exc.leader == leader.name
                else:
                    raise AssertionError("a follower accepted a leader-only call")


async def test_read_is_linearizable_and_read_dirty_is_local(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.4 + contract (semantics, "Local reads"): ``read`` on the leader reflects its completed
    write; ``read_dirty`` on a cut-off follower answers at once from its own, stale state."""
    async with open_cluster(Counter, 3, seed=13) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        lagger = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(lagger)
        await leader.write(7)
        assert await leader.read(None) == 7
        assert await cluster[lagger].read_dirty(None) == 0  # stale, but answered at once


async def test_deposed_leader_never_serves_a_stale_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.4 ReadIndex: a leader cut off while the majority elects a new one and writes still
    believes it leads, but cannot confirm that with a quorum, so its read raises NotLeader
    rather than answering from stale state."""
    async with open_cluster(Counter, 3, seed=14) as cluster:
        with trio.fail_after(5):
            old = await cluster.wait_for_leader()
        await old.write(1)
        cluster.network.isolate(old.name)
        with trio.fail_after(5):
            new = await cluster.wait_for_leader(exclude=[old.name])
        await new.write(1)
        # The isolated server may still believe it leads for a moment, but it cannot
        # confirm with a quorum, so it must not answer 1 (the majority has 2 now).
        with trio.fail_after(2), pytest.raises(trioraft.NotLeader):
            await old.read(None)


async def test_stop_fails_pending_calls(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (semantics, "Stopping and restarting"): stopping a server settles its pending
    calls (a write raises StoppedOutcomeUnknown, a read ServerStopped), and every later call
    raises ServerStopped."""
    async with open_cluster(Counter, 3, seed=15, check_quorum=False) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        await leader.write(1)
        for name in cluster.servers:
            if name != leader.name:
                cluster.network.isolate(name)
        errors: dict[str, BaseException] = {}

        async def call(label: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
            try:
                await fn(*args)
            except trioraft.RaftError as exc:
                errors[label] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "write", leader.write, 2)
            nursery.start_soon(call, "read", leader.read, None)
            await trio.sleep(0.2)
            assert not errors  # both are waiting for a quorum that is not there
            await cluster.crash(leader.name)
        assert isinstance(errors["write"], trioraft.ServerStopped)
        assert isinstance(errors["write"], trioraft.OutcomeUnknown)
        assert isinstance(errors["read"], trioraft.ServerStopped)
        for fn in (leader.write, leader.read, leader.read_dirty):
            with pytest.raises(trioraft.ServerStopped):
                await fn(1)
        with pytest.raises(trioraft.ServerStopped):
            await leader.await_leader()


async def test_stop_wakes_await_leader(autojump_clock: trio.testing.MockClock) -> None:
    """Contract: a server outside every configuration never campaigns (it stays at term 0);
    stopping it wakes ``await_leader`` with ServerStopped and frees its name on the network."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        lonely = await trioraft.start_server(nursery, Counter, name="lonely", network=network)
        result: list[BaseException] = []

        async def waiter() -> None:
            try:
                await lonely.await_leader()
            except trioraft.ServerStopped as exc:
                result.append(exc)

        nursery.start_soon(waiter)
        await trio.sleep(5)
        assert lonely.leader() is None  # not in any configuration: it never campaigns
        assert lonely.status().term == 0
        await lonely.stop()
        await trio.sleep(0)
        assert len(result) == 1
        assert "lonely" not in network.servers


async def test_crash_restart_keeps_persistent_state(autojump_clock: trio.testing.MockClock) -> None:
    """Figure 2 (persistent state) + semantics ("Stopping and restarting"): a crashed follower's
    storage keeps its term, vote and log; restarted from it, the server catches up and its
    fresh state machine applies every committed command once, in order."""
    async with open_cluster(Counter, 3, seed=16) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        for i in range(10):
            await leader.write(i)
        follower = next(n for n in cluster.servers if n != leader.name)
        storage = cluster[follower].storage
        term, vote, last = storage.term, storage.voted_for, storage.log.last_index
        await cluster.crash(follower)
        assert storage.term == term and storage.voted_for == vote
        await leader.write(100)
        restarted = await cluster.restart(follower)
        assert restarted.storage is storage
        assert restarted.status().last_log_index >= last
        with trio.fail_after(5):
            await applied_everywhere(cluster, leader.status().commit_index)
        assert restarted.machine.applied == [*list(range(10)), 100]


async def test_whole_cluster_crash_and_restart(autojump_clock: trio.testing.MockClock) -> None:
    """Figure 2 + semantics ("Stopping and restarting"): after every server crashes and restarts
    from its storage, a leader of a later term is elected and the state machines, rebuilt
    from the log, hold every committed write."""
    async with open_cluster(Counter, 3, seed=17) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        for i in range(1, 6):
            await leader.write(i)
        term = leader.status().term
        for name in list(cluster.servers):
            await cluster.crash(name)
        for name in cluster.names:
            await cluster.restart(name)
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        assert leader.status().term > term
        assert await leader.write(0) == 15
        assert await leader.read(None) == 15


async def test_restarting_with_storage_in_use_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Contract (semantics, "Stopping and restarting"): a storage serves one running server at a
    time, and only under the name it was first used with; anything else raises StorageError
    (a ValueError) saying which."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        a = await trioraft.start_server(
            nursery, Counter, name="a", network=network, initial_config=["a"]
        )
        with pytest.raises(ValueError, match="in use"):
            await trioraft.start_server(
                nursery, Counter, name="a2", network=network, storage=a.storage
            )
        await a.stop()
        with pytest.raises(ValueError, match="belongs to"):
            await trioraft.start_server(
                nursery, Counter, name="b", network=network, storage=a.storage
            )
        nursery.cancel_scope.cancel()


async def test_single_server_cluster(autojump_clock: trio.testing.MockClock) -> None:
    """§5.2 + §5.3 with a quorum of one: a lone voter elects itself, then commits and serves
    reads on its own."""
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        solo = await trioraft.start_server(
            nursery, Counter, 10, name="solo", network=network, initial_config=["solo"], seed=1
        )
        with trio.fail_after(2):
            assert await solo.await_leader() == "solo"
        assert await solo.write(5) == 15
        assert await solo.read(None) == 15
        nursery.cancel_scope.cancel()


async def test_trigger_election_and_transfer(autojump_clock: trio.testing.MockClock) -> None:
    """§3.10 + contract (``trigger_election``): a transfer makes the named voter leader; then
    trigger_election makes a voter a candidate of the next term at once (no PreVote), and
    the leader that follows has kept every committed write."""
    async with open_cluster(Counter, 3, seed=18) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        await leader.write(1)
        other = next(n for n in cluster.servers if n != leader.name)
        with trio.fail_after(2):
            assert await leader.transfer_leadership(other) == other
        assert cluster[other].status().role is Role.LEADER
        assert leader.leader() == other
        third = next(n for n in cluster.servers if n not in (leader.name, other))
        term = cluster[third].status().term
        await cluster[third].trigger_election()
        status = cluster[third].status()
        assert status.term == term + 1 and status.role is Role.CANDIDATE and status.leader is None
        with trio.fail_after(5):
            new = await cluster.wait_for_leader()
        assert await new.write(1) == 2


async def test_membership_add_and_remove(autojump_clock: trio.testing.MockClock) -> None:
    """§4.1 + §4.2.2, end to end: an added server catches up and votes, a removed follower
    leaves the voters, and a leader that removes itself steps down while a remaining voter
    takes over."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=19) as cluster:
        with trio.fail_after(5):
            leader = await cluster.wait_for_leader()
        await leader.write(1)
        newcomer = await cluster.start("d", initial_config=())
        with trio.fail_after(5):
            await leader.add_server("d")
        assert leader.status().voters == {"a", "b", "c", "d"}
        with trio.fail_after(5):
            await applied_everywhere(cluster, leader.status().commit_index)
        assert newcomer.machine.value == 1
        victim = next(n for n in ("a", "b", "c") if n != leader.name)
        with trio.fail_after(5):
            await leader.remove_server(victim)
        assert victim not in leader.status().voters
        with trio.fail_after(5):
            await leader.remove_server(leader.name)  # the leader removes itself
            new = await cluster.wait_for_leader(exclude=[leader.name])
        assert leader.status().role is Role.FOLLOWER
        assert new.status().voters == {"a", "b", "c", "d"} - {victim, leader.name}
        assert await new.write(1) == 2
