"""Changes of several servers at once in the testing toolkit (docs/testing.rst).

The ``SetMembers`` fault: checked when made, kept by JSON; it starts the servers it names
that never ran, and what it comes to (done, ``ChangeInProgress``, ``CatchUpFailed``...)
is logged and traced, never a failure of the run. ``FaultSchedule.random`` and the
Hypothesis strategies draw swaps, replacements of several voters and demotions. The
harness's own reasoning counts both voter sets while a configuration is joint: the
liveness check waits for a quorum of each. On the virtual clock, seeded.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, find, given, settings

import trioraft
import trioraft.testing as tt
from trioraft.testing import FaultSchedule, TraceRecorder, open_cluster, run
from trioraft.testing.strategies import fault_schedules, faults

from machines import Counter

NAMES = ["s1", "s2", "s3", "s4", "s5"]
SPARES = ["x1", "x2", "x3"]


def test_set_members_is_checked_when_made_and_kept_by_json() -> None:
    for make, words in (
        (lambda: tt.SetMembers(1, []), "at least one voter"),
        (lambda: tt.SetMembers(1, "s1"), "not the single string 's1'"),
        (lambda: tt.SetMembers(1, ["s1", "s1"]), "names a server twice"),
        (lambda: tt.SetMembers(1, ["s1"], learners=["s1"]), r"both voter and learner: \['s1'\]"),
        (lambda: tt.SetMembers(1, ["s1", 5]), "invalid server name: 5"),
        (lambda: tt.SetMembers(-1, ["s1"]), "a fault's time must be a finite number >= 0"),
        (lambda: FaultSchedule.from_json([{"kind": "set_members", "at": 1}]), "bad fault"),
    ):
        with pytest.raises(ValueError, match=words):
            make()
    fault = tt.SetMembers(1.5, ["s2", "s1"], learners=("x1",))
    assert fault.voters == ("s1", "s2")  # names sorted: one fault, one form
    assert str(fault) == "t=   1.500  set members: voters s1 s2, learners x1"
    schedule = FaultSchedule([fault, tt.SetMembers(2, ["x1"])])
    assert FaultSchedule.from_json(json.loads(json.dumps(schedule.to_json()))) == schedule
    assert eval(repr(schedule), {n: getattr(tt, n) for n in tt.__all__}) == schedule


Outcome = dict[str, object]


async def set_members_scenario() -> tuple[list[str], list[Outcome], list[list[str]], int]:
    log: list[str] = []
    async with open_cluster(Counter, 3, seed=6) as cluster:
        recorder = TraceRecorder(messages=False)
        recorder.attach(cluster)
        leader = await cluster.wait_for_leader()
        cluster.set_delay(0.002, 0.004)  # each step of a change takes a round trip
        me = leader.name
        one, two = sorted(set(cluster.names) - {me})
        schedule = FaultSchedule(
            [
                # Two voters out (one kept as a learner), two in: joint consensus.
                tt.SetMembers(0.1, [me, "x1", "x2"], learners=[one]),
                tt.SetMembers(0.101, [me, one, two]),  # the first is under way
                tt.Crash(1.0, "x2"),
                tt.SetMembers(1.1, [me, "x1", two]),  # x2 out, two back in: joint
                tt.SetMembers(2.0, [me, "x1", two, "x2"]),  # x2 is down: no catch-up
            ]
        )
        await schedule.run(cluster, log=lambda t, what: log.append(what))
        outcomes = [e for e in recorder.events if e["kind"] == "outcome"]
        status = leader.status()
        joint = sum(1 for c in cluster.monitor.figure3.configs.values() if c.joint)
    alias = {me: "ME", one: "ONE", two: "TWO"}

    def known(names: frozenset[str] | None) -> list[str]:
        return sorted(alias.get(n, n) for n in names or ())

    lines = [line.replace(me, "ME").replace(one, "ONE").replace(two, "TWO") for line in log]
    configuration = [known(status.voters), known(status.learners), known(status.joint_voters)]
    return lines, outcomes, configuration, joint


def test_set_members_starts_new_servers_and_records_what_each_change_came_to() -> None:
    """The fault starts the spares it names (they never ran), asks the leader; a change
    while another is under way, and one whose new voter is down, are outcomes logged and
    traced (``"outcome"`` events), and the run goes on; the configuration ends as the
    changes that were made left it, through joint configurations."""
    log, outcomes, configuration, joint = run(set_members_scenario, seed=6)
    changes = [line for line in log if not line.startswith("crash")]
    first = "set members: voters ME x1 x2, learners ONE"
    assert changes[0] == f"{first} (via ME); started x1 x2"
    assert changes[1] == "set members: voters ME ONE TWO (via ME)"
    assert changes[2].startswith("set members: voters ME ONE TWO: ChangeInProgress: ")
    assert changes[3] == f"{first}: done"
    assert changes[4:6] == [
        "set members: voters ME TWO x1 (via ME)",
        "set members: voters ME TWO x1: done",
    ]
    assert changes[6] == "set members: voters ME TWO x1 x2 (via ME)"
    assert changes[7].startswith("set members: voters ME TWO x1 x2: CatchUpFailed: ")
    assert len(changes) == 8
    assert [(e["call"], e["outcome"].split(":")[0]) for e in outcomes] == [
        ("set_members", "ChangeInProgress"),
        ("set_members", "done"),
        ("set_members", "done"),
        ("set_members", "CatchUpFailed"),
    ]
    assert configuration == [["ME", "TWO", "x1"], ["x2"], []]  # x2 left a learner
    assert joint == 2  # both multi-voter changes went through C_old,new


def shapes(schedule: FaultSchedule, start: list[str]) -> collections.Counter[str]:
    """What each SetMembers of ``schedule`` does to the configuration the one before
    it (in time) asked for."""
    seen: collections.Counter[str] = collections.Counter()
    voters = set(start)
    for fault in schedule.faults:
        assert isinstance(fault, tt.SetMembers)
        new, new_learners = set(fault.voters), set(fault.learners)
        out, come = voters - new, new - voters
        if len(out) == 1 and len(come) == 1:
            seen["swap"] += 1
        if len(out) >= 2 and len(come) >= 2:
            seen["replace several"] += 1
        if out & new_learners:
            seen["demote"] += 1
        seen["joint" if len(out | come) > 1 else "direct"] += 1
        voters = new
    return seen


def test_random_schedules_draw_changes_of_several_servers() -> None:
    """``FaultSchedule.random``: with ``kinds=["set_members"]``, each change starts from
    the configuration the one before it asked for: swaps, replacements of several
    voters and demotions, most of them through joint consensus; with ``membership``,
    that share of the faults are membership changes; without either, none is drawn (so
    the seeds of earlier runs keep their schedules)."""
    only = FaultSchedule.random(
        random.Random(5), NAMES, count=300, spares=SPARES, kinds=["set_members"]
    )
    seen = shapes(only, NAMES)
    assert min(seen["swap"], seen["replace several"], seen["demote"]) >= 30, seen
    assert seen["joint"] > 2 * seen["direct"], seen
    for fault in only.faults:
        assert isinstance(fault, tt.SetMembers)
        assert set(fault.voters) | set(fault.learners) <= set(NAMES + SPARES)
    for seed in range(300):  # every draw makes valid faults, whatever came before
        FaultSchedule.random(
            random.Random(seed), NAMES[:3], count=30, spares=SPARES[:1], membership=0.8
        )
    mixed = FaultSchedule.random(random.Random(5), NAMES, count=400, spares=SPARES, membership=0.5)
    kinds = collections.Counter(f.kind for f in mixed.faults)
    changes = kinds["set_members"] + kinds["add_server"] + kinds["remove_server"]
    assert 160 <= changes <= 240 and kinds["set_members"] >= changes // 3, kinds
    hit = {getattr(f, "name", None) for f in mixed.faults if f.kind in ("crash", "isolate")}
    assert hit & set(SPARES)  # the other faults hit spares too
    plain = FaultSchedule.random(random.Random(5), NAMES, count=400, spares=SPARES)
    assert "set_members" not in {f.kind for f in plain.faults}
    assert FaultSchedule.random(
        random.Random(5), NAMES, count=50, spares=SPARES, membership=1
    ).faults[0].kind in ("set_members", "add_server", "remove_server")


def test_random_membership_share_is_checked() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match=r"membership must be a share from 0 to 1, got 1\.5"):
        FaultSchedule.random(rng, NAMES, membership=1.5)
    with pytest.raises(TypeError, match="membership must be a share from 0 to 1, got True"):
        FaultSchedule.random(rng, NAMES, membership=True)
    with pytest.raises(ValueError, match="kinds has none of"):
        FaultSchedule.random(rng, NAMES, membership=0.5, kinds=["crash"])
    with pytest.raises(ValueError, match="kinds names no fault kind"):
        FaultSchedule.random(rng, NAMES, kinds=[])


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(faults(NAMES, spares=SPARES, kinds=["set_members"]))
def test_strategy_draws_valid_set_members(fault: tt.Fault) -> None:
    assert isinstance(fault, tt.SetMembers)
    assert fault.voters and not set(fault.voters) & set(fault.learners)
    assert set(fault.voters) | set(fault.learners) <= set(NAMES + SPARES)


def test_strategy_draws_swaps_replacements_and_demotions() -> None:
    """Each shape of multi-server change is among the strategy's draws, and it shrinks
    towards no change at all (the cluster's own servers voters, the spares out)."""
    strategy = faults(NAMES, spares=SPARES, kinds=["set_members"])

    def changed(f: tt.Fault) -> tuple[set[str], set[str], set[str]]:
        assert isinstance(f, tt.SetMembers)
        return set(NAMES) - set(f.voters), set(f.voters) - set(NAMES), set(f.learners)

    swap = find(strategy, lambda f: [len(s) for s in changed(f)[:2]] == [1, 1])
    several = find(strategy, lambda f: min(len(s) for s in changed(f)[:2]) >= 2)
    demoted = find(strategy, lambda f: len(changed(f)[0] & changed(f)[2]) >= 2)
    assert isinstance(swap, tt.SetMembers) and isinstance(several, tt.SetMembers)
    assert isinstance(demoted, tt.SetMembers)
    smallest = find(strategy, lambda f: True)
    assert isinstance(smallest, tt.SetMembers)
    assert (smallest.at, smallest.voters, smallest.learners) == (0.0, tuple(NAMES), ())


def test_strategies_draw_set_members_among_all_faults() -> None:
    """By default, the strategies' faults (so the property test's schedules) include
    ``SetMembers``."""
    assert find(faults(NAMES, spares=SPARES), lambda f: f.kind == "set_members")
    schedule = find(
        fault_schedules(NAMES, spares=SPARES, max_faults=4),
        lambda s: sum(f.kind == "set_members" for f in s.faults) >= 2,
    )
    assert len(schedule) == 2


async def test_while_joint_the_liveness_check_needs_a_quorum_of_both_sets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The cluster expects a leader after a recovery only while a quorum of the latest
    configuration's voters runs: of *both* sets while it is joint. Frozen in C_old,new
    ({me, d, e} entering, {a, b, c} leaving) with the two other old voters down, the
    new set has all three of its voters up, the old set one of three: no quorum. One
    old voter back makes one."""
    async with open_cluster(Counter, ["a", "b", "c"], seed=3) as cluster:
        leader = await cluster.wait_for_leader()
        me = leader.name
        others = sorted(set("abc") - {me})
        for name in "de":
            await cluster.start(name, initial_config=())
        cluster.set_delay(0.002, 0.004)

        async def change() -> None:
            with trio.move_on_after(5), contextlib.suppress(trioraft.RaftError):
                await leader.set_members([me, "d", "e"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change)
            while leader.status().joint_voters is None:
                await trio.sleep(0.0005)
            for name in others:
                await cluster.crash(name)
            assert cluster._quorum_running() is False
            described = cluster._describe(me)
            assert f"joint with={sorted('abc')}" in described
            await cluster.restart(others[0])
            assert leader.status().joint_voters == frozenset("abc")
            assert cluster._quorum_running() is True
            nursery.cancel_scope.cancel()
