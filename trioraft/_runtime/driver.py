"""The driver: a server's tasks, and the Ready/Advance cycle they carry out.

It feeds the core (:class:`~trioraft._core.RaftNode`) events with the current time, and
carries out what the core hands it in a :class:`~trioraft._core.ready.Ready`, in order:
persist (and wait until durable), send, apply, answer; then it tells the core it is
done. Its tasks:

* the receive loop: messages from the transport into the core (over TCP the transport
  hands each batch over by call instead, from the task that read it);
* the timer: one cancel scope whose deadline follows the core's;
* the ready loop: the Ready/Advance cycle above (one storage sync per cycle, so whatever
  arrived while the disk was busy is written together: group commit);
* a warning for a server that waits to be added.

Owns: the server's nursery and cancel scope, its tasks, the timer, the ready loop's
wake-up signal, the storage's staging and syncs, the soft state last handed out and the
transitions into and out of leadership it calls for, the server's failure. May not
touch: any Raft decision (the Ready says what to do, the node's reports how things
stand); the callers (it hands their answers to :mod:`.waiters`), the machine (through
:mod:`.apply`), the messages once made (through :mod:`.replication`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .._clock import Clock
from .._core.messages import Message
from .._core.node import RaftNode
from .._core.ready import Ready, SoftState
from .._core.types import Role
from .._errors import MalformedMessage, ServerFailed
from .._network.base import Endpoint
from .._options import ServerOptions
from .._protocol import ClientRequest
from .._storage import MemoryStorage, Storage, stage
from .._storage.base import passing
from .apply import Applier
from .replication import Replication
from .waiters import Signal, Waiters
from .watch import Watch

__all__ = ["FLUSH_EVERY", "Driver", "TakeRequest"]

logger = logging.getLogger("trioraft")

#: A write that brings the entries not yet handed out to this many carries out the Ready
#: itself (on an immediate storage, with nothing else under way): writes proposed in one
#: scheduler pass go to replication in pieces of this many, so replies, commits and the
#: writers' wake-ups flow as a pipeline of pieces instead of one round of the whole pass.
#: With thousands of writes in flight a round is long, and the leader says nothing to
#: its followers meanwhile (at 4,096, in one process on the machine of the performance
#: page: the longest silence fell from 100-191 ms, against a minimum election timeout of
#: 150 ms, to 54-123 ms, with no fewer writes/s).
FLUSH_EVERY = 512

#: The prefix of the names of this server's tasks (given, not derived: a compiled
#: method has no ``__qualname__`` for Trio to name its task by).
_TASK = f"{__name__}.Driver."

#: Election timeouts after which a server outside every configuration says it waits.
_WAIT_TO_BE_ADDED_TIMEOUTS = 3

_Handle = TypeVar("_Handle")
#: What takes one client request: ``take_request(handle, endpoint, request, start_soon)``
#: (it answers at once, or starts a task with ``start_soon``).
TakeRequest = Callable[[_Handle, Endpoint, ClientRequest, Callable[..., None]], None]


class Driver:
    """The tasks of one server and its Ready/Advance cycle (see the module's
    documentation)."""

    def __init__(
        self,
        name: str,
        node: RaftNode,
        storage: Storage,
        options: ServerOptions,
        clock: Clock,
        endpoint: Endpoint,
        kicked: Signal,
        rooms: tuple[Waiters, Watch, Applier, Replication],
    ) -> None:
        self._name = name
        self._node = node
        self._storage = storage
        self._options = options
        self._clock = clock
        self._endpoint = endpoint
        self._waiters, self._watch, self._applier, self._replication = rooms
        #: What takes a client's request, and the handle it is given (see :meth:`run`).
        self._take_request: TakeRequest[Any] | None = None
        self._handle: Any = None
        #: The storage makes writes durable without waiting (MemoryStorage, no latency).
        self.immediate = isinstance(storage, MemoryStorage) and storage.immediate
        #: Wakes the ready loop: the core was handed something.
        self.kicked = kicked
        self._timer_scope = trio.CancelScope()
        #: The core's deadline the timer sleeps until, on this server's clock.
        self._timer_at = math.inf
        self.scope = trio.CancelScope()
        self.finished = trio.Event()
        self.nursery: trio.Nursery | None = None
        #: The ready loop is carrying out a Ready.
        self.busy = False
        self._counters = self._watch.counters
        self._soft: SoftState | None = None
        self._role = node.role
        #: What escaped a batch delivered by call (a tracer's report), to raise in a task.
        self._delivery_error: BaseException | None = None
        self._delivery_failed = trio.Event()

    async def run(
        self,
        task_status: trio.TaskStatus[_Handle],
        handle: _Handle,
        take_request: TakeRequest[_Handle],
    ) -> None:
        """Run the server's tasks until it stops; ``handle`` is passed to
        ``task_status.started()`` once they are started, and each client request goes
        to ``take_request(handle, endpoint, request, start_soon)`` (``start_soon``
        starts a task in the server's nursery)."""
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    self._take_request, self._handle = take_request, handle
                    deliver_to = getattr(self._endpoint, "deliver_to", None)
                    if deliver_to is not None:
                        deliver_to(self._delivered)
                        nursery.start_soon(
                            self._raise_delivery_error, name=_TASK + "_raise_delivery_error"
                        )
                    else:
                        nursery.start_soon(self._receive_loop, name=_TASK + "_receive_loop")
                    nursery.start_soon(self._timer_loop, name=_TASK + "_timer_loop")
                    nursery.start_soon(self._guarded_ready_loop, name=_TASK + "_guarded_ready_loop")
                    nursery.start_soon(self._watch_membership, name=_TASK + "_watch_membership")
                    self._clock.watch(self._clock_changed)
                    self.kick()
                    task_status.started(handle)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        waiters = self._waiters
        waiters.stopped = True
        self._clock.unwatch(self._clock_changed)
        self._replication.end()
        waiters.shutdown()
        self._watch.end()
        self._endpoint.close()
        self._storage.release()
        waiters.notify_changed()
        self._watch.wake_role_watchers()
        self.finished.set()

    def fail(self, exc: BaseException) -> None:
        """Stop this server because an internal invariant broke (never tear down the
        user's nursery): pending and later calls raise :class:`ServerFailed`."""
        waiters = self._waiters
        if waiters.failure is None:
            failure = ServerFailed(
                f"server {self._name!r} stopped itself: an internal invariant broke: "
                f"{type(exc).__name__}: {exc}"
            )
            failure.__cause__ = exc
            waiters.failure = failure
            logger.error("%s", failure, exc_info=exc)
        self.scope.cancel()

    def kick(self) -> None:
        """Something was handed to the core: wake the ready loop, follow the timer."""
        self.kicked.set()
        self._follow_timer()

    def _follow_timer(self) -> None:
        # Only ever earlier: a deadline that moved later (a leader's next heartbeat, after
        # every send) is left to the timer, which wakes at the old one, finds nothing
        # due and sleeps again; Trio's timer is not moved at every Ready.
        deadline = self._node.deadline
        if deadline < self._timer_at:
            self._timer_at = deadline
            self._timer_scope.deadline = self._clock.deadline(deadline)

    def _clock_changed(self) -> None:
        """This server's clock changed its rate or jumped (a simulated cluster's): the
        timer and the ``leadership()`` bodies' deadlines move with it."""
        self._timer_scope.deadline = self._clock.deadline(self._timer_at)
        if self._watch.leaderships:
            self._watch.follow_leaderships()

    # ------------------------------------------------------------ the tasks
    async def _receive_loop(self) -> None:
        receive = self._endpoint.receive_batch
        while True:
            if not self._take_batch(await receive()):
                return

    def _take_batch(self, batch: list[Message]) -> bool:
        """Feed the core messages that arrived together, then carry out what they
        caused; ``False`` once an internal failure has stopped this server."""
        node = self._node
        self._counters.received += len(batch)
        now = self._clock.now()
        for message in batch:
            if isinstance(message, ClientRequest):
                self._serve_client(message)
                continue
            try:
                node.step(message, now)
            except MalformedMessage as exc:
                logger.warning("%s: dropped a malformed message: %s", self._name, exc)
            except Exception as exc:
                self.fail(exc)
                return False
        self.ready_now()
        return True

    def _serve_client(self, request: ClientRequest) -> None:
        if self.nursery is not None and self._take_request is not None:
            self._take_request(self._handle, self._endpoint, request, self.nursery.start_soon)

    def _delivered(self, batch: list[Message]) -> None:
        """A transport that delivers by calling (TCP: from the task that read the
        connection, a task switch saved per batch) hands messages here. Nothing more
        is taken once the server failed or stopped (as the receive loop ends then)."""
        waiters = self._waiters
        if waiters.stopped or waiters.failure is not None or self._delivery_error is not None:
            return
        try:
            self._take_batch(batch)
        except BaseException as exc:  # a tracer's report: raise it in this server's tasks
            if self._delivery_error is None:
                self._delivery_error = exc
                self._delivery_failed.set()

    async def _raise_delivery_error(self) -> None:
        await self._delivery_failed.wait()
        assert self._delivery_error is not None
        raise self._delivery_error

    async def _timer_loop(self) -> None:
        node = self._node
        clock = self._clock
        while True:
            self._timer_at = deadline = node.deadline  # on this server's clock
            with trio.CancelScope(deadline=clock.deadline(deadline)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            now = clock.now()
            if now >= node.deadline:
                try:
                    node.tick(now)
                except Exception as exc:
                    self.fail(exc)
                    return
                self.kick()

    async def _watch_membership(self) -> None:
        # Legal but easy to get wrong: a server in no configuration does nothing until a
        # leader adds it. Say so once, a few election timeouts after start.
        await trio.sleep_until(
            self._clock.after(_WAIT_TO_BE_ADDED_TIMEOUTS * self._options.max_election_timeout)
        )
        status = self._node.status()
        if self._name not in status.config.members and status.leader is None:
            logger.warning(
                "%s: not a member of its configuration (voters: %s) and no leader has "
                "contacted it: it waits to be added (leader.add_server(%r))",
                self._name,
                ", ".join(sorted(status.config.voters)) or "none",
                self._name,
            )

    # ------------------------------------------------------- the ready loop
    async def _guarded_ready_loop(self) -> None:
        try:
            await self._ready_loop()
        except Exception as exc:
            if exc is self._watch.tracer_error:
                raise
            self.fail(exc)

    async def _ready_loop(self) -> None:
        node = self._node
        while True:
            if not node.has_ready():
                await self.kicked.wait()
                continue
            self.busy = True
            try:
                self.kicked.clear()  # this Ready holds whatever the kicks were for
                rd = node.ready()
                early = rd.early and rd.must_persist and rd.sync
                if rd.must_persist:
                    stage(self._storage, rd)  # without rd.sync: durable with the next sync
                    if early:  # §10.2.1: send and apply while the write is under way
                        self._replication.send(rd.messages)
                        self._carry_out(rd)
                    if rd.sync:
                        await self._sync()
                    elif self.immediate:  # free: keep the commit index current
                        self._storage.sync_nowait()  # type: ignore[attr-defined]
                if early:
                    self._advance(rd)
                else:
                    self._finish(rd)
            finally:
                self.busy = False
            if node.has_ready():
                await trio.lowlevel.checkpoint()  # let others run between two Readys

    async def _sync(self) -> None:
        """Make what is staged durable. A sync that fails with an OS error that passes by
        itself (file descriptors exhausted: EMFILE, ENFILE) left it staged: try again
        after a pause, growing up to an election timeout, rather than stop the server.
        Nothing waiting on it (acknowledgements, the snapshot) goes on meanwhile."""
        delay = self._options.heartbeat_interval
        while True:
            try:
                await self._storage.sync()
                return
            except OSError as exc:
                if not passing(exc):
                    raise
                logger.warning(
                    "%s: storage %s could not be written (%s); trying again in %.2f s",
                    self._name, self._storage, exc.strerror or exc, delay,
                )  # fmt: skip
            await trio.sleep(delay)
            delay = min(2 * delay, self._options.max_election_timeout)

    def ready_now(self) -> None:
        """Carry out a Ready at once, from the task that just fed the core, when nothing
        else is under way and nothing in it waits on the disk (the storage is immediate,
        or the Ready needs no sync: a newer commit index, messages, entries to apply); a
        task switch saved per batch of messages. Else leave it to the ready loop."""
        node = self._node
        if not node.has_ready():
            self._follow_timer()
            return
        if self.busy or (not self.immediate and node.needs_sync()):
            self.kick()
            return
        try:
            rd = node.ready()
            if rd.must_persist:
                # Durable before anything that depends on it leaves (Figure 2: "before
                # responding to RPCs"; API: "nothing is acknowledged before it is
                # durable"): at once (immediate), or with the next sync.
                stage(self._storage, rd)
                if self.immediate:
                    self._storage.sync_nowait()  # type: ignore[attr-defined]
                elif rd.sync:
                    raise AssertionError("a Ready that needs a sync was carried out at once")
            self._finish(rd)
        except Exception as exc:  # an internal invariant broke: stop this server only
            if exc is self._watch.tracer_error:
                raise
            self.fail(exc)

    def _finish(self, rd: Ready) -> None:
        self._replication.send(rd.messages)
        self._carry_out(rd)
        self._advance(rd)

    def _advance(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            applier = self._applier
            applier.durable_snapshot = max(applier.durable_snapshot, rd.snapshot.index)
        node = self._node
        node.advance(rd)
        if self._waiters.callbacks_due:
            self._waiters.run_callbacks()
        if not self.busy and node.has_ready():
            self.kicked.set()  # carried out by another task: the loop takes what is left
        self._follow_timer()

    def _carry_out(self, rd: Ready) -> None:
        self._applier.carry_out(rd)
        if rd.reads or rd.failed_reads:
            self._waiters.reads_answered(rd.reads, rd.failed_reads)
        for notice in rd.notices:
            logger.warning("%s: %s", self._name, notice)
        if rd.soft is not None and rd.soft != self._soft:
            self._soft_changed(rd.soft)
        if self._watch.leaderships:
            self._watch.follow_leaderships()
        self._waiters.notify_changed()

    def _soft_changed(self, soft: SoftState) -> None:
        old = self._soft
        self._soft = soft
        node = self._node
        if old is None or old.config_index != soft.config_index:
            self._replication.config_changed(node.status().config)
        role_changed = old is None or (old.role, old.term, old.leader) != (
            soft.role,
            soft.term,
            soft.leader,
        )
        self._watch.soft_changed(soft, role_changed)
        replication = self._replication
        if node.role is Role.LEADER:
            if replication.led_term != node.term:
                self._stop_leading()
                assert self.nursery is not None
                self._applier.start_leading()
                replication.start_leading(self.nursery, node.term)
        elif replication.led_term is not None:
            self._stop_leading()
        if node.role is not self._role:
            self._role = node.role
            self._applier.hooks.role_changed(node.role)

    def _stop_leading(self) -> None:
        if self._replication.stop_leading():
            # Writes this leader appended may or may not commit under the next leader:
            # the core says which (those it cannot know); committed ones will be applied
            # (and answered) as usual.
            writes = self._waiters.writes
            self._waiters.outcome_unknown(self._node.unknown_outcomes(writes))
