"""The write path: what :meth:`~trioraft.Server.write` and
:meth:`~trioraft.Server.submit` do between their caller and the core.

Owns: a command's checks (the machine's ``validate``, the network's and the storage's
value checks, as one call), its proposal to the core, and the waiter its caller parks on
(or the callback its outcome goes to). The hottest path of all, a call per write: in
the compiled build it is native code (``trioraft._build.COMPILED``). May not touch: any
Raft decision (the node decides, through ``propose``), the node's internals, the tasks
but to ask the driver to carry out a Ready at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from .._clock import Clock
from .._core.node import RaftNode
from .._core.types import Role, TransferInProgress
from .._errors import NotLeader
from .driver import FLUSH_EVERY, Driver
from .waiters import CallbackWaiter, Signal, Waiter, Waiters, WriteCallback
from .watch import Watch

__all__ = ["WritePath"]

#: Raises what a write of this command must not get past (``None``: nothing to check).
Check = Callable[[Any], object] | None


class WritePath:
    """A server's writes, from the call to the waiter (one per server)."""

    def __init__(
        self,
        node: RaftNode,
        parts: tuple[Waiters, Watch, Driver, Signal],
        check: Check,
        local_clock: Clock,
        wait_out_transfer: Callable[[], Any],
        trio_time: bool,
    ) -> None:
        self._node = node
        waiters, self._watch, self._driver, self._kicked = parts
        self._waiters = waiters
        self._writes = waiters.writes
        self._check = check
        self._local_clock = local_clock
        self._wait_out_transfer = wait_out_transfer
        #: The server reads Trio's clock: a write's start is also the core's ``now``.
        self._trio_time = trio_time
        #: ``trio.current_time``; the run's clock's own method once the server runs (the
        #: same reading, two calls fewer per write).
        self.trio_now: Callable[[], float] = trio.current_time

    async def write(self, command: Any) -> Any:
        """:meth:`trioraft.Server.write`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._waiters.check_running()
        node = self._node
        if node.role is not Role.LEADER:
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise NotLeader(node.leader)
        check = self._check
        if check is not None:
            check(command)
        while True:
            try:
                started = self.trio_now()  # the write's latency is real time
                entry = node.propose(
                    command, started if self._trio_time else self._local_clock.now()
                )
                break
            except TransferInProgress:
                await self._wait_out_transfer()  # §3.10: or NotLeader, handed over
            except NotLeader:
                await trio.lowlevel.cancel_shielded_checkpoint()
                raise
        watch = self._watch
        if watch.tracer is not None:
            watch.trace("propose", index=entry.index, term=entry.term)
        # The waiters' wait_for, inlined: the hottest wait of all, one coroutine frame
        # fewer. A proposal moves no deadline: wake the ready loop, which follows the timer.
        index = entry.index
        waiter = Waiter(entry.term, started)
        writes = self._writes
        writes[index] = waiter
        self._kicked.set()
        driver = self._driver
        if node.unsent_entries >= FLUSH_EVERY and driver.immediate and not driver.busy:
            driver.ready_now()  # replicate these now: do not wait for the other writers
        try:
            return await waiter.wait()
        finally:
            if writes.get(index) is waiter:
                del writes[index]

    def submit(self, command: Any, callback: WriteCallback) -> int:
        """:meth:`trioraft.Server.submit`."""
        self._waiters.check_running()
        if not callable(callback):  # else the outcome would be lost, and only logged
            raise TypeError(f"callback must be callable, got {callback!r}")
        node = self._node
        if node.role is not Role.LEADER:
            raise NotLeader(node.leader)
        check = self._check
        if check is not None:
            check(command)
        started = self.trio_now()
        try:
            entry = node.propose(command, started if self._trio_time else self._local_clock.now())
        except TransferInProgress:
            raise NotLeader(None, "leadership is being handed over; retry") from None
        watch = self._watch
        if watch.tracer is not None:
            watch.trace("propose", index=entry.index, term=entry.term)
        self._writes[entry.index] = CallbackWaiter(
            entry.term, callback, self._waiters.callbacks_due, started
        )
        self._kicked.set()  # as for write(): a proposal moves no deadline
        return entry.index
