"""Random fault schedules over whole clusters: Raft's safety properties and liveness.

Each example is one deterministic run (``trioraft.testing.check_fault_schedule``) of 3 to
5 servers (and two spares outside the cluster) under a Hypothesis-drawn fault schedule:
partitions, isolations, heals, loss, delay, duplication, crashes, restarts, elections,
transfers, membership changes; while a client writes. The cluster's InvariantMonitor
checks election safety, log matching, leader completeness and state machine safety as it
goes; after the final recovery a leader must be elected within the liveness bound, every
acknowledged write must be applied exactly once, and every server must agree on the
applied sequence.

A failure prints the seed, the schedule and a one-line command that reproduces it (from
the repository root) at once, on stderr; shrinking is then bounded in time, so one
failure never stalls CI for long.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trioraft.testing import (
    Crash,
    FaultSchedule,
    RemoveServer,
    check_fault_schedule,
)
from trioraft.testing._scenario import SPARES
from trioraft.testing.strategies import fault_schedules

Scenario = tuple[FaultSchedule, int, int, dict[str, Any]]

#: Real seconds spent shrinking after the first failure; then every further example
#: passes at once, so Hypothesis stops and reports the smallest failure found so far.
SHRINK_BUDGET = 60.0
_first_failure: list[float] = []


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(3, 5))
    names = [f"s{i}" for i in range(1, n + 1)]
    schedule = draw(fault_schedules(names, duration=6.0, max_faults=15, spares=SPARES))
    seed = draw(st.integers(0, 2**32 - 1))
    options = {"pre_vote": draw(st.booleans()), "check_quorum": draw(st.booleans())}
    return schedule, n, seed, options


def bounded(case: Scenario) -> None:
    """Run one scenario; report the first failure at once; bound shrinking in time."""
    if _first_failure and time.monotonic() - _first_failure[0] > SHRINK_BUDGET:
        return
    schedule, n, seed, options = case
    try:
        check_fault_schedule(schedule, servers=n, seed=seed, options=options)
    except AssertionError as exc:
        if not _first_failure:
            _first_failure.append(time.monotonic())
            print(f"\nfirst failing scenario (before shrinking):\n{exc}\n", file=sys.__stderr__)
        raise


#: The schedule that left a cluster without a leader for good: a leader removed by an
#: uncommitted entry never campaigned (dissertation §4.2.2).
REMOVED_LEADER = FaultSchedule(
    (
        RemoveServer(0.164, "s2"),
        Crash(0.165, "s1"),
        RemoveServer(0.172, "s3"),
        Crash(0.263, "s3"),
    )
)


# At least 200 examples (about 5 s): fewer missed a deliberately broken vote rule.
@settings(max_examples=max(200, settings.default.max_examples))
@example((REMOVED_LEADER, 3, 84, {"pre_vote": True, "check_quorum": True}))
@given(scenarios())
def test_safety_and_liveness_under_random_faults(case: Scenario) -> None:
    bounded(case)


def test_removed_leader_schedule_elects_a_leader() -> None:
    """The regression of the liveness bug, under every option combination."""
    for pre_vote in (True, False):
        for check_quorum in (True, False):
            options = {"pre_vote": pre_vote, "check_quorum": check_quorum}
            check_fault_schedule(REMOVED_LEADER, servers=3, seed=84, options=options)


SLOW_SEEDS = range(200) if os.environ.get("TRIORAFT_SLOW") else range(0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_long_random_runs(seed: int) -> None:
    """200 longer schedules (40 faults over 20 s): set TRIORAFT_SLOW=1 to run them."""
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    names = [f"s{i}" for i in range(1, n + 1)]
    schedule = FaultSchedule.random(rng, names, duration=20, count=40, spares=SPARES)
    options = {"pre_vote": rng.random() < 0.5, "check_quorum": rng.random() < 0.5}
    check_fault_schedule(schedule, servers=n, seed=seed, options=options)
