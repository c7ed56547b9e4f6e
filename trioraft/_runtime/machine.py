"""The user's state machine as the runtime sees it: whether it can serve, whether it
snapshots, its optional hooks, and the bytes of a snapshot.

Owns: the checks of a machine (:func:`check_machine`), the snapshot payload's format
(the machine's state and the runtime's own, such as client sessions), and calling the
hooks defensively (:class:`Hooks`). May not touch: the node, the tasks, the callers;
it calls no ``write``/``read`` (that is :mod:`.apply`'s and the handle's).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._codec import decode_value, encode_value
from .._core.messages import Config
from .._core.types import Role
from .._state_machine import StateMachine

__all__ = [
    "SNAPSHOT_FORMAT",
    "Hooks",
    "check_machine",
    "decode_snapshot",
    "encode_snapshot",
    "machine_snapshots",
]

logger = logging.getLogger("trioraft")

#: The state machine methods that must be plain functions.
_MACHINE_METHODS = ("write", "read", "snapshot", "restore")
_MACHINE_HOOKS = ("validate", "on_role_change", "on_membership_change", "on_session_expired")
#: Version of the snapshot payload: [version, machine state, other state by name].
SNAPSHOT_FORMAT = 1


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
        self._on_role = getattr(machine, "on_role_change", None)
        self._on_membership = getattr(machine, "on_membership_change", None)
        self._on_session_expired = getattr(machine, "on_session_expired", None)

    def role_changed(self, role: Role) -> None:
        """Tell the machine its server's role changed (``on_role_change``)."""
        self._call(self._on_role, "on_role_change", role)

    def membership_changed(self, config: Config) -> None:
        """Tell the machine a configuration entry was applied (``on_membership_change``)."""
        voters, learners = frozenset(config.voters), frozenset(config.learners)
        self._call(self._on_membership, "on_membership_change", voters, learners)

    def session_expired(self, client: int) -> None:
        """Tell the machine a client session expired (``on_session_expired``)."""
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
