"""Membership changes and leadership transfer on the autojump clock (dissertation §4, §3.10).

Covered: catch-up before voting (§4.2.1), learners, removed servers and a leader that
removes itself (§4.2.2), no disruption by removed, partitioned or restarted servers
(§4.2.3, §9.6 PreVote), CheckQuorum (§6.2), transfer (§3.10), the state machine hooks and
the ``Status`` fields. Each test names the rule, or the promise of docs/semantics.rst and
docs/membership.rst, that it checks. (One change at a time, §4.1: test_errors.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import trioraft
from trioraft import Role
from trioraft.testing import Cluster, open_cluster

from machines import Counter


class Recorder(Counter):
    """A counter that records every hook call."""

    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self.roles: list[Role] = []
        self.memberships: list[tuple[frozenset[str], frozenset[str]]] = []

    def on_role_change(self, role: Role) -> None:
        self.roles.append(role)

    def on_membership_change(self, voters: frozenset[str], learners: frozenset[str]) -> None:
        self.memberships.append((voters, learners))

    def validate(self, command: Any) -> None:
        if command == "invalid":
            raise ValueError("commands must be numbers")


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(10):
        return await cluster.wait_for_leader()


async def settle(cluster: Cluster, names: list[str] | None = None) -> None:
    """Wait until the given servers (default: all) applied everything the leader committed."""
    leader = await stable(cluster)
    target = leader.status().commit_index
    servers = [cluster[n] for n in names] if names else list(cluster.servers.values())
    with trio.fail_after(10):
        while any(s.status().last_applied < target for s in servers):
            await trio.sleep(0.01)


async def test_add_server_catches_up_as_learner_then_promotes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.1: add_server first adds a new server as a learner, catches it up on 500
    entries, and only then promotes it to voter (its hook sees the two configurations in
    that order, and it holds the whole log)."""
    async with open_cluster(Recorder, ["a", "b", "c"], seed=1) as cluster:
        leader = await stable(cluster)
        for _ in range(500):
            await leader.write(1)
        newcomer = await cluster.start("d", initial_config=())
        with trio.fail_after(10):
            await leader.add_server("d")
        status = leader.status()
        assert status.voters == {"a", "b", "c", "d"} and status.learners == frozenset()
        await settle(cluster)
        # It was a learner first, and a voter only after catching up.
        assert newcomer.machine.memberships[-2:] == [
            (frozenset("abc"), frozenset("d")),
            (frozenset("abcd"), frozenset()),
        ]
        assert status.match_index["d"] >= 500
        assert newcomer.machine.value == 500


async def test_add_learner_stays_learner_and_never_votes_or_leads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Contract (learners, semantics "Membership changes"): a learner receives and applies the
    log, but through repeated leader crashes it never campaigns, votes or leads; it follows
    the cluster's term."""
    async with open_cluster(Recorder, ["a", "b", "c"], seed=2) as cluster:
        leader = await stable(cluster)
        learner = await cluster.start("l", initial_config=())
        await leader.add_server("l", voter=False)
        assert leader.status().learners == {"l"}
        assert leader.status().voters == {"a", "b", "c"}
        await leader.write(7)
        await settle(cluster)
        assert learner.machine.value == 7
        # Crash leaders repeatedly: the learner never campaigns, never votes, never leads.
        for _ in range(2):
            current = await stable(cluster)
            await cluster.crash(current.name)
            await trio.sleep(2)
            await cluster.restart(current.name)
        await stable(cluster)
        assert learner.storage.voted_for is None
        assert learner.storage.term == (await stable(cluster)).status().term
        assert not {Role.CANDIDATE, Role.PRE_CANDIDATE, Role.LEADER} & set(learner.machine.roles)


async def test_add_server_on_a_learner_promotes_it(autojump_clock: trio.testing.MockClock) -> None:
    """Contract: add_server(name) on a learner catches it up and promotes it to voter; adding
    an existing learner as a learner again raises ValueError."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=3) as cluster:
        leader = await stable(cluster)
        await cluster.start("l", initial_config=())
        await leader.add_server("l", voter=False)
        with pytest.raises(ValueError, match="already a learner"):
            await leader.add_server("l", voter=False)
        await leader.add_server("l")
        assert leader.status().voters == {"a", "b", "c", "l"}
        assert leader.status().learners == frozenset()


async def test_add_server_that_cannot_catch_up_fails_and_stays_learner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.1: the catch-up of a server that makes no progress is abandoned after about an
    election timeout with CatchUpFailed; it stays a learner, the quorum is unchanged, and a
    retry once it runs promotes it."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=4) as cluster:
        leader = await stable(cluster)
        await leader.write(1)
        start = trio.current_time()
        with pytest.raises(trioraft.CatchUpFailed, match="'ghost'"):
            await leader.add_server("ghost")  # no such server is running
        assert trio.current_time() - start < 1.5  # about an election timeout or two
        assert leader.status().learners == {"ghost"}
        assert leader.status().voters == {"a", "b", "c"}
        assert await leader.write(1) == 2  # the quorum is unchanged: writes still commit
        # Start it and try again: now it catches up and is promoted.
        await cluster.start("ghost", initial_config=())
        with trio.fail_after(10):
            await leader.add_server("ghost")
        assert "ghost" in leader.status().voters


async def test_add_server_on_a_slow_link_to_an_idle_cluster_promotes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.1: when a catch-up round takes longer than an election timeout (a slow link)
    and no writes arrive meanwhile, the learner already holds everything the next round
    would send, so it is caught up: add_server promotes it rather than failing it for
    "no progress" (a regression)."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=6) as cluster:
        leader = await stable(cluster)
        for _ in range(20):
            await leader.write(1)
        await cluster.start("d", initial_config=())
        cluster.set_delay(0.1, 0.1)  # a round trip is longer than an election timeout
        with trio.fail_after(10):
            await leader.add_server("d")
        assert "d" in leader.status().voters


async def test_learner_is_caught_up_over_many_messages_before_promotion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.1: with 50 entries a message, a new server is caught up on a 1,000-entry log over
    many messages; once add_server returns, the new voter holds (nearly) the whole log."""
    async with open_cluster(
        Counter, ["a", "b", "c"], seed=5, max_entries_per_message=50
    ) as cluster:
        leader = await stable(cluster)
        for _ in range(20):
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(leader.write, 1)
        newcomer = await cluster.start("d", initial_config=())
        with trio.fail_after(30):
            await leader.add_server("d")
        assert newcomer.storage.log.last_index >= 1000


async def test_removed_follower_stops_campaigning_and_disrupts_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§4.2.2 + §4.2.3: a removed follower that keeps running learns of its removal and never
    campaigns again: ten seconds later the leader, its term and the removed server's term
    are unchanged."""
    async with open_cluster(Counter, ["a", "b", "c", "d"], seed=6) as cluster:
        leader = await stable(cluster)
        victim = next(n for n in cluster.servers if n != leader.name)
        await leader.remove_server(victim)
        term = leader.status().term
        await trio.sleep(10)  # the removed server keeps running
        assert cluster.leader() is leader
        assert leader.status().term == term
        removed = cluster[victim].status()
        assert removed.role is Role.FOLLOWER
        assert victim not in removed.voters  # it learnt of its removal
        assert cluster[victim].storage.term == term
        assert await leader.write(1) == 1


async def test_rejoining_partitioned_server_does_not_depose_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§9.6 PreVote: a follower cut off for four seconds keeps timing out but cannot win a
    pre-vote, so its term stays put and on rejoining it follows the leader instead of
    deposing it (without PreVote the leader's term jumps)."""
    async with open_cluster(Counter, 5, seed=7) as cluster:
        leader = await stable(cluster)
        term = leader.status().term
        straggler = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(straggler)
        for _ in range(20):
            await leader.write(1)
            await trio.sleep(0.2)
        cluster.network.heal()
        await trio.sleep(10)
        assert cluster.leader() is leader
        assert leader.status().term == term  # PreVote kept the straggler's term down
        assert cluster[straggler].leader() == leader.name


async def test_restarted_server_does_not_depose_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No disruption (§4.2.3, §9.6): a follower that crashes and restarts from its storage
    rejoins as a follower; the leader keeps its leadership and its term (a restart alone
    starts no election)."""
    async with open_cluster(Counter, 3, seed=8) as cluster:
        leader = await stable(cluster)
        term = leader.status().term
        follower = next(n for n in cluster.servers if n != leader.name)
        await cluster.crash(follower)
        await trio.sleep(3)
        await cluster.restart(follower)
        await trio.sleep(10)
        assert cluster.leader() is leader and leader.status().term == term


async def test_leader_removes_itself_and_hands_over(autojump_clock: trio.testing.MockClock) -> None:
    """§4.2.2 + §3.10: a leader that removes itself steps down once the change commits and
    hands over to a remaining voter; the removed old leader then stays quiet (no new term
    for ten seconds)."""
    async with open_cluster(Recorder, ["a", "b", "c"], seed=9) as cluster:
        old = await stable(cluster)
        await old.write(1)
        with trio.fail_after(5):
            await old.remove_server(old.name)
        with trio.fail_after(2):
            new = await cluster.wait_for_leader()
        assert new is not old
        assert old.status().role is Role.FOLLOWER
        assert new.status().voters == {"a", "b", "c"} - {old.name}
        term = new.status().term
        await trio.sleep(10)  # the removed old leader stays quiet
        assert cluster.leader() is new and new.status().term == term
        assert old.machine.roles[-1] is Role.FOLLOWER
        assert await new.write(1) == 2


async def test_transfer_leadership_to_the_named_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§3.10: transfer_leadership(name) makes that voter the leader and returns its name; the
    old leader redirects writes to it (NotLeader.leader) and no committed write is lost."""
    async with open_cluster(Counter, 5, seed=10) as cluster:
        leader = await stable(cluster)
        for _ in range(10):
            await leader.write(1)
        target = sorted(n for n in cluster.servers if n != leader.name)[-1]
        with trio.fail_after(2):
            assert await leader.transfer_leadership(target) == target
        new = await stable(cluster)
        assert new.name == target
        assert leader.leader() == target
        with pytest.raises(trioraft.NotLeader) as info:
            await leader.write(1)
        assert info.value.leader == target
        assert await new.write(1) == 11


async def test_transfer_to_most_up_to_date_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§3.10: without a name, the transfer picks the most up-to-date voter, never one that
    lags (here a follower that missed five writes)."""
    async with open_cluster(Counter, 3, seed=11) as cluster:
        leader = await stable(cluster)
        laggard = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(laggard)
        for _ in range(5):
            await leader.write(1)
        cluster.network.heal()
        with trio.fail_after(2):
            chosen = await leader.transfer_leadership()
        assert chosen not in (leader.name, laggard)
        assert (await stable(cluster)).name == chosen


async def test_writes_wait_during_transfer(autojump_clock: trio.testing.MockClock) -> None:
    """§3.10: while a transfer is under way the leader appends no new writes: a write made
    meanwhile waits, then raises NotLeader naming the new leader, and is never applied."""
    async with open_cluster(Counter, 3, seed=12) as cluster:
        leader = await stable(cluster)
        target = next(n for n in cluster.servers if n != leader.name)
        outcome: list[Any] = []

        async def writer() -> None:
            try:
                outcome.append(await leader.write(5))
            except trioraft.NotLeader as exc:
                outcome.append(exc)

        cluster.network.isolate(target)  # hold the transfer open for a moment
        await leader.write(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader.transfer_leadership, target)
            while leader.status().transfer_target != target:
                await trio.sleep(0)
            nursery.start_soon(writer)
            await trio.sleep(0.05)
            assert outcome == []  # waiting, not appended
            assert 5 not in leader.machine.applied
            cluster.network.heal()
        # The write waited for the transfer and was then redirected, never appended.
        assert len(outcome) == 1 and isinstance(outcome[0], trioraft.NotLeader)
        assert outcome[0].leader == target
        assert all(5 not in s.machine.applied for s in cluster.servers.values())


async def test_transfer_to_unreachable_target_fails_and_leader_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§3.10: a transfer whose target cannot catch up is abandoned within an election timeout
    with TransferFailed, and the old leader carries on taking writes."""
    async with open_cluster(Counter, 3, seed=13) as cluster:
        leader = await stable(cluster)
        await leader.write(1)
        target = next(n for n in cluster.servers if n != leader.name)
        cluster.network.isolate(target)
        await leader.write(1)  # the target now lags and cannot catch up
        start = trio.current_time()
        with pytest.raises(trioraft.TransferFailed, match=target):
            await leader.transfer_leadership(target)
        assert trio.current_time() - start <= 0.31  # within an election timeout
        assert leader.status().role is Role.LEADER
        assert await leader.write(1) == 3


async def test_transfer_to_a_learner_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (semantics, "Errors"): transferring leadership to a learner raises NotVoter
    naming it."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=14) as cluster:
        leader = await stable(cluster)
        await cluster.start("l", initial_config=())
        await leader.add_server("l", voter=False)
        with pytest.raises(trioraft.NotVoter, match="'l'"):
            await leader.transfer_leadership("l")


async def test_check_quorum_partitioned_leader_stops_serving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """§6.2 CheckQuorum: a leader cut off from the majority steps down within two election
    timeouts; its pending write raises OutcomeUnknown, and later reads and writes raise
    NotLeader."""
    async with open_cluster(Counter, 3, seed=15) as cluster:
        leader = await stable(cluster)
        await leader.write(1)
        cluster.network.isolate(leader.name)
        start = trio.current_time()
        with pytest.raises(trioraft.OutcomeUnknown):
            await leader.write(2)
        assert trio.current_time() - start <= 0.61  # within two election timeouts
        assert leader.status().role is Role.FOLLOWER
        with pytest.raises(trioraft.NotLeader):
            await leader.read(None)
        with pytest.raises(trioraft.NotLeader):
            await leader.write(3)


async def test_hooks_role_membership_validate(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (membership.rst, "Watching changes"): on_role_change reports the roles a server
    goes through, on_membership_change each configuration in log order on every server, and
    validate rejects a write before anything is appended."""
    async with open_cluster(Recorder, ["a", "b", "c"], seed=16) as cluster:
        leader = await stable(cluster)
        assert leader.machine.roles[-1] is Role.LEADER
        assert Role.CANDIDATE in leader.machine.roles
        before = leader.status().last_log_index
        with pytest.raises(ValueError, match="numbers"):
            await leader.write("invalid")
        assert leader.status().last_log_index == before  # nothing was appended
        await cluster.start("d", initial_config=())
        await leader.add_server("d", voter=False)
        await leader.add_server("d")
        await leader.remove_server("d")
        await settle(cluster, ["a", "b", "c"])
        expected = [
            (frozenset("abc"), frozenset("d")),
            (frozenset("abcd"), frozenset()),
            (frozenset("abc"), frozenset()),
        ]
        for name in "abc":
            assert cluster[name].machine.memberships == expected  # in log order everywhere


async def test_status_reports_membership_and_match(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (``Status``): leader and followers report the learners; the leader's
    match_index covers every other member, learners included, and reaches its last index
    once they have caught up; a follower's is empty."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=17) as cluster:
        leader = await stable(cluster)
        await cluster.start("l", initial_config=())
        await leader.add_server("l", voter=False)
        for _ in range(3):
            await leader.write(1)
        await settle(cluster)
        status = leader.status()
        assert status.learners == {"l"}
        assert set(status.match_index) == {"a", "b", "c", "l"} - {leader.name}
        assert all(m == status.last_log_index for m in status.match_index.values())
        follower = cluster[next(n for n in "abc" if n != leader.name)].status()
        assert follower.match_index == {}
        assert follower.learners == {"l"}


async def test_min_majority_with_membership(autojump_clock: trio.testing.MockClock) -> None:
    """Contract (``min_majority``): the floor holds as the cluster grows. With
    min_majority=3, three voters need all three: with one cut off nothing commits; once a
    fourth voter joins, 3 of 4 commit while one is still cut off."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=18, min_majority=3) as cluster:
        leader = await stable(cluster)
        await cluster.start("d", initial_config=(), min_majority=3)
        other = next(n for n in "abc" if n != leader.name)
        cluster.network.isolate(other)
        with trio.move_on_after(1):
            try:
                await leader.write(1)
            except trioraft.OutcomeUnknown:
                pass  # CheckQuorum: 2 of 3 is no quorum, the leader steps down
            else:
                raise AssertionError("committed with 2 of 3 voters despite min_majority=3")
        cluster.network.heal()
        with trio.fail_after(10):
            leader = await cluster.wait_for_leader()
            await leader.add_server("d")
        assert leader.status().voters == {"a", "b", "c", "d"}
        other = next(n for n in "abc" if n != leader.name)
        cluster.network.isolate(other)
        with trio.fail_after(5):
            assert await leader.write(1) >= 1  # 3 of 4: the floor is met


async def test_a_leader_stopped_during_catch_up_reports_the_change_under_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once the learner entry is in the log, a stop of the leader leaves the change half
    done (a learner, not promoted): add_server raises StoppedOutcomeUnknown, as a pending
    write does, not plain ServerStopped ("nothing was appended")."""
    network = trioraft.MemoryNetwork(seed=0)
    network.set_delay(0.001, 0.02)  # catch-up takes a few rounds
    async with open_cluster(Counter, ["a", "b", "c"], seed=3, network=network) as cluster:
        leader = await cluster.wait_for_leader()
        for _ in range(50):
            await leader.write(1)
        await cluster.start("d", initial_config=[])
        outcome: list[BaseException] = []

        async def add() -> None:
            try:
                await leader.add_server("d")
            except trioraft.RaftError as exc:
                outcome.append(exc)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(add)
                status = leader.status()
                while "d" not in status.learners or status.commit_index < status.last_log_index:
                    await trio.sleep(0.001)  # until the learner entry is committed
                    status = leader.status()
                await leader.stop()
        assert len(outcome) == 1 and isinstance(outcome[0], trioraft.StoppedOutcomeUnknown)
