"""Misuse caught where it happens, and a server that never takes its user's nursery down.

The promises checked here: every cluster has an identity and servers of different
clusters never mix their logs (a server with its own history added to a cluster is
refused with a clear error); a broken invariant inside a running server stops that server
with a ``ServerFailed`` that says what happened, never the user's nursery; mistakes in a
state machine or in a call are reported at the call that made them; the testing toolkit
catches commands that change after they were written and reads that change state; the
in-memory network duplicates messages on demand, and ``partition()`` sets its whole shape.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

import trioraft
from trioraft import MemoryStorage
from trioraft.testing import InvariantViolation, open_cluster, run

from machines import Counter


async def stable(cluster: Any) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


# ------------------------------------------------------------------ cluster identity


async def test_every_server_learns_the_cluster_identity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first leader writes a fresh identity into the first entry; once committed,
    every member knows it (and persists it)."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=1) as cluster:
        await stable(cluster)
        await cluster.write(1)
        await trio.sleep(0.5)
        ids = {s.status().cluster_id for s in cluster.servers.values()}
        assert len(ids) == 1 and len(ids.pop()) == 16
        assert all(s.storage.cluster_id for s in cluster.servers.values())


async def test_server_with_its_own_history_is_refused_with_wrong_cluster(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that led a cluster of its own (its own initial_config) is added to
    another cluster: it refuses to follow (and says why in the log), the leader's
    add_server raises WrongCluster naming the problem, and both clusters keep working."""
    caplog.set_level(logging.WARNING, logger="trioraft")
    async with open_cluster(Counter, ["a", "b", "c"], seed=1) as cluster:
        leader = await stable(cluster)
        await cluster.write(1)
        # Started beside the cluster (its monitor watches one cluster's servers only).
        d = await trioraft.start_server(
            cluster.nursery, Counter, name="d", network=cluster.network, initial_config=["d"]
        )
        with trio.fail_after(5):
            while d.status().role is not trioraft.Role.LEADER:
                await trio.sleep(0.05)
            await d.write(100)
        assert d.status().cluster_id and d.status().cluster_id != leader.status().cluster_id
        for voter in (True, False):
            with pytest.raises(trioraft.WrongCluster, match="'d' belongs to another cluster"):
                with trio.fail_after(5):
                    await leader.add_server("d", voter=voter)
            if voter:
                await leader.remove_server("d")
        assert not d.stopped and d.status().role is trioraft.Role.LEADER
        assert d.machine.value == 100
        assert await cluster.write(1) == 2
        assert any("refused messages from" in r.getMessage() for r in caplog.records)


async def test_storage_of_another_cluster_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server started on the storage of another cluster's server keeps that cluster's
    identity: adding it to this cluster fails with WrongCluster."""
    other = MemoryStorage()
    async with open_cluster(Counter, ["z"], seed=7, check_interval=None) as elsewhere:
        elsewhere.storages["z"] = other
        await elsewhere.crash("z")
        await elsewhere.start("z", storage=other)
        await stable(elsewhere)
        await elsewhere.write(5)
    assert other.cluster_id
    async with open_cluster(Counter, ["a", "b", "c"], seed=2) as cluster:
        leader = await stable(cluster)
        z = await trioraft.start_server(
            cluster.nursery, Counter, name="z", network=cluster.network, storage=other
        )
        with pytest.raises(trioraft.WrongCluster), trio.fail_after(5):
            await leader.add_server("z", voter=False)
        with trio.fail_after(5):  # it leads its own cluster again: its own state, untouched
            assert await z.await_leader() == "z"
            assert await z.read(None) == 5
        assert z.status().cluster_id == other.cluster_id
        await z.stop()


# ------------------------------------------------------------ failures stay contained


async def test_broken_invariant_stops_the_server_not_the_nursery(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An internal assertion inside a running server stops that server: pending and
    later calls raise ServerFailed with what happened; the rest of the program (and the
    other servers) carry on."""
    caplog.set_level(logging.ERROR, logger="trioraft")
    # No periodic checks: they report a server that stopped itself (a bug, see below).
    async with open_cluster(Counter, ["a", "b", "c"], seed=1, check_interval=None) as cluster:
        leader = await stable(cluster)
        victim = cluster[sorted(n for n in "abc" if n != leader.name)[0]]

        def broken(entries: Any) -> None:
            raise AssertionError("the log went backwards")

        # Where the server's own work raises (a compiled server's objects take no
        # method of an instance's own; its storage, an interpreted class, does).
        victim._storage.append = broken
        await cluster.write(1)
        with trio.fail_after(5):
            while not victim.stopped:
                await trio.sleep(0.01)
        assert isinstance(victim.failure, trioraft.ServerFailed)
        assert "the log went backwards" in str(victim.failure)
        with pytest.raises(trioraft.ServerFailed, match="internal invariant broke"):
            await victim.read_dirty(None)
        assert await cluster.write(1) == 2  # the others go on
        assert any("internal invariant" in r.getMessage() for r in caplog.records)
        # A test cluster reports it: the run would otherwise go on without the server.
        with pytest.raises(InvariantViolation, match=f"'{victim.name}' stopped itself, a bug"):
            cluster.check()


# --------------------------------------------------------------------------- misuse


class AsyncWrite(trioraft.StateMachine):
    async def write(self, command: Any) -> Any:  # type: ignore[override]
        return command

    def read(self, query: Any) -> Any:
        return None


class AsyncRestore(Counter):
    async def restore(self, snapshot: Any) -> None:  # type: ignore[override]
        pass


class NoRead:
    def write(self, command: Any) -> Any:
        return command


@pytest.mark.parametrize(
    ("machine", "words"),
    [
        (AsyncWrite, "AsyncWrite.write is async"),
        (AsyncRestore, "AsyncRestore.restore is async"),
        (NoRead, "NoRead has no read"),
    ],
)
async def test_bad_state_machines_are_refused_at_start(machine: Any, words: str) -> None:
    network = trioraft.MemoryNetwork()
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match=words):
            await trioraft.start_server(nursery, machine, name="a", network=network)
    assert network.servers == ()


async def test_start_server_without_a_nursery_says_so() -> None:
    network = trioraft.MemoryNetwork()
    with pytest.raises(TypeError, match="takes the nursery"):
        await trioraft.start_server(Counter, 0, name="a", network=network)  # type: ignore[arg-type]


async def test_server_outside_every_configuration_says_it_waits(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Legal but easy to get wrong: a server started with no configuration waits to be
    added. status() says so at once; the log says so once, a few election timeouts in."""
    caplog.set_level(logging.WARNING, logger="trioraft")
    network = trioraft.MemoryNetwork(seed=0)
    async with trio.open_nursery() as nursery:
        lonely = await trioraft.start_server(nursery, Counter, name="x", network=network)
        assert lonely.status().waiting_to_be_added
        await trio.sleep(5)
        waits = [r for r in caplog.records if "waits to be added" in r.getMessage()]
        assert len(waits) == 1 and "'x'" in waits[0].getMessage()
        nursery.cancel_scope.cancel()


def test_exceptions_show_as_trioraft_names() -> None:
    assert repr(trioraft.NotLeader("a")).startswith("NotLeader(")
    for cls in (trioraft.NotLeader, trioraft.ServerStopped, trioraft.RaftError):
        assert f"{cls.__module__}.{cls.__qualname__}" == f"trioraft.{cls.__name__}"


class MutatingWrite(trioraft.StateMachine):
    """Mutates the command it is given (a bug: replicas would diverge)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def write(self, command: Any) -> Any:
        command.append("seen")
        self.items.append(list(command))
        return len(self.items)

    def read(self, query: Any) -> Any:
        return list(self.items)


class MutatingRead(Counter):
    def read(self, query: Any) -> Any:
        self.value += 1  # a bug: reads must not change state
        return self.value


def test_testing_clusters_catch_a_mutated_command() -> None:
    async def scenario() -> None:
        async with open_cluster(MutatingWrite, 3, seed=1) as cluster:
            await stable(cluster)
            with trio.fail_after(5):
                await cluster.write(["x"])
                await trio.sleep(1)

    with pytest.raises(BaseException) as info:
        run(scenario, seed=1)
    assert info.group_contains(InvariantViolation, match="a command changed after it was written")


def test_testing_clusters_catch_a_read_that_changes_state() -> None:
    async def scenario() -> None:
        async with open_cluster(MutatingRead, 3, seed=1) as cluster:
            leader = await stable(cluster)
            await leader.read(None)

    with pytest.raises(BaseException) as info:
        run(scenario, seed=1)
    assert info.group_contains(InvariantViolation, match="read\\(None\\) changed the state")


# ---------------------------------------------------------------------------- network


async def test_duplication_is_seeded_and_harmless(autojump_clock: trio.testing.MockClock) -> None:
    """The network duplicates messages at the rate asked for; Raft shrugs them off."""
    async with open_cluster(Counter, 3, seed=4) as cluster:
        cluster.set_duplication(0.5)
        await stable(cluster)
        for i in range(1, 21):
            assert await cluster.write(1) == i
        assert cluster.network.duplication == 0.5
        assert cluster.network.statistics().duplicated > 10
        await cluster.recover()
        assert cluster.network.duplication == 0.0
    with pytest.raises(ValueError, match="duplication rate"):
        trioraft.MemoryNetwork().set_duplication(2)


def test_partition_replaces_an_isolation() -> None:
    network = trioraft.MemoryNetwork()
    network.isolate("a")
    assert not network.connected("a", "b")
    network.partition(["a", "b"], ["c"])
    assert network.connected("a", "b") and not network.connected("a", "c")
    network.isolate("b")
    assert not network.connected("a", "b")
    network.heal()
    assert network.connected("a", "c")
