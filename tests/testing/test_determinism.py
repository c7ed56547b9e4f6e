"""Same seed, same run: in one process and across processes with different hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

import trioraft.testing

HERE = Path(__file__).resolve().parents[1]  # tests/, where the scenario lives


def test_trio_still_has_the_scheduler_switches() -> None:
    """trioraft.testing.run relies on two private names in trio._core._run. If a Trio
    release renames them, this fails loudly (deterministic runs would silently not be)."""
    module = trio._core._run
    assert hasattr(module, "_ALLOW_DETERMINISTIC_SCHEDULING")
    assert hasattr(module._r, "seed") and hasattr(module._r, "shuffle")
    assert trioraft.testing.scheduler_hooks_available()


def test_run_restores_trio_state() -> None:
    module = trio._core._run
    flag = module._ALLOW_DETERMINISTIC_SCHEDULING
    state = module._r.getstate()

    async def noop() -> int:
        await trio.sleep(1)
        return 7

    assert trioraft.testing.run(noop, seed=3) == 7
    assert flag == module._ALLOW_DETERMINISTIC_SCHEDULING
    assert module._r.getstate() == state


def test_run_uses_virtual_time() -> None:
    async def long_sleep() -> float:
        start = trio.current_time()
        await trio.sleep(3600)
        return trio.current_time() - start

    assert trioraft.testing.run(long_sleep, seed=0) == 3600


def run_scenario(seed: int, hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, str(HERE / "determinism_scenario.py"), str(seed)],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_same_seed_same_trace_across_processes() -> None:
    first = run_scenario(5, "1")
    second = run_scenario(5, "2")
    lines = first.splitlines()
    assert len(lines) > 200  # elections, commits and applies under faults
    assert sum('"role"' in line for line in lines) > 10
    assert first == second


def test_same_seed_same_trace_in_process() -> None:
    import determinism_scenario

    assert determinism_scenario.main(11) == determinism_scenario.main(11)
    assert determinism_scenario.main(11) != determinism_scenario.main(12)
