"""Membership changes of several servers at once: joint consensus (dissertation §4.3).

Covered: ``set_members`` catches new voters up as learners, then enters C_old,new (seen
in ``Status.joint_voters``), then C_new, appended automatically; a change of one voter
goes directly; replacing every server works, and the old leader hands over; while joint,
commits and elections need a majority of both sets (the core, message by message); a
new leader finishes a joint configuration it finds committed; the argument errors and
``ChangeInProgress``. On the autojump clock, seeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import trioraft
from trioraft import Role
from trioraft._core import Config, EntryKind
from trioraft._core.quorum import Quorum
from trioraft.testing import Cluster, open_cluster
from trioraft.testing._pure import PureCluster

from machines import Counter


class Memberships(Counter):
    """A counter that records every configuration it was told of."""

    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self.memberships: list[tuple[frozenset[str], frozenset[str]]] = []

    def on_membership_change(self, voters: frozenset[str], learners: frozenset[str]) -> None:
        self.memberships.append((voters, learners))


@asynccontextmanager
async def joint_voters_seen(server: trioraft.Server) -> AsyncIterator[list[frozenset[str] | None]]:
    """Every ``Status.joint_voters`` of ``server``, sampled each virtual millisecond."""
    seen: list[frozenset[str] | None] = []

    async def watch() -> None:
        while True:
            seen.append(server.status().joint_voters)
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        yield seen
        nursery.cancel_scope.cancel()


async def leader_of(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def test_replacing_every_server_goes_through_joint_consensus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Memberships, ["a", "b", "c"], seed=3) as cluster:
        leader = await leader_of(cluster)
        for _ in range(20):
            await leader.write(1)
        cluster.network.set_delay(0.002, 0.004)  # each configuration lasts a round trip
        for name in "def":
            await cluster.start(name, initial_config=())
        async with joint_voters_seen(leader) as seen_joint:
            with trio.fail_after(20):
                await leader.set_members(["d", "e", "f"])
        assert frozenset("abc") in seen_joint  # C_old,new was in force for a while
        status = leader.status()
        assert status.voters == frozenset("def") and status.joint_voters is None
        new_leader = await leader_of(cluster)
        assert new_leader.name in "def"
        assert await new_leader.write(1) == 21
        # Each new server was a learner before it was a voter, and never voted alone.
        d = cluster["d"].machine
        assert (frozenset("abc"), frozenset("def")) in d.memberships
        assert d.memberships[-1] == (frozenset("def"), frozenset())
        assert all(
            server.status().voters == frozenset("def")
            for server in cluster.servers.values()
            if server.name in "def"
        )


async def test_a_change_of_one_voter_needs_no_joint_phase(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Memberships, ["a", "b", "c"], seed=5) as cluster:
        leader = await leader_of(cluster)
        await cluster.start("d", initial_config=())
        async with joint_voters_seen(leader) as seen:
            with trio.fail_after(20):
                await leader.set_members(["a", "b", "c", "d"], learners=[])
        assert set(seen) == {None}
        assert leader.status().voters == frozenset("abcd")


async def test_voters_and_learners_change_together(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two voters out (one of them kept as a learner), one in: joint; the final
    configuration is exactly what was asked."""
    async with open_cluster(Memberships, ["a", "b", "c", "d"], seed=7) as cluster:
        leader = await leader_of(cluster)
        await cluster.start("e", initial_config=())
        others = sorted(set("abcd") - {leader.name})
        voters = [leader.name, others[0], "e"]
        with trio.fail_after(20):
            await leader.set_members(voters, learners=[others[1]])
        current = await leader_of(cluster)
        status = current.status()
        assert status.voters == frozenset(voters)
        assert status.learners == frozenset({others[1]})
        assert await current.write(5) == 5


async def test_argument_errors_and_a_change_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, ["a", "b", "c"], seed=2, min_majority=2) as cluster:
        leader = await leader_of(cluster)
        with pytest.raises(ValueError, match="at least one voter"):
            await leader.set_members([])
        with pytest.raises(ValueError, match="both voter and learner"):
            await leader.set_members(["a", "b"], learners=["b"])
        with pytest.raises(ValueError, match="fewer than min_majority"):
            await leader.set_members([leader.name])
        with pytest.raises(ValueError, match="not the single string"):
            await leader.set_members("abc")  # type: ignore[arg-type]
        await cluster.start("d", initial_config=())
        await cluster.start("e", initial_config=())

        async def change() -> None:
            await leader.set_members(["a", "b", "c", "d", "e"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change)
            await trio.sleep(0)  # it begins: d and e are being caught up
            await trio.sleep(0)
            for attempt in (
                leader.add_server("x"),
                leader.remove_server("a"),
                leader.set_members(["a", "b", "c"]),
            ):
                with pytest.raises(trioraft.ChangeInProgress):
                    await attempt
        assert leader.status().voters == frozenset("abcde")
        follower = next(s for s in cluster.servers.values() if s is not leader)
        with pytest.raises(trioraft.NotLeader):
            await follower.set_members(["a"])


async def test_a_new_server_that_cannot_catch_up_fails_the_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_cluster(Counter, ["a", "b", "c"], seed=4) as cluster:
        leader = await leader_of(cluster)
        # "z" never starts: it cannot catch up, and nothing else changes.
        with trio.fail_after(30), pytest.raises(trioraft.CatchUpFailed, match="'z'"):
            await leader.set_members(["a", "b", "z"])
        status = leader.status()
        assert status.voters == frozenset("abc") and status.joint_voters is None
        assert "z" in status.learners


async def test_a_change_retried_after_a_failed_catch_up_starts_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found by the soak's SetMembers faults: once a new voter's catch-up had failed, a
    later change naming it again failed at once with that old reason, as soon as
    another new voter (before it in name order) was found caught up; the new change
    looked at the old, failed catch-up before starting the new one."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=4) as cluster:
        leader = await leader_of(cluster)
        others = sorted(set("abc") - {leader.name})
        voters = [leader.name, others[0], "d", "e"]
        await cluster.start("d", initial_config=())
        # "e" does not run yet: its catch-up fails (d's completes).
        with trio.fail_after(30), pytest.raises(trioraft.CatchUpFailed, match="'e'"):
            await leader.set_members(voters)
        await cluster.start("e", initial_config=())
        with trio.fail_after(30):
            await leader.set_members(voters)
        assert leader.status().voters == frozenset(voters)
        assert leader.status().joint_voters is None


@pytest.mark.parametrize("change", ["add_server", "set_members"])
async def test_a_leader_whose_clock_is_ahead_catches_a_new_server_up(
    autojump_clock: trio.testing.MockClock, change: str
) -> None:
    """The core is given each server's own clock (docs: the runtime reads time only
    through its Clock). A leader whose clock jumped a second ahead of Trio's (a host
    that was suspended, in the simulator) catches a healthy new server up with either
    call; given Trio's time instead, the catch-up looked a second old at once and the
    leader's next tick abandoned it ("made no progress for an election timeout")."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=3) as cluster:
        leader = await leader_of(cluster)
        cluster.jump_clock(leader.name, 1.0)
        await trio.sleep(1)
        leader = await leader_of(cluster)
        cluster.network.set_delay(0.05, 0.1)  # the first answer comes after a tick
        await cluster.start("d", initial_config=())
        with trio.fail_after(30):
            if change == "add_server":
                await leader.add_server("d")
            else:
                await leader.set_members(["a", "b", "c", "d"])
        assert "d" in leader.status().voters


# --------------------------------------------------------------- the core, by message
def test_while_joint_a_commit_needs_a_majority_of_each_set() -> None:
    """§4.3: under C_old,new = ({a,b,c} -> {a,d,e}) the leader commits an entry only once a
    majority of the old set and of the new one hold it; then C_new follows by itself."""
    c = PureCluster(["a", "b", "c", "d", "e"], voters=["a", "b", "c"], seed=11)
    leader = c.elect("a")
    joint = Config(voters=["a", "d", "e"], outgoing=["a", "b", "c"])
    entry = leader._append_config(joint)
    c.deliver(drop=lambda m: m.dst in ("d", "e"))  # only the old set hears of it
    assert leader.commit_index < entry.index and leader.config == joint
    c.deliver(drop=lambda m: m.dst in ("b", "c"), heartbeat=True)  # now the new set too
    assert leader.commit_index >= entry.index
    final = leader.log.entry(leader.log.last_index)
    assert final.kind is EntryKind.CONFIG and final.data == joint.leave_joint()
    c.deliver(heartbeat=True)
    assert leader.commit_index >= final.index and leader.config.voters == ("a", "d", "e")
    assert not leader.config.joint and leader.role is Role.LEADER


def test_while_joint_an_election_needs_a_majority_of_each_set() -> None:
    """§4.3: a candidate under C_old,new wins only with a majority of both sets: votes
    of the whole old set are not enough."""
    c = PureCluster(["a", "b", "c", "d", "e"], voters=["a", "b", "c"], seed=12)
    leader = c.elect("a")
    leader._append_config(Config(voters=["c", "d", "e"], outgoing=["a", "b", "c"]))
    c.deliver(drop=lambda m: m.dst in ("d", "e") or m.src in ("d", "e"))
    b = c["b"]
    assert b.config.joint
    b.trigger_election(c.now)
    c.deliver(drop=lambda m: m.dst in ("d", "e") or m.src in ("d", "e"))
    assert b.role is not Role.LEADER  # a, b and c granted: the new set did not
    term = b.term
    b.trigger_election(c.now)
    c.deliver()
    # Now it wins (the new set voted too), leads the change to C_new, and, not being
    # in C_new, hands over to a voter of it once C_new commits (§4.3, §3.10).
    assert any(m.src == "b" and m.term == term + 1 and type(m).__name__ == "AppendEntries"
               for m in c.delivered)  # fmt: skip
    (leader,) = c.leaders()
    assert leader in ("c", "d", "e") and c[leader].config.voters == ("c", "d", "e")


def test_a_quorum_of_one_set_is_not_a_joint_quorum() -> None:
    q = Quorum(["c", "d", "e"], ["a", "b", "c"])
    assert not q.reached({"a", "b", "c"}.__contains__)
    assert not q.reached({"c", "d", "e"}.__contains__)
    assert q.reached({"a", "c", "d"}.__contains__)
