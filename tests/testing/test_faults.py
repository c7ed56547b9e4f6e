"""The fault-schedule toolkit of trioraft.testing (docs/testing.rst, "Fault schedules").

Schedules are sorted, printable and rebuildable (repr, JSON); ``FaultSchedule.random`` and
the Hypothesis strategies draw valid, reproducible schedules; ``run`` inflicts each fault
on a cluster at its virtual time, and ``Recover`` undoes them. These are the toolkit's
promises, not Raft rules: the clusters here only serve as targets.
"""

from __future__ import annotations

import functools
import json
import random

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import trioraft.testing as tt
from trioraft import Role
from trioraft.testing import FaultSchedule, open_cluster, run
from trioraft.testing.strategies import fault_schedules, faults

from machines import Counter

SCHEDULE = FaultSchedule(
    [
        tt.Partition(1.0, (["s1", "s2"], ["s3"])),
        tt.Heal(0.2),
        tt.Loss(2.0, 0.2),
        tt.Delay(2.5, 0.0, 0.05),
        tt.Crash(3.0, "s2"),
        tt.Restart(4.0, "s2"),
        tt.IsolateLeader(4.5),
        tt.CrashLeader(5.0),
        tt.AddServer(5.5, "x1", voter=False),
        tt.RemoveServer(6.0, "x1"),
        tt.TransferLeadership(6.5),
        tt.TriggerElection(7.0, "s3"),
        tt.Isolate(7.5, "s1"),
        tt.SetMembers(8.0, ["s3", "x1", "s2"], learners=["s1"]),
    ]
)


def test_schedule_is_sorted_and_printable() -> None:
    """A schedule sorts its faults by time and prints one fault a line, in words; ``end`` is
    the last fault's time, and an empty schedule prints "(no faults)"."""
    assert [f.at for f in SCHEDULE.faults] == sorted(f.at for f in SCHEDULE.faults)
    text = str(SCHEDULE)
    lines = text.splitlines()
    assert len(lines) == len(SCHEDULE) == 14
    assert lines[0].endswith("heal")
    assert "partition [s1 s2] | [s3]" in text
    assert "crash the leader" in text and "add x1 as learner" in text
    assert lines[-1].endswith("set members: voters s2 s3 x1, learners s1")
    assert SCHEDULE.end == 8.0
    assert str(FaultSchedule()) == "(no faults)"


def test_schedule_repr_and_json_rebuild_it() -> None:
    """``repr(schedule)`` is Python that rebuilds an equal schedule, and ``to_json`` /
    ``from_json`` round-trip it through real JSON."""
    namespace = {name: getattr(tt, name) for name in tt.__all__}
    assert eval(repr(SCHEDULE), namespace) == SCHEDULE
    data = json.loads(json.dumps(SCHEDULE.to_json()))
    assert FaultSchedule.from_json(data) == SCHEDULE


def test_times_are_whole_milliseconds() -> None:
    """A fault's time is rounded to whole milliseconds."""
    assert tt.Heal(1.23456).at == 1.235


def test_random_schedule_is_seeded() -> None:
    """``FaultSchedule.random`` depends only on its ``random.Random``: the same seed gives the
    same schedule, within the duration, and ``kinds`` limits the faults it draws."""
    names = ["s1", "s2", "s3"]
    a = FaultSchedule.random(random.Random(4), names, duration=5, count=8, spares=["x1"])
    b = FaultSchedule.random(random.Random(4), names, duration=5, count=8, spares=["x1"])
    assert a == b and len(a) == 8
    assert all(0 <= f.at <= 5 for f in a.faults)
    only = FaultSchedule.random(random.Random(1), names, count=20, kinds=["crash", "restart"])
    assert {f.kind for f in only.faults} <= {"crash", "restart"}


async def apply_schedule() -> list[tuple[float, str]]:
    log: list[tuple[float, str]] = []
    async with open_cluster(Counter, 3, seed=5) as cluster:
        await cluster.start("x1", initial_config=())
        await cluster.wait_for_leader()
        start = trio.current_time()

        def record(t: float, what: str) -> None:
            log.append((round(t - start, 3), what))

        schedule = FaultSchedule(
            [
                tt.Partition(0.5, (["s1"], ["s2", "s3"])),
                tt.Heal(1.0),
                tt.Crash(1.5, "s2"),
                tt.Restart(2.0, "s2"),
                tt.AddServer(3.0, "x1", voter=False),
                tt.Loss(4.0, 0.1),
                tt.Delay(4.1, 0.001, 0.002),
            ]
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(schedule.run, cluster, log=record))
            await trio.sleep(0.75)
            assert not cluster.network.connected("s1", "s2")
            assert cluster.network.connected("s2", "s3")
            await trio.sleep(1.0)  # t = 1.75: s2 crashed
            assert "s2" not in cluster.servers
            await trio.sleep(0.5)  # t = 2.25: restarted
            assert "s2" in cluster.servers
        assert cluster.network.loss == 0.1
        assert cluster.network.delay == (0.001, 0.002)
        leader = await cluster.wait_for_leader()
        assert leader.status().learners == {"x1"}
        assert cluster["x1"].status().role is Role.FOLLOWER
    return log


def test_schedule_runs_on_time() -> None:
    """``run`` inflicts each fault at its virtual time counted from the call (partition, heal,
    crash, restart, add a learner, loss, delay), each takes effect on the cluster, and the
    log says what was done, and what the call in the background (the addition) came to."""
    log = run(apply_schedule, seed=1)
    assert [t for t, _ in log] == [0.5, 1.0, 1.5, 2.0, 3.0, 3.0, 4.0, 4.1]
    assert log[2][1] == "crash s2"
    assert log[4][1].startswith("add x1 as learner (via ")
    assert log[5][1] == "add x1 as learner: done"


@given(fault_schedules(["a", "b", "c"], duration=3.0, max_faults=6, spares=["z"]))
def test_strategy_generates_valid_schedules(schedule: FaultSchedule) -> None:
    """``fault_schedules`` draws at most ``max_faults`` faults, sorted and within the duration,
    naming only the given servers and spares, and every schedule round-trips through JSON."""
    assert len(schedule) <= 6
    assert all(0 <= f.at <= 3.0 for f in schedule.faults)
    assert [f.at for f in schedule.faults] == sorted(f.at for f in schedule.faults)
    for fault in schedule.faults:
        for name in ("name", "target"):
            value = getattr(fault, name, None)
            assert value in (None, "a", "b", "c", "z")
        if isinstance(fault, tt.SetMembers):
            assert fault.voters and set(fault.voters + fault.learners) <= set("abcz")
    assert FaultSchedule.from_json(schedule.to_json()) == schedule


@given(st.data())
def test_strategy_kinds_can_be_limited(data: st.DataObject) -> None:
    """``faults(kinds=...)`` draws only faults of those kinds."""
    fault = data.draw(faults(["a", "b"], kinds=["loss", "delay"]))
    assert fault.kind in ("loss", "delay")


async def recover_scenario() -> tuple[list[str], bool]:
    async with open_cluster(Counter, 3, seed=9) as cluster:
        await cluster.wait_for_leader()
        schedule = FaultSchedule(
            [
                tt.Crash(0.1, "s1"),
                tt.Loss(0.2, 0.5),
                tt.Isolate(0.3, "s2"),
                tt.Recover(1.0),
            ]
        )
        await schedule.run(cluster)
        running = sorted(cluster.servers)
        healthy = (
            cluster.network.loss == 0
            and cluster.network.delay == (0.0, 0.0)
            and cluster.network.connected("s2", "s3")
        )
        await cluster.wait_for_leader()
    return running, healthy


def test_recover_restarts_and_heals() -> None:
    """``Recover`` restarts every crashed server, heals partitions and isolation, and clears
    loss and delay; the cluster then elects a leader again."""
    running, healthy = run(recover_scenario, seed=2)
    assert running == ["s1", "s2", "s3"]
    assert healthy


def test_random_schedule_with_recoveries() -> None:
    """``FaultSchedule.random(recover_every=2.5)`` adds a ``Recover`` at every multiple of 2.5
    seconds up to the duration."""
    schedule = FaultSchedule.random(random.Random(0), ["a", "b"], duration=10, recover_every=2.5)
    recoveries = [f.at for f in schedule.faults if isinstance(f, tt.Recover)]
    assert recoveries == [2.5, 5.0, 7.5, 10.0]


async def faults_that_cannot_happen() -> list[str]:
    async with open_cluster(Counter, 3, seed=3) as cluster:
        log = [
            await tt.CrashLeader(0).apply(cluster, cluster.nursery),  # before any election
            await tt.IsolateLeader(0).apply(cluster, cluster.nursery),
            await tt.Restart(0, "s1").apply(cluster, cluster.nursery),  # it runs
        ]
        leader = await cluster.wait_for_leader()
        await cluster.start("l1", initial_config=())
        await leader.add_server("l1", voter=False)
        log.append(await tt.TriggerElection(0, "l1").apply(cluster, cluster.nursery))
        log.append(await tt.CrashLeader(0).apply(cluster, cluster.nursery))
        log.append(await tt.Crash(0, leader.name).apply(cluster, cluster.nursery))
        log.append(await tt.TriggerElection(0, leader.name).apply(cluster, cluster.nursery))
        assert leader.name not in cluster.servers
    return log


def test_faults_that_cannot_happen_say_why() -> None:
    """A fault on a server that is not in a state to take it, or on a leader when there is
    none, changes nothing and says why in the log; a leader fault names the leader it hit."""
    log = run(faults_that_cannot_happen, seed=3)
    assert log[:3] == [
        "crash the leader: there is none",
        "isolate the leader: there is none",
        "restart s1: not crashed",
    ]
    assert log[3].startswith("election on l1: ") and "vot" in log[3]
    assert log[4].startswith("crash the leader s")
    crashed = log[4].rsplit(" ", 1)[1]
    assert log[5:] == [f"crash {crashed}: not running", f"election on {crashed}: not running"]


def test_a_fault_with_bad_values_is_refused_when_it_is_made() -> None:
    """Loss(0.5, rate=5) used to be made and printed, then failed in the middle of a
    run, after the faults before it; from_json([{}]) raised a bare KeyError."""
    for make, words in (
        (lambda: tt.Loss(0.5, rate=5), r"rate must be a number in \[0, 1\], got 5"),
        (lambda: tt.Duplication(0.5, rate=-0.1), "rate must be a number in"),
        (lambda: tt.Delay(1, 5, 1), r"delay low \(5\) is above high \(1\)"),
        (lambda: tt.Delay(1, -1, 1), "delays must be finite numbers >= 0, got -1"),
        (lambda: tt.Crash(-1, "s1"), "a fault's time must be a finite number >= 0"),
        (lambda: FaultSchedule.from_json([{}]), "must be a dict with a 'kind'"),
        (lambda: FaultSchedule.from_json([{"kind": "loss", "speed": 1}]), "bad fault"),
    ):
        with pytest.raises(ValueError, match=words):
            make()
    with pytest.raises(TypeError, match="name must be a server name, got 5"):
        tt.Isolate(1, name=5)  # type: ignore[arg-type]
    schedule = FaultSchedule([tt.Loss(0.5, rate=0.2), tt.Delay(1, 0.0, 0.01), tt.Crash(2, "s1")])
    assert FaultSchedule.from_json(schedule.to_json()) == schedule
