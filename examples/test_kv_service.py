"""Testing a replicated key-value service deterministically: the worked example of the
"Testing your service deterministically" docs page.

Run it with ``python -m pytest examples/test_kv_service.py`` (it needs the ``test``
extra: pytest, pytest-trio and Hypothesis, and pytest-trio's ``trio_mode``).
"""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from kv import KeyValue

from trioraft import RaftError
from trioraft.testing import (
    Cluster,
    FaultSchedule,
    History,
    Model,
    TraceRecorder,
    open_cluster,
    print_tail_on_failure,
    run,
)
from trioraft.testing.strategies import fault_schedules

NAMES = ["kv1", "kv2", "kv3"]


# 1. A scenario, in virtual time: the plugin's fixtures give a seeded cluster.
async def test_a_put_survives_the_leaders_crash(open_raft_cluster, autojump_clock):
    async with open_raft_cluster(KeyValue, NAMES) as cluster:
        leader = await cluster.wait_for_leader()
        assert await leader.write(("put", "colour", "red")) is None
        await cluster.crash(leader.name)
        new_leader = await cluster.wait_for_leader()
        assert new_leader is not leader
        assert await new_leader.read(("get", "colour")) == "red"
        await cluster.restart(leader.name)  # it comes back with everything it had stored


# 2. Clients under a fault schedule, and a linearizability check of what they saw.
async def clients_under_faults(schedule: FaultSchedule, seed: int) -> History:
    history = History()
    async with open_cluster(KeyValue, NAMES, seed=seed, init_arg={"a": 0, "b": 0}) as cluster:
        recorder = TraceRecorder()
        recorder.attach(cluster)

        async def client(k: int) -> None:
            rng = random.Random(f"{seed}/{k}")
            for _ in range(30):
                await trio.sleep(rng.uniform(0.01, 0.2))
                key = rng.choice("ab")
                if rng.random() < 0.5:
                    command = ("cas", key, rng.randint(0, 2), rng.randint(0, 2))
                    await attempt(cluster, history, k, "write", command)
                else:
                    await attempt(cluster, history, k, "read", ("get", key))

        with print_tail_on_failure(recorder):
            async with trio.open_nursery() as nursery:
                for k in range(4):
                    nursery.start_soon(client, k)
                await schedule.run(cluster)
    return history


async def attempt(
    cluster: Cluster, history: History, client: int, kind: str, value: object
) -> None:
    leader = cluster.leader()
    if leader is None:
        return
    try:
        with trio.move_on_after(1):
            # Records call and return times; a write that may or may not have happened
            # (OutcomeUnknown) is recorded as such, and one refused by a non-leader is
            # dropped: the checker then knows exactly what each client could have seen.
            async with history.operation(client, kind, value) as op:
                call = leader.write if kind == "write" else leader.read
                op.output = await call(value)
    except RaftError:
        pass


# The sequential model is the state machine itself: trioraft replays the history on it.
KV_MODEL = Model.from_state_machine(KeyValue, {"a": 0, "b": 0})


@settings(max_examples=10, deadline=None)
@given(fault_schedules(NAMES, duration=4.0, max_faults=6))
def test_clients_see_a_linearizable_store(schedule):
    history = run(clients_under_faults, schedule, 7, seed=7)
    result = history.check(KV_MODEL)
    assert result.ok, f"{schedule}\n{result}"
