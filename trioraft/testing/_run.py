"""Deterministic runs: one place that touches Trio's private scheduler switches."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio.testing

from .._core.options import check_seconds

__all__ = ["run", "scheduler_hooks_available"]

T = TypeVar("T")

# Trio randomizes the order in which it runs ready tasks. It has a switch, made for its
# Hypothesis plugin, that makes that order a function of a private random.Random. We set
# the switch and seed that generator around one trio.run. These two names are private:
# tests/testing/test_determinism.py fails loudly if a Trio release renames them.
_FLAG = "_ALLOW_DETERMINISTIC_SCHEDULING"
_RNG = "_r"


def _run_module() -> Any:
    return trio._core._run


def scheduler_hooks_available() -> bool:
    """Whether this Trio still has the private switches deterministic runs rely on."""
    module = _run_module()
    return hasattr(module, _FLAG) and hasattr(getattr(module, _RNG, None), "seed")


class HangError(TimeoutError):
    """A deterministic run did not finish within its ``hang_timeout`` of real time: it
    hangs, or livelocks (tasks that never all block stop the virtual clock, so no
    ``trio.fail_after`` can fire)."""


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    seed: int,
    hang_timeout: float | None = None,
) -> T:
    """Run ``async_fn(*args)`` in a fresh ``trio.run`` on a virtual clock, deterministically.

    The clock is ``trio.testing.MockClock(autojump_threshold=0)``: whenever every task is
    blocked, time jumps to the next deadline, so seconds of timeouts take no wall time.
    Trio's scheduling order is derived from ``seed``. Two calls with the same function,
    arguments and seed behave identically, in the same process or another, provided the
    servers and the network were given seeds too (and nothing reads the wall clock or
    global randomness). Returns what ``async_fn`` returns.

    ``hang_timeout`` (seconds of real time) guards against runs that never end: when it
    passes, the run is cancelled and :class:`HangError` raised. It never changes what a
    run that finishes in time does.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if hang_timeout is not None:
        check_seconds("hang_timeout", hang_timeout)
    if not scheduler_hooks_available():
        raise RuntimeError(
            "this Trio version lacks the private scheduler switches trioraft.testing.run "
            f"uses ({_FLAG}, {_RNG}); deterministic runs are unavailable"
        )
    module = _run_module()
    old_flag = getattr(module, _FLAG)
    rng = getattr(module, _RNG)
    old_state = rng.getstate()
    setattr(module, _FLAG, True)
    rng.seed(seed)
    try:
        if hang_timeout is None:
            return trio.run(async_fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))
        return trio.run(
            _guarded,
            async_fn,
            args,
            hang_timeout,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    finally:
        setattr(module, _FLAG, old_flag)
        rng.setstate(old_state)


async def _guarded(
    async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], hang_timeout: float
) -> T:
    token = trio.lowlevel.current_trio_token()
    scope = trio.CancelScope()
    done = threading.Event()

    def watchdog() -> None:
        if not done.wait(hang_timeout):
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)

    thread = threading.Thread(target=watchdog, name="trioraft-hang-guard", daemon=True)
    thread.start()
    try:
        with scope:
            return await async_fn(*args)
        raise HangError(
            f"the run did not finish within {hang_timeout:g} s of real time (a hang or a "
            "livelock); it was cancelled"
        )
    finally:
        done.set()
