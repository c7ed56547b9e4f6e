"""Sending: every message a Ready holds leaves through here, and while this server leads,
one replication task per follower in a leader-only nursery, cancelled the moment
leadership is lost; and the transport's links and addresses, kept to the configuration.

Owns: the replicators (each follower's task, queue and cancel scope), the leader-only
nursery and the term it serves, the count of messages sent, the transport's address
book and links. May not touch: the node but to read whom it replicates to
(``followers()``); what is sent, to whom and when (the core decides; this room carries
it out in the core's order); the callers; the state machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import trio

from .._core.messages import Config, InstallSnapshot, Message
from .._core.node import RaftNode
from .._network.base import Endpoint
from .watch import Counters

#: The prefix of the names of the replication tasks (given, not derived: a compiled
#: method has no ``__qualname__`` for Trio to name its task by).
_TASK = f"{__name__}.Replication."

__all__ = ["Replication", "Replicator"]


class Replicator:
    """A leader's replication task for one peer: its cancel scope, its queue, and how
    many messages wait in that queue.

    A message to a peer with nothing waiting leaves at once from the task that made it
    (the ready loop, a writer flushing, a receive task): the transports' ``send`` never
    blocks, so this keeps the core's order and holds up no other peer, and it sends
    before the rest of that task's work. A hop through this task would wait for the
    next pass of Trio's scheduler, after every task woken meanwhile: with thousands of
    writers woken by one commit, a leader then said nothing to its followers for up to
    160 ms, more than the shortest election timeout (and one write at a time took
    longer; docs/performance.rst has the figures).

    A snapshot chunk (InstallSnapshot, dissertation §5) is queued instead, and so is
    every message to that peer after it while any waits: the task that made it goes on,
    and the chunk is encoded and sent from this peer's task, so a snapshot on its way to
    one follower never delays what the others are sent."""

    __slots__ = ("queue", "scope", "waiting")

    def __init__(self, queue: trio.MemorySendChannel[Message]) -> None:
        self.queue = queue
        self.scope = trio.CancelScope()
        #: Messages queued and not sent yet.
        self.waiting = 0


class Replication:
    """The sending side of one server (see the module's documentation)."""

    def __init__(self, endpoint: Endpoint, node: RaftNode, counters: Counters) -> None:
        self._endpoint = endpoint
        self._node = node
        self.replicators: dict[str, Replicator] = {}
        #: The term whose leadership the leader-only nursery serves (``None``: not leading).
        self.led_term: int | None = None
        self._leader_scope: trio.CancelScope | None = None
        self.leader_nursery: trio.Nursery | None = None
        self._counters = counters
        self._learn: Callable[[Mapping[str, str]], None] | None = getattr(
            endpoint, "learn_addresses", None
        )

    def send(self, messages: tuple[Message, ...]) -> None:
        """Send ``messages``, in order (step 2 of a Ready)."""
        if not messages:
            return
        if self.leader_nursery is not None and (self.replicators.keys() != self._node.followers()):
            self._sync_replicators()
        self._counters.sent += len(messages)
        send = self._endpoint.send
        replicators = self.replicators
        for message in messages:
            replicator = replicators.get(message.dst)
            if replicator is None or not (replicator.waiting or type(message) is InstallSnapshot):
                # Nothing waits for this peer: the message leaves now, from this task
                # (before the rest of this Ready's work, and between writers woken
                # together; see Replicator).
                send(message)
            else:
                replicator.waiting += 1
                replicator.queue.send_nowait(message)

    def start_leading(self, nursery: trio.Nursery, term: int) -> None:
        """This server leads ``term``: open its leader-only nursery (in ``nursery``)."""
        self.led_term = term
        scope = trio.CancelScope()
        self._leader_scope = scope
        nursery.start_soon(self._lead, scope, name=_TASK + "_lead")

    def stop_leading(self) -> bool:
        """Leadership ended: cancel the replication tasks. Whether it was leading."""
        if self.led_term is None:
            return False
        self.led_term = None
        if self._leader_scope is not None:
            self._leader_scope.cancel()
        self._leader_scope = None
        self.leader_nursery = None
        for replicator in self.replicators.values():
            replicator.queue.close()
        self.replicators.clear()
        return True

    def end(self) -> None:
        """The server stopped: its tasks are being cancelled with it."""
        self.led_term = None

    async def _lead(self, scope: trio.CancelScope) -> None:
        # Leadership can end (and a new term's begin) before this task first runs: only
        # the task of the leadership in force may install its nursery.
        with scope:
            async with trio.open_nursery() as nursery:
                if scope is not self._leader_scope:
                    return
                self.leader_nursery = nursery
                self._sync_replicators()
                await trio.sleep_forever()

    def _sync_replicators(self) -> None:
        nursery = self.leader_nursery
        if nursery is None:
            return
        followers = self._node.followers()
        for peer in followers:
            if peer not in self.replicators:
                send, receive = trio.open_memory_channel[Message](math.inf)
                replicator = self.replicators[peer] = Replicator(send)
                nursery.start_soon(self._replicate, replicator, receive, name=_TASK + "_replicate")
        for peer in [p for p in self.replicators if p not in followers]:
            replicator = self.replicators.pop(peer)
            replicator.queue.close()
            replicator.scope.cancel()

    async def _replicate(
        self, replicator: Replicator, messages: trio.MemoryReceiveChannel[Message]
    ) -> None:
        # One task per follower: it sends, in order, what waits for that follower (see
        # Replicator), so a snapshot on its way to one never holds up the others.
        send = self._endpoint.send
        with replicator.scope:
            async for message in messages:
                replicator.waiting -= 1
                send(message)

    def learn_addresses(self, addresses: Mapping[str, str]) -> None:
        """Tell the transport where these servers listen (TCP)."""
        if self._learn is not None and addresses:
            self._learn(addresses)

    def config_changed(self, config: Config) -> None:
        """A new configuration is in force: learn its addresses, keep links to its
        members only."""
        self.learn_addresses(dict(config.addresses))
        # A transport that keeps links to peers keeps them to the configuration's
        # members only, once there is a configuration (a server waiting to be added
        # has none yet, and keeps the peers it was given).
        keep_only = getattr(self._endpoint, "keep_only", None)
        members = set(config.voters) | set(config.learners)
        if keep_only is not None and members:
            keep_only(members)
