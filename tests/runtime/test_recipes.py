"""Recipes: a replicated dict and a lock with fencing tokens, under faults.

The promises checked: the dict's operations behave as a dict's, and a history of them
from several clients, through leader crashes and partitions, is linearizable; the lock
is held by one client at a time (bodies of ``hold`` never overlap), each acquisition's
fencing token is larger than the last, a resource that checks tokens refuses a stale
holder, a lock whose holder's session expired is free again (on every server alike),
and a history of acquisitions and releases under faults is linearizable.
"""

from __future__ import annotations

import itertools
import random

import trio

import trioraft
from trioraft.recipes import (
    DictMachine,
    FencedResource,
    LockMachine,
    ReplicatedDict,
    ReplicatedLock,
    StaleToken,
)
from trioraft.testing import Cluster, History, Model, open_cluster, run


async def stable(cluster: Cluster) -> trioraft.Server:
    with trio.fail_after(20):
        return await cluster.wait_for_leader()


async def faults(cluster: Cluster, rng: random.Random, rounds: int) -> None:
    for _ in range(rounds):
        await trio.sleep(rng.uniform(0.3, 0.8))
        leader = cluster.leader()
        if leader is not None:
            if rng.random() < 0.5:
                await cluster.crash(leader.name)
            else:
                cluster.isolate(leader.name)
        await trio.sleep(rng.uniform(0.3, 0.8))
        await cluster.recover()


def test_dict_behaves_as_a_dict() -> None:
    async def scenario() -> None:
        async with open_cluster(DictMachine, 3, seed=1) as cluster:
            await stable(cluster)
            async with trioraft.open_client(cluster.names, network=cluster.network) as client:
                d = ReplicatedDict(client)
                await d.set("a", 1)
                await d.set(("t", 2), [1, (2, 3)])
                assert await d.get("a") == 1 and await d.get("zz", "none") == "none"
                assert await d.get(("t", 2)) == [1, (2, 3)]
                assert await d.compare_and_set("a", 1, 5) is True
                assert await d.compare_and_set("a", 1, 6) is False
                assert await d.compare_and_set("new", None, 0) is True  # absent -> set
                assert await d.delete("a") is True and await d.delete("a") is False
                assert await d.items() == [("new", 0), (("t", 2), [1, (2, 3)])]

    run(scenario, seed=1)


def test_recipes_record_the_machines_operations_in_a_history() -> None:
    """Given a History, the dict records each call as DictMachine sees it (kind, command
    or query, the machine's reply), under the client id given (the lock likewise: see
    its test under faults)."""

    async def scenario() -> History:
        history = History()
        async with open_cluster(DictMachine, 3, seed=6) as cluster:
            await stable(cluster)
            async with trioraft.open_client(cluster.names, network=cluster.network) as client:
                d = ReplicatedDict(client, history=history, client_id="alice")
                await d.set("a", 1)
                assert await d.get("a") == 1 and await d.get("b", 0) == 0
                assert await d.compare_and_set("a", 1, 2) is True
        return history

    history = run(scenario, seed=6)
    recorded = [(op.client, op.kind, op.input, op.output) for op in history.operations]
    assert recorded == [
        ("alice", "write", ("set", "a", 1), None),
        ("alice", "read", ("get", "a"), 1),
        ("alice", "read", ("get", "b"), None),
        ("alice", "write", ("cas", "a", 1, 2), True),
    ]
    assert history.check(Model.from_state_machine(DictMachine)).ok is True


def test_dict_history_under_faults_is_linearizable() -> None:
    """The dict, given a History, records its own operations: checked against
    DictMachine itself, with no command written by hand."""

    async def scenario() -> History:
        history = History()
        rng = random.Random(2)
        async with open_cluster(
            DictMachine, 5, seed=2, snapshot_threshold=30, snapshot_trailing=5
        ) as cluster:
            await stable(cluster)

            async def user(k: int) -> None:
                async with trioraft.open_client(
                    cluster.names, network=cluster.network, name=f"user{k}"
                ) as client:
                    d = ReplicatedDict(client, history=history)  # records what it does
                    while True:
                        key = rng.choice("abc")
                        op = rng.choice(["get", "set", "cas", "delete"])
                        if op == "get":
                            await d.get(key)
                        elif op == "set":
                            await d.set(key, rng.randint(1, 3))
                        elif op == "cas":
                            await d.compare_and_set(key, rng.randint(1, 3), rng.randint(1, 3))
                        else:
                            await d.delete(key)
                        await trio.sleep(rng.uniform(0, 0.05))  # let virtual time pass

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(user, k)
                await faults(cluster, rng, 5)
                nursery.cancel_scope.cancel()
        return history

    history = run(scenario, seed=2, hang_timeout=120)
    assert len(history.operations) > 100
    model = Model.from_state_machine(DictMachine, partition_key=Model.command_key)
    result = history.check(model, max_seconds=60)
    assert result.ok is True, str(result)


def test_lock_is_held_by_one_client_at_a_time_with_growing_tokens() -> None:
    async def scenario() -> list[tuple[float, float, int]]:
        bodies: list[tuple[float, float, int]] = []
        async with open_cluster(LockMachine, 3, seed=3) as cluster:
            await stable(cluster)

            async def worker(k: int) -> None:
                async with trioraft.open_client(
                    cluster.names, network=cluster.network, name=f"w{k}"
                ) as client:
                    lock = ReplicatedLock(client)
                    for _ in range(4):
                        async with lock.hold("job") as token:
                            start = trio.current_time()
                            await trio.sleep(0.05)
                            bodies.append((start, trio.current_time(), token))

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(worker, k)
        return bodies

    bodies = sorted(run(scenario, seed=3, hang_timeout=60))
    assert len(bodies) == 12
    tokens = [token for _, _, token in bodies]
    assert tokens == sorted(tokens) and len(set(tokens)) == 12
    for (_, end, _), (start, _, _) in itertools.pairwise(bodies):
        assert end <= start  # never two holders at once


def test_expired_session_frees_the_lock_and_its_stale_holder_is_fenced() -> None:
    async def scenario() -> None:
        async with open_cluster(LockMachine, 3, seed=4, session_timeout=2.0) as cluster:
            await stable(cluster)
            resource = FencedResource()
            async with (
                trioraft.open_client(cluster.names, network=cluster.network, name="a") as a,
                trioraft.open_client(cluster.names, network=cluster.network, name="b") as b,
            ):
                first = await ReplicatedLock(a).acquire("disk")
                assert first is not None
                resource.check(first)
                assert await ReplicatedLock(b).acquire("disk") is None  # held
                for _ in range(3):  # a is silent for longer than the session timeout
                    await trio.sleep(1)
                    await b.write(("touch", "other", 0))  # b stays active, stamping time
                second = await ReplicatedLock(b).acquire("disk")
                assert second is not None and second > first
                resource.check(second)
                try:
                    resource.check(first)  # a wakes up and acts on its old token
                    raise AssertionError("a stale holder was not refused")
                except StaleToken:
                    pass
                await trio.sleep(0.5)  # every follower applies up to here
                for server in cluster.servers.values():  # released everywhere alike
                    assert server.machine.locks["disk"][1] == second

    run(scenario, seed=4)


def test_lock_history_under_faults_is_linearizable() -> None:
    """The lock, given a History, records its own commands (acquire, release)."""

    async def scenario() -> History:
        history = History()
        rng = random.Random(5)
        async with open_cluster(LockMachine, 5, seed=5) as cluster:
            await stable(cluster)

            async def user(k: int) -> None:
                async with trioraft.open_client(
                    cluster.names, network=cluster.network, name=f"u{k}"
                ) as client:
                    lock = ReplicatedLock(client, history=history)  # records what it does
                    while True:
                        token = await lock.acquire("l")
                        await trio.sleep(rng.uniform(0, 0.1))
                        if token is not None:
                            await lock.release("l", token)
                            await trio.sleep(rng.uniform(0, 0.1))

            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(user, k)
                await faults(cluster, rng, 4)
                nursery.cancel_scope.cancel()
        return history

    history = run(scenario, seed=5, hang_timeout=120)
    assert len(history.operations) > 50
    assert {op.input[0] for op in history.operations} == {"acquire", "release"}
    assert {op.client for op in history.operations} == {"u0", "u1", "u2"}  # the clients' names
    result = history.check(Model.from_state_machine(LockMachine), max_seconds=60)
    assert result.ok is True, str(result)
