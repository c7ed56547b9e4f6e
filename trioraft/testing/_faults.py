"""The faults of fault schedules (:mod:`._schedule`): each a timed, printable record of
something to inflict on a cluster, checked when made."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar

import attrs
import trio

from .._core.options import CoreOptions, server_names
from .._errors import RaftError
from .._network.memory import check_delay, check_rate
from .._server import Server
from ._clocks import check_clock_jump, check_clock_rate
from ._cluster import Cluster

__all__ = [
    "FAULT_KINDS",
    "AddServer",
    "ClockJump",
    "ClockRate",
    "ClockRateLeader",
    "Crash",
    "CrashLeader",
    "Delay",
    "Duplication",
    "Fault",
    "Heal",
    "Isolate",
    "IsolateLeader",
    "Loss",
    "Partition",
    "Recover",
    "RemoveServer",
    "Restart",
    "SetMembers",
    "TransferLeadership",
    "TriggerElection",
]

#: How long a membership change or transfer started by a schedule may take.
_CALL_BUDGET = 5.0

# The one table of fault menus: the values random schedules and the Hypothesis
# strategies (trioraft.testing.strategies) draw from.
#: Message loss rates.
LOSS_RATES = (0.0, 0.05, 0.2, 0.5)
#: Message delay ranges ``(low, high)`` in seconds.
DELAYS = ((0.0, 0.0), (0.0, 0.01), (0.005, 0.05), (0.0, 0.2))
#: Message duplication rates.
DUPLICATION_RATES = (0.0, 0.1, 0.5)
#: The longest clock jump drawn, in seconds.
MAX_CLOCK_JUMP = 2.0
#: The servers' default ``max_clock_drift`` (the bound of their lease reads).
DEFAULT_MAX_CLOCK_DRIFT = CoreOptions().max_clock_drift


def _ms(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a fault's time must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a fault's time must be a finite number >= 0, got {value!r}")
    return round(float(value), 3)


def _check_rate(fault: Any, attribute: Any, value: Any) -> None:
    check_rate(type(fault).kind, value)  # the network's own check, when made


def _check_name(fault: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"{type(fault).__name__}: {attribute.name} must be a server name, got {value!r}"
        )


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@attrs.frozen
class Fault:
    """One fault, ``at`` seconds after the schedule starts. Subclasses say what it does
    (:meth:`apply`) and how it reads (``text``)."""

    #: The fault's name in schedules and JSON: its class's name in snake case unless the
    #: class sets another.
    kind: ClassVar[str] = "fault"
    #: The fault in words: a :meth:`str.format` template of its fields.
    text: ClassVar[str] = "{kind}"
    at: float = attrs.field(converter=_ms)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            cls.kind = _snake_case(cls.__name__.lstrip("_"))

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        """Inflict the fault on ``cluster``; returns what happened, for the log. Calls
        that can take a while (membership changes) run in ``nursery``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The fault in words (without its time)."""
        return self.text.format(kind=self.kind, **attrs.asdict(self, recurse=False))

    def __str__(self) -> str:
        return f"t={self.at:8.3f}  {self.describe()}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (see :meth:`FaultSchedule.from_json`)."""
        data = attrs.asdict(self, recurse=True)
        data["kind"] = self.kind
        return data


@attrs.frozen
class _NetworkFault(Fault):
    """A fault that is one call of the simulated network: ``method``, with the fault's
    fields after ``at`` as its arguments."""

    method: ClassVar[str] = ""

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        arguments = [getattr(self, field.name) for field in attrs.fields(type(self))[1:]]
        getattr(cluster.network, self.method)(*arguments)
        return self.describe()


@attrs.frozen
class _ServerFault(Fault):
    """A fault on the server ``name``: :meth:`inflict`, unless :meth:`refusal` says why
    not (the server is not running, say)."""

    text: ClassVar[str] = "{kind} {name}"
    name: str = attrs.field(default="", validator=_check_name)

    #: The errors :meth:`inflict` may raise that only mean the fault did not happen.
    tolerated: ClassVar[tuple[type[Exception], ...]] = ()

    def refusal(self, cluster: Cluster) -> str | None:
        """Why the fault cannot be inflicted now (``None``: it can)."""
        return None if self.name in cluster.servers else "not running"

    async def inflict(self, cluster: Cluster) -> None:
        """Inflict the fault."""
        raise NotImplementedError

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        trouble = self.refusal(cluster)
        if trouble is None:
            try:
                await self.inflict(cluster)
            except self.tolerated as exc:
                trouble = str(exc)
        return self.describe() if trouble is None else f"{self.describe()}: {trouble}"


@attrs.frozen
class _LeaderFault(Fault):
    """The server fault ``on`` (:class:`Isolate`, :class:`Crash`, :class:`ClockRate`),
    inflicted on whichever server leads at that moment (nothing if none does), with this
    fault's fields after ``at``."""

    on: ClassVar[type[_ServerFault]]

    def describe(self) -> str:
        return f"{self.on.kind} the leader"

    def _on_leader(self, name: str) -> _ServerFault:
        values = [getattr(self, field.name) for field in attrs.fields(type(self))[1:]]
        return self.on(self.at, name, *values)

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        leader = cluster.leader()
        if leader is None:
            return f"{self.describe()}: there is none"
        await self._on_leader(leader.name).apply(cluster, nursery)
        return self._done(leader.name)

    def _done(self, name: str) -> str:
        """What happened, for the log, once inflicted on ``name``."""
        return f"{self.describe()} {name}"


@attrs.frozen
class _LeaderCall(Fault):
    """A call on the leader that can take a while (a membership change, a transfer):
    started in the background, given a few seconds at most; :meth:`call`. What it came
    to (done, an error it raised, or out of time) is an outcome, not a failure of the
    harness: the cluster records it (:meth:`Cluster.record_outcome
    <trioraft.testing.Cluster.record_outcome>`)."""

    #: The errors the call may raise that are outcomes to record (``ChangeInProgress``,
    #: ``NotLeader``, ``OutcomeUnknown``, ``CatchUpFailed``, ``TransferFailed``, a
    #: configuration the leader refuses...). Anything else fails the run.
    tolerated: ClassVar[tuple[type[Exception], ...]] = (RaftError, ValueError)

    def call(self, leader: Server) -> Awaitable[object]:
        """The call to make on ``leader``."""
        raise NotImplementedError

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        what = self.describe()
        leader = cluster.leader()
        if leader is None:
            return f"{what}: no leader"

        async def attempt() -> None:
            outcome = f"not over after {_CALL_BUDGET:g} s"
            with trio.move_on_after(_CALL_BUDGET):
                try:
                    await self.call(leader)
                    outcome = "done"
                except self.tolerated as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
            cluster.record_outcome(leader.name, self.kind, what, outcome)

        nursery.start_soon(attempt)
        return f"{what} (via {leader.name})"


def _sorted_groups(groups: Iterable[Iterable[str]]) -> tuple[tuple[str, ...], ...]:
    if isinstance(groups, str):
        raise ValueError(
            f"Partition takes groups of names, not the single string {groups!r} "
            f"(write Partition(at, [[...], [...]]))"
        )
    out = []
    for group in groups:
        if isinstance(group, str):
            raise ValueError(
                f"Partition takes groups of names; got the single name {group!r} "
                f"(write [{group!r}] for a group of one)"
            )
        out.append(tuple(sorted(group)))
    return tuple(out)


@attrs.frozen
class Partition(Fault):
    """Split the network into ``groups`` (a server in no group is cut off from all)."""

    groups: tuple[tuple[str, ...], ...] = attrs.field(converter=_sorted_groups, default=())

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        cluster.network.partition(*self.groups)
        return self.describe()

    def describe(self) -> str:
        return "partition " + " | ".join("[" + " ".join(g) + "]" for g in self.groups)


@attrs.frozen
class Heal(_NetworkFault):
    """Remove every partition and isolation."""

    method: ClassVar[str] = "heal"


@attrs.frozen
class _RateFault(_NetworkFault):
    """Sets the rate of something the network does to each message: its method is
    ``set_<kind>``."""

    text: ClassVar[str] = "{kind} {rate:g}"
    rate: float = attrs.field(default=0.0, validator=_check_rate)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.method = f"set_{cls.kind}"


@attrs.frozen
class Loss(_RateFault):
    """Drop each message with probability ``rate``."""


@attrs.frozen
class Duplication(_RateFault):
    """Deliver each message twice with probability ``rate`` (the copy has its own delay)."""


@attrs.frozen
class Delay(_NetworkFault):
    """Delay each message by a random time in ``[low, high]`` (messages can reorder)."""

    method: ClassVar[str] = "set_delay"
    text: ClassVar[str] = "delay {low:g}..{high:g} s"
    low: float = 0.0
    high: float = 0.0

    def __attrs_post_init__(self) -> None:
        check_delay(self.low, self.high)  # the network's own check, when made


@attrs.frozen
class Isolate(_ServerFault):
    """Cut ``name`` off from every other server (running or not)."""

    def refusal(self, cluster: Cluster) -> str | None:
        return None

    async def inflict(self, cluster: Cluster) -> None:
        cluster.network.isolate(self.name)


@attrs.frozen
class Crash(_ServerFault):
    """Stop server ``name`` (its storage survives; see :class:`Restart`)."""

    async def inflict(self, cluster: Cluster) -> None:
        await cluster.crash(self.name)


@attrs.frozen
class Restart(_ServerFault):
    """Restart a crashed server from its storage."""

    def refusal(self, cluster: Cluster) -> str | None:
        crashed = self.name not in cluster.servers and self.name in cluster.storages
        return None if crashed else "not crashed"

    async def inflict(self, cluster: Cluster) -> None:
        await cluster.restart(self.name)


@attrs.frozen
class TriggerElection(_ServerFault):
    """Make ``name`` start an election now (if it runs and votes)."""

    text: ClassVar[str] = "election on {name}"
    tolerated = (RaftError,)  # it does not vote, say

    async def inflict(self, cluster: Cluster) -> None:
        await cluster.servers[self.name].trigger_election()


@attrs.frozen
class _ClockFault(_ServerFault):
    """A change of the clock of ``name``, running or not (its clock outlives it): the
    cluster's ``method`` with ``name`` and the fault's last field."""

    method: ClassVar[str] = ""

    def refusal(self, cluster: Cluster) -> str | None:
        known = self.name in cluster.names or self.name in cluster.storages
        return None if known else "not a server of this cluster"

    async def inflict(self, cluster: Cluster) -> None:
        value = getattr(self, attrs.fields(type(self))[-1].name)
        getattr(cluster, self.method)(self.name, value)


@attrs.frozen
class ClockRate(_ClockFault):
    """From now on, the clock of ``name`` (the time its core and timers see) runs at
    ``rate`` times virtual time, across its restarts
    (:meth:`Cluster.set_clock_rate <trioraft.testing.Cluster.set_clock_rate>`)."""

    method: ClassVar[str] = "set_clock_rate"
    text: ClassVar[str] = "clock of {name} at {rate:g}x"
    rate: float = attrs.field(default=1.0, validator=lambda _f, _a, v: check_clock_rate(v))


@attrs.frozen
class ClockJump(_ClockFault):
    """The clock of ``name`` moves ``seconds`` forward at once, as for a host that was
    suspended (:meth:`Cluster.jump_clock <trioraft.testing.Cluster.jump_clock>`)."""

    method: ClassVar[str] = "jump_clock"
    text: ClassVar[str] = "clock of {name} jumps {seconds:g} s"
    seconds: float = attrs.field(default=0.0, validator=lambda _f, _a, v: check_clock_jump(v))


@attrs.frozen
class ClockRateLeader(_LeaderFault):
    """:class:`ClockRate` on whichever server leads at that moment (nothing if none
    does): a leader whose clock runs slow is the worst case of its lease (§6.4.1)."""

    on = ClockRate
    rate: float = attrs.field(default=1.0, validator=lambda _f, _a, v: check_clock_rate(v))

    def describe(self) -> str:
        return f"clock of the leader at {self.rate:g}x"

    def _done(self, name: str) -> str:
        return f"clock of the leader {name} at {self.rate:g}x"


@attrs.frozen
class IsolateLeader(_LeaderFault):
    """Cut off whichever server leads at that moment (nothing if none does)."""

    on = Isolate


@attrs.frozen
class CrashLeader(_LeaderFault):
    """Crash whichever server leads at that moment (nothing if none does)."""

    on = Crash


@attrs.frozen
class Recover(Fault):
    """Heal the network, clear loss and delay, and restart every crashed server."""

    text: ClassVar[str] = "recover: heal, no loss, delay or duplication, restart crashed servers"

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        crashed = await cluster.recover()
        return "recover" + (f" (restart {' '.join(crashed)})" if crashed else "")


@attrs.frozen
class AddServer(_LeaderCall):
    """Ask the leader to add ``name`` (a voter after catch-up, or a learner)."""

    name: str = ""
    voter: bool = True

    def call(self, leader: Server) -> Awaitable[object]:
        return leader.add_server(self.name, voter=self.voter)

    def describe(self) -> str:
        return f"add {self.name} as {'voter' if self.voter else 'learner'}"


@attrs.frozen
class RemoveServer(_LeaderCall):
    """Ask the leader to remove ``name``."""

    text: ClassVar[str] = "remove {name}"
    name: str = ""

    def call(self, leader: Server) -> Awaitable[object]:
        return leader.remove_server(self.name)


def _voters(value: Any) -> tuple[str, ...]:
    return tuple(sorted(server_names(value, "SetMembers: voters")))


def _learners(value: Any) -> tuple[str, ...]:
    return tuple(sorted(server_names(value, "SetMembers: learners")))


@attrs.frozen
class SetMembers(_LeaderCall):
    """Ask the leader to make the configuration exactly ``voters`` and ``learners``
    (:meth:`Server.set_members <trioraft.Server.set_members>`: through joint consensus
    when more than one voter changes, §4.3). A server named that never ran is started
    first, with no configuration (as a spare, to be caught up); a crashed one stays
    down. ``ValueError`` when made for no voters, a name given twice, or a server in
    both sets."""

    voters: tuple[str, ...] = attrs.field(converter=_voters)
    learners: tuple[str, ...] = attrs.field(converter=_learners, default=())

    def __attrs_post_init__(self) -> None:
        if not self.voters:
            raise ValueError("SetMembers needs at least one voter")
        both = set(self.voters) & set(self.learners)
        if both:
            raise ValueError(
                f"SetMembers: servers cannot be both voter and learner: {sorted(both)}"
            )

    def call(self, leader: Server) -> Awaitable[object]:
        return leader.set_members(self.voters, learners=self.learners)

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        new = [n for n in (*self.voters, *self.learners) if n not in cluster.storages]
        for name in new:
            await cluster.start(name, initial_config=())
        what = await super().apply(cluster, nursery)
        return what + (f"; started {' '.join(new)}" if new else "")

    def describe(self) -> str:
        learners = f", learners {' '.join(self.learners)}" if self.learners else ""
        return f"set members: voters {' '.join(self.voters)}{learners}"


@attrs.frozen
class TransferLeadership(_LeaderCall):
    """Ask the leader to hand over to ``target`` (``None``: the most up-to-date voter)."""

    kind: ClassVar[str] = "transfer"
    target: str | None = None

    def call(self, leader: Server) -> Awaitable[object]:
        return leader.transfer_leadership(self.target)

    def describe(self) -> str:
        return f"transfer leadership to {self.target or 'the best voter'}"


#: Every fault class by its ``kind``.
FAULT_KINDS: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (
        Partition,
        Isolate,
        IsolateLeader,
        Heal,
        Loss,
        Delay,
        Duplication,
        Crash,
        CrashLeader,
        Restart,
        Recover,
        AddServer,
        RemoveServer,
        SetMembers,
        TransferLeadership,
        TriggerElection,
        ClockRate,
        ClockRateLeader,
        ClockJump,
    )
}
#: The kinds that change a server's clock.
CLOCK_KINDS = frozenset({ClockRate.kind, ClockRateLeader.kind, ClockJump.kind})
