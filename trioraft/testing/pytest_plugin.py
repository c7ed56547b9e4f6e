"""trioraft's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures, all usable with pytest-trio's ``trio_mode``:

* ``trioraft_seed``: the seed for this test: ``--trioraft-seed=N`` if given, else one
  derived from the test's id (stable from run to run). A failing test's report says
  which seed it ran with and how to rerun it.
* ``open_raft_cluster``: :func:`trioraft.testing.open_cluster` with that seed, so a test
  reads ``async with open_raft_cluster(MyMachine, 3) as cluster: ...``.
* ``raft_run``: runs an async function deterministically with that seed
  (:func:`trioraft.testing.run`), for plain (non-async) tests.

A test's whole deterministic story then takes a few lines::

    def test_counter_survives_a_crash(raft_run):
        async def scenario():
            async with trioraft.testing.open_cluster(Counter, 3, seed=0) as cluster:
                ...
        raft_run(scenario)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import pytest

from ._cluster import derive_seed, open_cluster
from ._run import run

__all__ = ["open_raft_cluster", "raft_run", "trioraft_seed"]

T = TypeVar("T")
_SEED_KEY = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--trioraft-seed``."""
    group = parser.getgroup("trioraft")
    group.addoption(
        "--trioraft-seed",
        type=int,
        default=None,
        help="seed for trioraft's fixtures (default: derived from each test's id)",
    )


@pytest.fixture
def trioraft_seed(request: pytest.FixtureRequest) -> int:
    """The seed of this test (``--trioraft-seed``, or derived from the test id)."""
    given = request.config.getoption("--trioraft-seed")
    seed = int(given) if given is not None else derive_seed(request.node.nodeid)
    request.node.stash[_SEED_KEY] = seed
    return seed


@pytest.fixture
def open_raft_cluster(trioraft_seed: int) -> Callable[..., Any]:
    """:func:`trioraft.testing.open_cluster` with this test's seed."""
    return functools.partial(open_cluster, seed=trioraft_seed)


@pytest.fixture
def raft_run(trioraft_seed: int) -> Callable[..., Any]:
    """``raft_run(async_fn, *args)``: :func:`trioraft.testing.run` with this test's seed."""

    def runner(async_fn: Callable[..., Any], *args: Any) -> Any:
        return run(async_fn, *args, seed=trioraft_seed)

    return runner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Name the seed in the report of a failing test that used it."""
    outcome = yield
    report = outcome.get_result()
    seed = item.stash.get(_SEED_KEY, None)
    if seed is not None and report.failed:
        report.sections.append(
            ("trioraft", f"this test ran with seed {seed}; rerun it with --trioraft-seed={seed}")
        )
