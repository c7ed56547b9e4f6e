"""Random fault schedules over whole clusters: Raft's safety properties must hold throughout.

Each example is one deterministic run (``trioraft.testing.run``) of 3 to 5 servers (and
two spares outside the cluster) under a drawn schedule of partitions, isolations, heals,
loss, delay, crashes, restarts, elections, transfers, membership changes and writes.
The cluster's InvariantMonitor checks election safety, log matching, leader
completeness and state machine safety as it goes; at the end the cluster must recover,
hold every acknowledged write exactly once, and agree on the applied sequence.
A failure names the seed; ``replay(steps, n, seed)`` reproduces it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trioraft
from trioraft.testing import open_cluster, run

from machines import Counter

Step = tuple[Any, ...]


SPARES = ["x1", "x2"]  # started outside the cluster; membership steps add and remove them


def step_strategy(names: list[str]) -> st.SearchStrategy[Step]:
    name = st.sampled_from(names)
    anyone = st.sampled_from(names + SPARES)
    return st.one_of(
        st.tuples(st.just("add"), anyone, st.booleans()),
        st.tuples(st.just("remove"), anyone),
        st.tuples(
            st.just("partition"), st.lists(st.booleans(), min_size=len(names), max_size=len(names))
        ),
        st.tuples(st.just("isolate"), name),
        st.tuples(st.just("heal")),
        st.tuples(st.just("loss"), st.sampled_from([0.0, 0.05, 0.2, 0.5])),
        st.tuples(
            st.just("delay"), st.sampled_from([(0.0, 0.0), (0.0, 0.01), (0.005, 0.05), (0.0, 0.2)])
        ),
        st.tuples(st.just("crash"), name),
        st.tuples(st.just("restart"), name),
        st.tuples(st.just("wait"), st.sampled_from([0.05, 0.2, 0.5, 1.0])),
        st.tuples(st.just("crash_leader")),
        st.tuples(st.just("isolate_leader")),
        st.tuples(st.just("trigger"), name),
        st.tuples(st.just("transfer")),
    )


Scenario = tuple[list[Step], int, int, dict[str, Any]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(3, 5))
    names = [f"s{i}" for i in range(1, n + 1)]
    steps = draw(st.lists(step_strategy(names), min_size=1, max_size=15))
    seed = draw(st.integers(0, 2**32 - 1))
    options = {"pre_vote": draw(st.booleans()), "check_quorum": draw(st.booleans())}
    return steps, n, seed, options


async def scenario(steps: list[Step], n: int, seed: int, options: dict[str, Any]) -> None:
    acknowledged: list[int] = []
    issued: list[int] = []
    async with open_cluster(Counter, n, seed=seed, check_interval=0.02, **options) as cluster:
        names = list(cluster.names)
        for spare in SPARES:
            await cluster.start(spare, initial_config=())
        crashed: set[str] = set()

        async def client() -> None:
            for k in range(10**6):
                command = k + 1
                issued.append(command)
                try:
                    with trio.move_on_after(2):
                        await cluster.write(command, attempts=1)
                        acknowledged.append(command)
                except trioraft.RaftError:
                    pass
                await trio.sleep(0.03)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            for step in steps:
                kind = step[0]
                if kind == "partition":
                    side = step[1]
                    cluster.network.partition(
                        [m for m, s in zip(names, side, strict=True) if s],
                        [m for m, s in zip(names, side, strict=True) if not s],
                    )
                elif kind == "isolate":
                    cluster.network.isolate(step[1])
                elif kind == "heal":
                    cluster.network.heal()
                elif kind == "loss":
                    cluster.network.set_loss(step[1])
                elif kind == "delay":
                    cluster.network.set_delay(*step[1])
                elif kind == "crash" and step[1] not in crashed and len(crashed) < n - 1:
                    crashed.add(step[1])
                    await cluster.crash(step[1])
                elif kind == "restart" and step[1] in crashed:
                    crashed.discard(step[1])
                    await cluster.restart(step[1])
                elif kind == "wait":
                    await trio.sleep(step[1])
                elif kind == "crash_leader" and len(crashed) < n - 1:
                    leader = cluster.leader()
                    if leader is not None:
                        crashed.add(leader.name)
                        await cluster.crash(leader.name)
                elif kind == "isolate_leader":
                    leader = cluster.leader()
                    if leader is not None:
                        cluster.network.isolate(leader.name)
                elif kind == "trigger" and step[1] in cluster.servers:
                    with contextlib.suppress(trioraft.RaftError):
                        await cluster[step[1]].trigger_election()
                elif kind in ("add", "remove"):
                    leader = cluster.leader()
                    if leader is not None:
                        with (
                            contextlib.suppress(trioraft.RaftError, ValueError),
                            trio.move_on_after(3),
                        ):
                            if kind == "add":
                                await leader.add_server(step[1], voter=step[2])
                            else:
                                await leader.remove_server(step[1])
                elif kind == "transfer":
                    leader = cluster.leader()
                    if leader is not None:
                        with contextlib.suppress(trioraft.RaftError):
                            await leader.transfer_leadership()
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

        # Recovery: a fully connected, loss-free network with every server back.
        cluster.network.heal()
        cluster.network.set_loss(0)
        cluster.network.set_delay(0, 0)
        for name in sorted(crashed):
            await cluster.restart(name)
        with trio.fail_after(30):
            leader = await cluster.wait_for_leader()
            await leader.write(-1)  # commits everything before it
            target = leader.status().commit_index
            members = leader.status().voters | leader.status().learners
            while any(cluster[m].status().last_applied < target for m in members):
                await trio.sleep(0.01)
        cluster.check()
        sequences = {name: s.machine.applied for name, s in cluster.servers.items()}
        reference = sequences[leader.name]
        for name, applied in sequences.items():
            assert applied[: len(reference)] == reference[: len(applied)], f"{name} diverges"
        assert reference[-1] == -1
        commands = [c for c in reference if c != -1]
        assert len(commands) == len(set(commands)), "a command was applied twice"
        assert set(commands) <= set(issued), "a command nobody issued was applied"
        missing = set(acknowledged) - set(commands)
        assert not missing, f"acknowledged writes were lost: {sorted(missing)}"


def replay(steps: list[Step], n: int, seed: int, options: dict[str, Any]) -> None:
    """Run one scenario; on failure, say how to reproduce it."""
    try:
        run(scenario, steps, n, seed, options, seed=seed)
    except BaseException as exc:
        raise AssertionError(
            f"scenario failed with seed={seed}; reproduce with "
            f"tests.test_property.replay({steps!r}, {n}, {seed}, {options!r})"
        ) from exc


# At least 200 examples (about 5 s): fewer missed a deliberately broken vote rule.
@settings(max_examples=max(200, settings.default.max_examples))
@given(scenarios())
def test_safety_under_random_faults(case: Scenario) -> None:
    replay(*case)


SLOW_KINDS = [
    *("partition", "isolate", "heal", "loss", "delay", "crash", "restart", "wait"),
    *("crash_leader", "isolate_leader", "trigger", "transfer", "add", "remove"),
]
SLOW_SEEDS = range(200) if os.environ.get("TRIORAFT_SLOW") else range(0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_long_random_runs(seed: int) -> None:
    """200 longer schedules (40 steps each): set TRIORAFT_SLOW=1 to run them."""
    import random

    rng = random.Random(seed)
    n = rng.randint(3, 5)
    names = [f"s{i}" for i in range(1, n + 1)]
    steps: list[Step] = []
    for _ in range(40):
        kind = rng.choice(SLOW_KINDS)
        if kind == "add":
            steps.append((kind, rng.choice(names + SPARES), rng.random() < 0.5))
        elif kind == "remove":
            steps.append((kind, rng.choice(names + SPARES)))
        elif kind == "partition":
            steps.append((kind, [rng.random() < 0.5 for _ in names]))
        elif kind in ("isolate", "crash", "restart", "trigger"):
            steps.append((kind, rng.choice(names)))
        elif kind == "loss":
            steps.append((kind, rng.choice([0.0, 0.1, 0.3])))
        elif kind == "delay":
            steps.append((kind, rng.choice([(0.0, 0.0), (0.0, 0.05), (0.01, 0.1)])))
        elif kind == "wait":
            steps.append((kind, rng.choice([0.1, 0.5, 1.0])))
        else:
            steps.append((kind,))
    options = {"pre_vote": rng.random() < 0.5, "check_quorum": rng.random() < 0.5}
    replay(steps, n, seed, options)
