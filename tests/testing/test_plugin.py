"""The pytest plugin: fixtures with a stable seed, and failures that name it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER = """
import trio
import trioraft
from trioraft.testing import Cluster

class Counter(trioraft.StateMachine):
    def __init__(self):
        self.value = 0
    def write(self, command):
        self.value += command
        return self.value
    def read(self, query):
        return self.value

SEEDS = []

async def test_cluster_fixture(open_raft_cluster, trioraft_seed, autojump_clock):
    SEEDS.append(trioraft_seed)
    async with open_raft_cluster(Counter, 3) as cluster:
        assert isinstance(cluster, Cluster) and cluster.seed == trioraft_seed
        leader = await cluster.wait_for_leader()
        assert await leader.write(2) == 2

def test_raft_run(raft_run):
    async def scenario():
        await trio.sleep(100)
        return trio.current_time()
    assert raft_run(scenario) == 100

def test_fails_with_seed(trioraft_seed):
    assert trioraft_seed < 0
"""


def test_fixtures_and_seed_in_failure_report(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*this test ran with seed * rerun it with --trioraft-seed=*"])


def test_seed_option_pins_the_seed(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "no:cacheprovider", "--trioraft-seed=7", "-k", "fails_with")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*rerun it with --trioraft-seed=7*"])


def test_derived_seed_is_stable(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER)
    first = pytester.runpytest("-p", "no:cacheprovider", "-k", "fails_with")
    second = pytester.runpytest("-p", "no:cacheprovider", "-k", "fails_with")
    seeds = [
        [line for line in r.stdout.lines if "--trioraft-seed=" in line] for r in (first, second)
    ]
    assert seeds[0] and seeds[0] == seeds[1]
