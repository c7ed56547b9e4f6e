"""The soak runner: seeded randomized runs that check invariants and linearizability,
and that catch a state machine which is only wrong under faults."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
import trio

import trioraft
from trioraft.testing import Model
from trioraft.testing.soak import main, soak, soak_seed


def test_command_line_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--seeds", "2", "--servers", "3", "--duration", "5"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "2/2 seeds passed" in out
    assert "virtual s in" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--seeds", "1", "--servers", "3", "--duration", "3", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0
    assert report["seeds"] == 1 and report["failed"] == []
    assert report["results"][0]["ok"] is True
    assert report["results"][0]["operations"] > 0


def test_same_seed_same_run() -> None:
    first = soak_seed(3, servers=3, duration=5)
    second = soak_seed(3, servers=3, duration=5)
    assert first.ok and second.ok
    assert (first.operations, first.unknown, first.virtual_s) == (
        second.operations,
        second.unknown,
        second.virtual_s,
    )


class ClockedCounter(trioraft.StateMachine):
    """BROKEN on purpose: it drops commands that look stale by the clock at apply time.

    In a healthy cluster every replica applies a command within moments of its being
    sent, so it behaves like a counter. A replica that applies late (it was partitioned
    away, or it restarted and replays its log) silently skips those commands and its state
    diverges; once it leads, its answers contradict what clients saw.
    """

    def __init__(self) -> None:
        self.value = 0

    def write(self, command: Any) -> Any:
        amount, sent_at = command
        if trio.current_time() - sent_at <= 1.0:
            self.value += amount
        return self.value

    def read(self, query: Any) -> Any:
        return self.value


class Counter(ClockedCounter):
    """The same service done right: the state machine ignores the clock."""

    def write(self, command: Any) -> Any:
        self.value += command[0]
        return self.value


def stamped_workload(rng: random.Random) -> tuple[str, Any]:
    if rng.random() < 2 / 3:
        return "write", (rng.randint(1, 10**9), trio.current_time())
    return "read", None


def model() -> Model:
    def step(state: int, kind: str, value: Any) -> tuple[int, int]:
        if kind == "write":
            state += value[0]
        return state, state

    return Model.from_function(step, 0)


OPTIONS: dict[str, Any] = {
    "servers": 3,
    "duration": 15.0,
    "workload": stamped_workload,
    "model": model(),
}


def test_broken_state_machine_is_caught_and_reported() -> None:
    out = io.StringIO()
    broken = soak(range(6), out=out, machine=ClockedCounter, **OPTIONS)
    failing = [r for r in broken if not r.ok]
    assert failing, out.getvalue()  # some fault schedule exposes the bug
    report = out.getvalue()
    first = failing[0]
    assert f"seed {first.seed} failed" in report
    assert "not linearizable" in first.failure
    assert "schedule:" in report and "trace tail:" in report
    assert f"--seed-start {first.seed} --seeds 1" in report
    # The same schedules pass with the clock-free state machine: the faults are not to blame.
    fixed = soak([r.seed for r in failing], machine=Counter, **OPTIONS)
    assert all(r.ok for r in fixed), [r.failure for r in fixed]


def test_client_mode_writes_exactly_once() -> None:
    """Client mode: open_client clients write through sessions; the runner checks every
    reply is distinct (each write applied once) and the history linearizable."""
    for seed in range(3):
        result = soak_seed(seed, servers=3, duration=10, sessions=True)
        assert result.ok, result.failure
        assert result.operations > 20
    # A late network duplicate of an acknowledged write was applied again (the session
    # table judged it by the lowest number it carried itself, not the session's).
    result = soak_seed(30308, servers=3, sessions=True)
    assert result.ok, result.failure


def test_spread_reads_stay_linearizable() -> None:
    """Spread reads: servers run with follower_reads and lease_reads and clients read
    from any running server, through the fault schedules; the histories (reads from
    followers, lease reads on leaders) are linearizable."""
    for seed in range(3):
        result = soak_seed(seed, servers=3, duration=10, spread_reads=True)
        assert result.ok, result.failure
        assert result.operations > 20
