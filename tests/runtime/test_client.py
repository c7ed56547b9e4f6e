"""Clients and exactly-once writes (dissertation §6.3), in simulation (autojump clock).

The promises checked (API, "Clients and exactly-once writes"): a client's write is
applied exactly once whatever happens to leaders (isolated, crashed, replaced), every
``write`` returns, and each returns its own reply; retries of one numbered write return
the first reply without applying it again; replies are dropped once acknowledged; the
session table survives snapshots and restarts; a session idle for ``session_timeout``
seconds of the leaders' stamped time expires at the same log position everywhere, and
a write on it raises ``SessionExpired`` and is not applied; a state machine's exception
reaches the writer once; reads are linearizable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trioraft
from trioraft._client import ATTEMPT_TIMEOUT
from trioraft._sessions import ClusterClock
from trioraft.testing import Cluster, open_cluster, run

from machines import Counter


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def churn(cluster: Cluster, rounds: int) -> None:
    """Isolate, crash and replace leaders, then recover each time."""
    for i in range(rounds):
        await trio.sleep(0.4)
        leader = cluster.leader()
        if leader is None:
            continue
        if i % 2:
            cluster.isolate(leader.name)
        else:
            await cluster.crash(leader.name)
        await trio.sleep(0.6)
        await cluster.recover()


@pytest.mark.parametrize("seed", range(4))
def test_writes_apply_exactly_once_through_leader_changes(seed: int) -> None:
    async def scenario() -> tuple[list[int], int, int]:
        async with open_cluster(
            Counter, 3, seed=seed, snapshot_threshold=15, snapshot_trailing=3
        ) as cluster:
            cluster.set_delay(0.0, 0.02)
            await stable(cluster)
            replies: list[int] = []
            async with trioraft.open_client(list(cluster.names), network=cluster.network) as client:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(churn, cluster, 6)

                    async def writer() -> None:
                        for _ in range(40):
                            replies.append(await client.write(1))

                    async with trio.open_nursery() as writers:
                        for _ in range(3):
                            writers.start_soon(writer)
                    nursery.cancel_scope.cancel()
                await cluster.recover()
                value = await client.read(None)
            leader = await stable(cluster)
            return replies, value, leader.machine.value

    replies, read, value = run(scenario, seed=seed, hang_timeout=120)
    assert len(replies) == 120  # every write returned
    assert sorted(replies) == list(range(1, 121))  # each its own reply: applied once
    assert read == value == 120


def test_a_retried_write_returns_the_first_reply_without_applying_again() -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=1) as cluster:
            leader = await stable(cluster)
            client = await leader.open_session()
            assert await leader.write_in_session(client, 1, 1, 5) == 5
            assert await leader.write_in_session(client, 1, 1, 5) == 5  # a retry
            assert await leader.write_in_session(client, 2, 1, 5) == 10
            assert leader.machine.applied == [5, 5]
            # Acknowledged (lowest=3): the kept replies are dropped; a late duplicate of
            # an answered write is refused, not applied.
            assert await leader.write_in_session(client, 3, 3, 1) == 11
            with pytest.raises(trioraft.SessionExpired):
                await leader.write_in_session(client, 1, 3, 5)
            assert leader.machine.value == 11

    run(scenario, seed=1)


def test_session_table_survives_snapshots_and_restarts() -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=2, snapshot_threshold=5) as cluster:
            leader = await stable(cluster)
            client = await leader.open_session()
            assert await leader.write_in_session(client, 1, 1, 7) == 7
            for _ in range(12):
                await cluster.write(1)
            await leader.take_snapshot()
            for name in list(cluster.servers):
                await cluster.crash(name)
            await cluster.recover()
            leader = await stable(cluster)
            assert leader.status().snapshot_index > 0
            # The retry of write 1 finds its kept reply in the restored table.
            assert await leader.write_in_session(client, 1, 1, 7) == 7
            assert leader.machine.value == 19

    run(scenario, seed=2)


def test_idle_session_expires_everywhere_and_refuses_writes() -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=3, session_timeout=5.0) as cluster:
            await stable(cluster)
            async with trioraft.open_client(list(cluster.names), network=cluster.network) as client:
                assert await client.write(1) == 1
                first = client.session
                await trio.sleep(3)
                assert await client.write(1) == 2  # activity keeps it alive
                await trio.sleep(4)
                other = await (await stable(cluster)).open_session()  # stamps time on
                await trio.sleep(4)  # 8 s idle, stamped by entries of others
                await (await stable(cluster)).write_in_session(other, 1, 1, 0)
                with pytest.raises(trioraft.SessionExpired):
                    await client.write(100)
                assert await client.write(1) == 3  # a new session, and 100 was not applied
                assert client.session != first
            await trio.sleep(0.5)
            for server in cluster.servers.values():
                assert first not in server._sessions  # expired on every server alike

    run(scenario, seed=3)


def test_cluster_time_starts_at_zero_and_skips_time_without_a_leader() -> None:
    """§6.3's clock: sessions expire by the time leaders stamp into the log. It started
    at the server's own clock (Trio's clock of each process starts hours apart), so a
    new leader whose clock was ahead stamped hours later and expired every session."""
    clock = ClusterClock()
    assert clock.now(150_000.0) == 0.0  # not this process's clock
    assert clock.now(150_010.0) == 10.0
    other = ClusterClock()  # another server, its clock hours behind
    other.observe(10.0, 20_000.0)
    assert other.now(20_005.0) == 15.0
    other.observe(12.0, 20_006.0)  # the newest stamp wins over its own reckoning
    assert other.now(20_006.0) == 12.0
    other.rebase(27_200.0)  # it leads after two hours without a leader
    assert other.now(27_201.0) == 13.0


def test_an_applied_write_whose_reply_was_lost_survives_hours_of_downtime() -> None:
    """The write is applied, its reply lost, the whole cluster stops for two hours and
    restarts from its storage: the retry returns the first reply. The session used to
    be expired at the first stamp after the restart ("the command was not applied")."""
    lost: list[str] = []

    class LosesAReply(Counter):
        def write(self, command: Any) -> Any:
            reply = super().write(command)
            if command == 10 and lost:
                network.isolate(lost.pop())  # the client, as the entry applies
            return reply

    async def scenario() -> None:
        # Invariants checked every virtual second, not every 50 ms: over the two hours
        # of downtime that is 7,200 checks instead of 144,000 (8 s of CPU).
        async with open_cluster(
            LosesAReply, 3, seed=8, network=network, check_interval=1.0
        ) as cluster:
            await stable(cluster)
            async with trioraft.open_client(cluster.names, network=network) as client:
                assert await client.write(1) == 1
                lost.append(client.name)
                async with trio.open_nursery() as nursery:
                    replies: list[Any] = []

                    async def retrying() -> None:
                        replies.append(await client.write(10))

                    nursery.start_soon(retrying)
                    while not all(s.machine.value == 11 for s in cluster.servers.values()):
                        await trio.sleep(0.01)
                    for name in cluster.names:
                        await cluster.crash(name)
                    await trio.sleep(2 * 3600)
                    network.heal()
                    await cluster.recover()
                assert replies == [11]  # applied once, and its reply is the first one
                assert (await stable(cluster)).machine.value == 11

    network = trioraft.MemoryNetwork(seed=8)
    run(scenario, seed=8, hang_timeout=120)


def test_machine_exception_reaches_the_writer_once() -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=4) as cluster:
            await stable(cluster)
            async with trioraft.open_client(list(cluster.names), network=cluster.network) as client:
                with pytest.raises(ValueError, match="boom"):
                    await client.write("boom")
                assert await client.write(2) == 2
                leader = await stable(cluster)
                assert leader.machine.applied.count("boom") == 1

    run(scenario, seed=4)


def test_client_follows_redirects_and_reads_linearizably() -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 5, seed=5) as cluster:
            leader = await stable(cluster)
            followers = [n for n in cluster.names if n != leader.name]
            async with trioraft.open_client(followers, network=cluster.network) as client:
                assert await client.write(3) == 3
                assert client.leader == leader.name  # redirected there
                assert await client.read(None) == 3

    run(scenario, seed=5)


def test_a_closed_client_raises_at_once() -> None:
    """A client used after its ``open_client`` block ended used to retry forever on its
    closed endpoint; every call now raises trio.ClosedResourceError naming it."""

    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=6) as cluster:
            await stable(cluster)
            async with trioraft.open_client(cluster.names, network=cluster.network) as client:
                assert await client.write(1) == 1
            with trio.fail_after(1):
                for call in (client.write(1), client.read(None), client.status()):
                    with pytest.raises(trio.ClosedResourceError, match="client-1' is closed"):
                        await call

    run(scenario, seed=6)


def test_the_servers_errors_reach_a_client_as_themselves() -> None:
    """``client.remove_server`` and ``transfer_leadership`` raised a bare RaftError whose
    text began "UnknownServer:", so ``except trioraft.UnknownServer`` caught nothing."""

    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=7) as cluster:
            await stable(cluster)
            async with trioraft.open_client(cluster.names, network=cluster.network) as client:
                with pytest.raises(trioraft.UnknownServer, match="'nope' is not a member"):
                    await client.remove_server("nope")
                with pytest.raises(trioraft.UnknownServer, match="'nope' is not a voter"):
                    await client.transfer_leadership("nope")
                assert await client.write(1) == 1

    run(scenario, seed=7)


def test_status_from_a_follower_does_not_make_it_the_leader() -> None:
    """``client.leader`` is the leader the client last used: a status answered by a
    follower does not change it."""

    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=5) as cluster:
            leader = await stable(cluster)
            follower = next(n for n in cluster.names if n != leader.name)
            async with trioraft.open_client([follower], network=cluster.network) as client:
                status = await client.status()
                assert status["name"] == follower and client.leader is None
                assert await client.write(1) == 1
                assert client.leader == leader.name
                await client.status()
                assert client.leader == leader.name

    run(scenario, seed=5)


def test_a_read_answered_by_a_follower_names_the_leader() -> None:
    """With ``follower_reads`` a follower answers a client's read itself; the answer
    says who leads, and ``client.leader`` names that leader, not the follower."""

    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=5, follower_reads=True) as cluster:
            leader = await stable(cluster)
            await cluster.write(2)
            follower = next(n for n in cluster.names if n != leader.name)
            async with trioraft.open_client([follower], network=cluster.network) as client:
                assert await client.read(None) == 2
                assert client.leader == leader.name

    run(scenario, seed=5)


def test_a_status_holds_every_field_of_status() -> None:
    """``client.status()`` (and so ``status --json``) has every field of ``Status``, in
    msgpack and JSON values: the role by name, sets as sorted lists, match_index a dict
    (it once left out match_index, transfer_target and waiting_to_be_added)."""

    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=5) as cluster:
            leader = await stable(cluster)
            async with trioraft.open_client([leader.name], network=cluster.network) as client:
                status = await client.status()
        expected = leader.status()
        assert set(status) == set(attrs.fields_dict(trioraft.Status))
        assert status["role"] == "LEADER" and status["voters"] == sorted(expected.voters)
        assert status["match_index"] == dict(expected.match_index)
        assert status["transfer_target"] is None and status["waiting_to_be_added"] is False
        json.dumps(status)

    run(scenario, seed=5)


def test_clients_are_named_per_network_and_partitions_take_the_name() -> None:
    """A client attaches under ``client.name``: ``client-1``, ``client-2``... counted per
    network, so two runs of one seeded scenario in one process name their clients alike
    (API, "Deterministic runs"; the count was once the process's). A partition that
    leaves the name out cuts the client off; one that lists it lets it through."""

    async def scenario() -> tuple[list[str], float]:
        async with open_cluster(Counter, 3, seed=4) as cluster:
            await stable(cluster)
            network, names = cluster.network, cluster.names
            async with (
                trioraft.open_client(names, network=network) as one,
                trioraft.open_client(names, network=network) as two,
            ):
                assert await one.write(1) == 1
                network.partition(names)  # the clients in no group
                with trio.move_on_after(5) as cut_off:
                    await two.write(1)
                assert cut_off.cancelled_caught
                network.partition([*names, two.name])
                start = trio.current_time()
                assert await two.write(1) == 2  # cut off, it had not even opened a session
                return [one.name, two.name], trio.current_time() - start
        raise AssertionError("unreachable")

    first, again = run(scenario, seed=4), run(scenario, seed=4)
    assert first[0] == ["client-1", "client-2"]
    assert again == first


def test_a_dead_leader_is_not_waited_on_twice() -> None:
    """After a request to the hinted leader goes unanswered, the client moves on to
    another server, even when the dead one is next in its list (one wait, not two)."""

    async def scenario() -> float:
        async with open_cluster(Counter, 3, seed=2) as cluster:
            leader = await stable(cluster)
            others = [name for name in cluster.names if name != leader.name]
            # The leader is next in the list after the first server tried.
            targets = [others[0], leader.name, others[1]]
            async with trioraft.open_client(targets, network=cluster.network) as client:
                await client.write(1)  # redirected to the leader, which is now the hint
                assert client.leader == leader.name
                await cluster.crash(leader.name)
                start = trio.current_time()
                assert await client.write(1) == 2
                return trio.current_time() - start

    elapsed = run(scenario, seed=2, hang_timeout=60)
    assert elapsed < 2 * ATTEMPT_TIMEOUT  # virtual time: one wait on the dead server


def test_a_late_duplicate_of_an_acknowledged_write_is_not_applied_again() -> None:
    """§6.3: a write's request duplicated by the network and delivered late, after the
    client's next write said "everything below me is answered", is refused, not applied
    a second time, although it carries its own, older lowest number. (The schedule of
    soak seed 30308, client mode, applied it twice.) The watermark survives a snapshot."""
    from trioraft._sessions import Sessions

    applied: list[str] = []

    def run_(name: str) -> Callable[[], tuple[Any, BaseException | None]]:
        def go() -> tuple[Any, BaseException | None]:
            applied.append(name)
            return name, None

        return go

    table = Sessions(timeout=60.0)
    table.open(1, now=0.0)
    assert table.apply(1, 5, 5, 1.0, run_("write 5")) == ("write 5", None)
    assert table.apply(1, 6, 6, 2.0, run_("write 6")) == ("write 6", None)  # 5 acknowledged
    copy = Sessions(timeout=60.0)
    copy.restore(table.snapshot())
    for sessions in (table, copy):
        value, error = sessions.apply(1, 5, 5, 3.0, run_("write 5 again"))  # the late copy
        assert value is None and isinstance(error, trioraft.SessionExpired)
    assert applied == ["write 5", "write 6"]
    # A snapshot taken before the fix: a row per session, with no watermark.
    old_format = [[1, 2.0, [[6, "write 6", None]]]]
    legacy = Sessions(timeout=60.0)
    legacy.restore(old_format)
    assert legacy.apply(1, 6, 6, 4.0, run_("write 6 again")) == ("write 6", None)  # kept
