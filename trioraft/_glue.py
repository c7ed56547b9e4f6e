"""Small runtime helpers, kept so that ``trioraft._glue`` still imports: they now live in
the runtime's rooms, :mod:`trioraft._runtime.waiters` (waiters, wake-up signals) and
:mod:`trioraft._runtime.machine` (the state machine's checks, hooks and snapshots)."""

from ._runtime.machine import (
    SNAPSHOT_FORMAT,
    Hooks,
    check_machine,
    decode_snapshot,
    encode_snapshot,
    machine_snapshots,
)
from ._runtime.waiters import CallbackWaiter, DueCallbacks, Signal, Waiter, WriteCallback

__all__ = [
    "SNAPSHOT_FORMAT",
    "CallbackWaiter",
    "DueCallbacks",
    "Hooks",
    "Signal",
    "Waiter",
    "WriteCallback",
    "check_machine",
    "decode_snapshot",
    "encode_snapshot",
    "machine_snapshots",
]
