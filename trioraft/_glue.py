"""Small runtime helpers: waiters, wake-up signals, and the state machine's hooks."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from ._codec import decode_value, encode_value
from ._core.messages import Config
from ._core.node import Role
from ._state_machine import StateMachine

__all__ = [
    "CallbackWaiter",
    "DueCallbacks",
    "Hooks",
    "Signal",
    "Waiter",
    "WriteCallback",
    "check_machine",
    "machine_snapshots",
]

logger = logging.getLogger("trioraft")

#: The state machine methods that must be plain functions.
_MACHINE_METHODS = ("write", "read", "snapshot", "restore")
_MACHINE_HOOKS = ("validate", "on_role_change", "on_membership_change", "on_session_expired")
#: Version of the snapshot payload: [version, machine state, other state by name].
SNAPSHOT_FORMAT = 1


class Waiter:
    """One caller waiting for the runtime to hand it a value or an exception (the first
    one handed wins). Built on Trio's low-level parking, not an Event: a write's reply
    is on the hot path, and this wakes the caller with one reschedule and nothing else."""

    __slots__ = ("_outcome", "_task", "started", "term")

    def __init__(self, term: int = 0, started: float = 0.0) -> None:
        self.term = term
        #: When the write was proposed (``trio.current_time()``), for its latency.
        self.started = started
        self._task: trio.lowlevel.Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None

    def resolve(self, value: Any) -> None:
        self._finish(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._finish(outcome.Error(error))

    def _finish(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    def wait(self) -> Awaitable[Any]:
        """``await waiter.wait()``: the value or exception handed over (cancellable: a
        cancelled caller stops waiting, and what is handed later is dropped). A plain
        function returning Trio's parking trap, so a write's wait adds no frame of its own
        to the chain each wake-up passes through."""
        result = self._outcome
        if result is not None:
            return _checkpoint_then(result)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self)  # self is the abort function

    def __call__(self, _: Any) -> trio.lowlevel.Abort:
        """Trio's abort function of the wait: the caller was cancelled (the waiter is its
        own, so that a wait allocates no bound method)."""
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


#: What :meth:`~trioraft.Server.submit` calls with a write's outcome.
WriteCallback = Callable[[outcome.Outcome[Any]], object]
#: Outcomes waiting for their callbacks, in the order they came.
DueCallbacks = list[tuple[WriteCallback, outcome.Outcome[Any]]]


class CallbackWaiter(Waiter):
    """A write with no task waiting: what is handed over is queued, with the callback to
    give it to, on ``due`` (the server calls the callbacks once the Ready that produced
    the outcomes has been carried out and advanced, never in the middle of one)."""

    __slots__ = ("_callback", "_due")

    def __init__(
        self, term: int, callback: WriteCallback, due: DueCallbacks, started: float = 0.0
    ) -> None:
        super().__init__(term, started)
        self._callback = callback
        self._due = due

    def _finish(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        self._due.append((self._callback, result))


async def _checkpoint_then(result: outcome.Outcome[Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return result.unwrap()


class Signal:
    """A wake-up flag for one task: ``set`` is never lost, ``wait`` consumes it."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()

    def clear(self) -> None:
        """Forget a ``set`` not yet consumed (its reason has been dealt with)."""
        if self._event.is_set():
            self._event = trio.Event()


def check_machine(instance: Any) -> None:
    """Raise :class:`TypeError` if ``instance`` cannot serve as a state machine: it
    lacks ``write`` or ``read``, or one of its methods is ``async def`` (they are called
    synchronously, in log order; a coroutine would be returned as the reply)."""
    kind = type(instance).__name__
    for method in ("write", "read"):
        if not callable(getattr(instance, method, None)):
            raise TypeError(f"{kind} has no {method}() method: it is not a state machine")
    for method in _MACHINE_METHODS + _MACHINE_HOOKS:
        fn = getattr(instance, method, None)
        if fn is not None and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(
                f"{kind}.{method} is async (async def): state machine methods are plain "
                "functions, called in log order on every server; make it a def"
            )


def machine_snapshots(instance: Any) -> bool:
    """Whether the state machine implements ``snapshot`` and ``restore``."""
    cls = type(instance)
    for method in ("snapshot", "restore"):
        fn = getattr(cls, method, None)
        if not callable(fn) or fn is getattr(StateMachine, method):
            return False
    return True


def encode_snapshot(machine_state: Any, extra: dict[str, Any] | None = None) -> bytes:
    """The bytes of a snapshot: the machine's state, and room for state that is not the
    machine's (client sessions, ...) by name."""
    return encode_value([SNAPSHOT_FORMAT, machine_state, extra or {}])


def decode_snapshot(data: bytes) -> tuple[Any, dict[str, Any]]:
    """The machine's state and the other state of a snapshot's bytes."""
    payload = decode_value(data)
    if not (isinstance(payload, list) and len(payload) == 3 and payload[0] == SNAPSHOT_FORMAT):
        raise ValueError("not a trioraft snapshot (unknown format)")
    return payload[1], payload[2]


class Hooks:
    """The optional state machine hooks, called defensively."""

    def __init__(self, machine: Any) -> None:
        self._machine = machine
        self._validate = getattr(machine, "validate", None)
        self._on_role = getattr(machine, "on_role_change", None)
        self._on_membership = getattr(machine, "on_membership_change", None)
        self._on_session_expired = getattr(machine, "on_session_expired", None)

    def validate(self, command: Any) -> None:
        if self._validate is not None:
            self._validate(command)

    def role_changed(self, role: Role) -> None:
        self._call(self._on_role, "on_role_change", role)

    def membership_changed(self, config: Config) -> None:
        voters, learners = frozenset(config.voters), frozenset(config.learners)
        self._call(self._on_membership, "on_membership_change", voters, learners)

    def session_expired(self, client: int) -> None:
        # Replicated: a state change, so exceptions are not swallowed silently (a
        # deterministic machine raises identically everywhere); they are logged.
        self._call(self._on_session_expired, "on_session_expired", client)

    @staticmethod
    def _call(hook: Callable[..., Any] | None, name: str, *args: Any) -> None:
        """Call ``hook`` if the machine has it; what it raises is logged, never raised
        into the server."""
        if hook is not None:
            try:
                hook(*args)
            except Exception:
                logger.exception("%s(%s) raised", name, ", ".join(map(str, args)))
