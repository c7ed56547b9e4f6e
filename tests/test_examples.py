"""The examples run, and tell the story they claim to."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing

import trioraft.testing

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(10))
def test_quickstart_story(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = load("quickstart")
    new_leader = trioraft.testing.run(quickstart.main, seed=seed)
    out = capsys.readouterr().out
    first = out.splitlines()[0].split()[0]
    assert new_leader in {"raft1", "raft2", "raft3"} - {first}
    assert new_leader == "raft3"  # as its docstring says: the newcomer wins its election
    assert "raft3 added" in out
    assert "redirects to" in out


def test_quickstart_script_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "leads now" in result.stdout


def test_counter_demo_on_virtual_time(capsys: pytest.CaptureFixture[str]) -> None:
    counter = load("counter")
    trio.run(counter.main, clock=trio.testing.MockClock(autojump_threshold=0))
    out = capsys.readouterr().out
    assert "is the leader" in out
    assert "stopping the leader" in out
    assert "is the new leader" in out
    finals = [line for line in out.splitlines() if "counter = " in line and "(" in line]
    assert len(finals) == 2
    assert all("counter = 45" in line for line in finals)


def test_kv_example(capsys: pytest.CaptureFixture[str]) -> None:
    kv = load("kv")
    trioraft.testing.run(kv.main, seed=0)
    out = capsys.readouterr().out
    assert "cas colour red->blue -> True" in out
    assert "cas colour red->green -> False" in out
    assert "rejected before the log: unknown command 'increment'" in out
    assert out.count("holds ['colour', 'size']") == 3


def test_kv_service_tests_pass() -> None:
    """The docs' worked example is a real pytest file: it must pass as users run it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_kv_service.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
