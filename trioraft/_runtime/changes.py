"""What callers propose besides a plain write, as they wait for it: membership changes
(adding a server, a learner caught up first, §4.2.1; ``set_members``, joint consensus,
§4.3; removing a server), leadership transfer (§3.10) and the writes it holds up, and
the entries of client sessions (§6.3).

Owns: these calls' waits (bounded where the API bounds them) and the errors they raise
from what the core reports: a catch-up's state, a change's phase, a transfer's outcome,
whether a new learner has answered, a server of another cluster. May not touch: how a
change proceeds or when it has failed (the core decides and reports; this room waits
and raises), the tasks, the machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import trio

from .._clock import Clock
from .._core.confchange import CatchUpState, ChangePhase, MembershipChange
from .._core.messages import Config, Entry, EntryKind
from .._core.node import RaftNode
from .._core.types import LeaderNotReady, Role, TransferInProgress, TransferOutcome
from .._errors import (
    CatchUpFailed,
    NotLeader,
    OutcomeUnknown,
    ServerStopped,
    StoppedOutcomeUnknown,
    TransferFailed,
    WrongCluster,
)
from .._options import ServerOptions
from .waiters import Waiters

__all__ = ["Changes"]


class Changes:
    """The membership changes and transfers of one server, as its callers wait."""

    def __init__(
        self,
        name: str,
        node: RaftNode,
        options: ServerOptions,
        clock: Clock,
        waiters: Waiters,
        kick: Callable[[], None],
        learn_addresses: Callable[[Mapping[str, str]], None],
        check_value: Callable[[Any], None] | None,
    ) -> None:
        self._name = name
        self._node = node
        self._options = options
        self._clock = clock
        self._waiters = waiters
        self._kick = kick
        self._learn_addresses = learn_addresses
        self._check_value = check_value

    async def _prologue(self) -> None:
        await trio.lowlevel.checkpoint()
        self._waiters.check_running()

    async def add_server(self, name: str, voter: bool, address: str | None) -> None:
        """:meth:`trioraft.Server.add_server`."""
        await self._prologue()
        if not isinstance(voter, bool):  # voter="no" would add a voter
            raise TypeError(f"voter must be True or False, got {voter!r}")
        node = self._node
        if address is not None:
            self._learn_addresses({name: address})
        if not voter:
            await self.change_config(lambda: node.add_server_config(name, False, address))
            await self._first_answer(name)
            return
        if name not in node.status().config.learners:
            node.add_server_config(name, True, address)  # validates before any change
            await self.change_config(lambda: node.add_server_config(name, False, address))
        self._check_foreign(name)
        await self._catch_up(name)
        await self.change_config(lambda: node.add_server_config(name, True))

    async def _catch_up(self, name: str) -> None:
        """§4.2.1: replicate to the learner ``name`` until it has caught up, or raise."""
        catch_up = self._node.start_catch_up(name, self._clock.now())
        self._kick()
        try:
            while catch_up.state is CatchUpState.PENDING:
                await self._waiters.wait_changed()
        except ServerStopped as exc:
            if type(exc) is not ServerStopped:  # ServerFailed says more: keep it
                raise
            # The learner entry is in the log: this change is under way, not refused.
            raise StoppedOutcomeUnknown(
                f"server {self._name!r} stopped while {name!r} was catching up: it may be "
                "a learner now, and was not promoted to voter"
            ) from None
        self._check_foreign(name)
        if catch_up.state is CatchUpState.FAILED:
            raise CatchUpFailed(
                f"{name!r} did not catch up with the leader's log ({catch_up.reason}); "
                "it remains a learner"
            )

    async def _first_answer(self, name: str) -> None:
        # A learner that belongs to another cluster refuses at its first message: wait
        # (at most an election timeout) until the core has its first answer.
        node = self._node
        with trio.move_on_at(self._clock.after(self._options.max_election_timeout)):
            while node.awaiting_first_answer(name):
                await self._waiters.wait_changed()
        self._check_foreign(name)

    def _check_foreign(self, name: str) -> None:
        foreign = self._node.foreign_identity(name)
        if foreign is not None:
            raise WrongCluster(
                f"{name!r} belongs to another cluster (identity {foreign}; this cluster is "
                f"{self._node.status().cluster_id}) and refuses to follow this leader. It "
                f"remains a learner: remove it with remove_server({name!r}) and add a "
                "server with empty storage instead"
            )

    async def set_members(
        self,
        voters: Collection[str],
        learners: Collection[str],
        addresses: Mapping[str, str] | None,
    ) -> None:
        """:meth:`trioraft.Server.set_members`."""
        await self._prologue()
        if addresses is not None:
            if not isinstance(addresses, Mapping):
                raise TypeError(f"addresses must be a mapping, got {type(addresses).__name__}")
            self._learn_addresses(dict(addresses))
        node = self._node
        while True:
            try:
                change = node.set_members(voters, learners, addresses, self._clock.now())
                break
            except (LeaderNotReady, TransferInProgress):
                await self._waiters.wait_changed()  # wait for this term's no-op to commit
        self._kick()
        await self._await_change(change)

    async def _await_change(self, change: MembershipChange) -> None:
        """Wait for a ``set_members`` change to complete; raise what it failed of."""
        try:
            while change.active:
                await self._waiters.wait_changed()
        except ServerStopped as exc:
            if type(exc) is not ServerStopped or not change.entries:
                raise
            raise StoppedOutcomeUnknown(
                f"server {self._name!r} stopped during the change to {change.target}: the "
                "next leader may complete it"
            ) from None
        if change.phase is ChangePhase.FAILED:
            for name in change.newcomers:
                self._check_foreign(name)
            if change.unknown:
                raise OutcomeUnknown(
                    f"leadership was lost during the change to {change.target}: the next "
                    "leader may complete it, or not"
                )
            if change.left_behind is not None:
                raise CatchUpFailed(
                    f"{change.reason}; the change was not made ({change.left_behind!r} "
                    "remains a learner)"
                )
            raise NotLeader(self._node.leader)

    async def remove_server(self, name: str) -> None:
        """:meth:`trioraft.Server.remove_server`."""
        await self.change_config(lambda: self._node.remove_server_config(name))

    async def change_config(self, make: Callable[[], Config]) -> None:
        """Append the configuration ``make()`` gives (one server changed); return once
        it is applied."""
        await self._prologue()
        node = self._node
        while True:
            config = make()
            try:
                entry = node.change_config(config, self._clock.now())
                break
            except (LeaderNotReady, TransferInProgress):
                await self._waiters.wait_changed()  # wait for this term's no-op to commit
        await self.await_entry(entry)

    def await_entry(self, entry: Entry, started: float = 0.0) -> Awaitable[Any]:
        """``await changes.await_entry(entry)``: wait until ``entry`` is applied; its
        result. (A plain function: a wait of a client's write has no frame of its own.)"""
        self._kick()
        return self._waiters.wait_for(entry, started)

    async def propose_and_wait(self, kind: EntryKind, data: Any) -> Any:
        """Append an entry of a client session (``SESSION`` or ``CLIENT``, §6.3) once no
        transfer holds proposals up; return its result once applied."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._waiters.check_running()
        if self._check_value is not None:
            self._check_value(data)
        while True:
            try:
                started = trio.current_time()  # the write's latency is real time
                entry = self._node.propose_entry(kind, data, self._clock.now())
                break
            except TransferInProgress:
                await self._waiters.wait_changed()
        return await self.await_entry(entry, started)

    async def wait_out_transfer(self) -> None:
        """A write met a leadership transfer under way (§3.10): wait until something
        changed; if leadership was handed over, raise :class:`~trioraft.NotLeader`
        naming whoever took over (once known, within an election timeout)."""
        node = self._node
        await self._waiters.wait_changed()
        if node.role is not Role.LEADER:
            with trio.move_on_at(self._clock.after(self._options.max_election_timeout)):
                while node.leader is None:
                    await self._waiters.wait_changed()
            raise NotLeader(node.leader) from None

    async def transfer(self, name: str | None) -> str:
        """:meth:`trioraft.Server.transfer_leadership`."""
        await self._prologue()
        node = self._node
        start = self._clock.now()
        target = node.transfer_leadership(name, start)
        self._kick()
        with trio.move_on_at(self._clock.deadline(start + 2 * self._options.max_election_timeout)):
            while True:
                outcome = node.transfer_outcome(target)
                if outcome is TransferOutcome.DONE:
                    return target
                if outcome is TransferOutcome.ABANDONED:
                    raise TransferFailed(
                        f"{target!r} did not catch up within an election timeout; "
                        f"{self._name!r} remains the leader"
                    )
                if outcome is TransferOutcome.OTHER_ELECTED:
                    raise TransferFailed(f"{node.leader!r} was elected instead of {target!r}")
                await self._waiters.wait_changed()
        raise TransferFailed(f"{target!r} did not become leader in time")
