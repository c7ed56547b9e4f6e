"""Fault schedules: declarative, printable lists of timed faults to inflict on a cluster."""

from __future__ import annotations

import contextlib
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar

import attrs
import trio

from .._core.options import CoreOptions, check_clock_drift
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
    "FaultSchedule",
    "Heal",
    "Isolate",
    "IsolateLeader",
    "Loss",
    "Partition",
    "Recover",
    "RemoveServer",
    "Restart",
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
    started in the background, given a few seconds at most; :meth:`call`."""

    def call(self, leader: Server) -> Awaitable[object]:
        """The call to make on ``leader``."""
        raise NotImplementedError

    async def apply(self, cluster: Cluster, nursery: trio.Nursery) -> str:
        what = self.describe()
        leader = cluster.leader()
        if leader is None:
            return f"{what}: no leader"

        async def attempt() -> None:
            with contextlib.suppress(RaftError, ValueError), trio.move_on_after(_CALL_BUDGET):
                await self.call(leader)

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
        TransferLeadership,
        TriggerElection,
        ClockRate,
        ClockRateLeader,
        ClockJump,
    )
}
#: The kinds that change a server's clock.
CLOCK_KINDS = frozenset({ClockRate.kind, ClockRateLeader.kind, ClockJump.kind})


def _by_time(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(sorted(faults, key=lambda f: f.at))


@attrs.frozen
class FaultSchedule:
    """Timed faults, sorted by time. ``print(schedule)`` shows one fault a line;
    ``repr(schedule)`` is Python that rebuilds it; :meth:`to_json` / :meth:`from_json`
    store it. :meth:`run` inflicts it on a :class:`~trioraft.testing.Cluster`."""

    faults: tuple[Fault, ...] = attrs.field(converter=_by_time, default=())

    def __len__(self) -> int:
        return len(self.faults)

    def __str__(self) -> str:
        if not self.faults:
            return "(no faults)"
        return "\n".join(str(f) for f in self.faults)

    @property
    def end(self) -> float:
        """Time of the last fault (0 if none)."""
        return self.faults[-1].at if self.faults else 0.0

    def to_json(self) -> list[dict[str, Any]]:
        """A JSON-able list of faults."""
        return [f.to_json() for f in self.faults]

    @classmethod
    def from_json(cls, data: Sequence[dict[str, Any]]) -> FaultSchedule:
        """Rebuild a schedule from :meth:`to_json`'s output."""
        faults = []
        for item in data:
            if not isinstance(item, dict) or "kind" not in item:
                raise ValueError(f"a fault must be a dict with a 'kind', got {item!r}")
            fields = dict(item)
            kind = fields.pop("kind")
            fault_cls = FAULT_KINDS.get(kind)
            if fault_cls is None:
                raise ValueError(f"unknown fault kind {kind!r}")
            if kind == "partition":
                fields["groups"] = [tuple(g) for g in fields.get("groups", ())]
            try:
                faults.append(fault_cls(**fields))
            except TypeError as exc:  # a field missing or unknown
                raise ValueError(f"bad fault {item!r}: {exc}") from None
        return cls(faults)

    async def run(
        self, cluster: Cluster, *, log: Callable[[float, str], None] | None = None
    ) -> None:
        """Inflict each fault at its time, counted from now. Membership changes and
        transfers run in the background (at most a few seconds each) so later faults
        stay on time; :meth:`run` returns once the last has finished."""
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for fault in self.faults:
                await trio.sleep_until(start + fault.at)
                if not isinstance(fault, Recover):
                    cluster.note_fault()
                what = await fault.apply(cluster, nursery)
                if log is not None:
                    log(trio.current_time(), what)

    @classmethod
    def random(
        cls,
        rng: random.Random,
        names: Sequence[str],
        *,
        duration: float = 10.0,
        count: int = 10,
        spares: Sequence[str] = (),
        kinds: Iterable[str] | None = None,
        recover_every: float | None = None,
        clock_drift: float | None = None,
        max_clock_drift: float = DEFAULT_MAX_CLOCK_DRIFT,
    ) -> FaultSchedule:
        """A random schedule of ``count`` faults within ``duration`` seconds, drawn from
        ``rng`` (for soak runs; with Hypothesis, use
        :func:`trioraft.testing.strategies.fault_schedules`, which shrinks). With
        ``recover_every``, a :class:`Recover` every that many seconds keeps faults from
        piling up for good.

        With ``clock_drift``, clocks drift too: every server's clock starts at a rate
        drawn from ``1 ± clock_drift`` (a :class:`ClockRate` at time 0), and the faults
        drawn include :class:`ClockRate` (in that range), :class:`ClockRateLeader` (in
        its slow half, and the leader is cut off within 0.3 s by an
        :class:`IsolateLeader`: the race a lease must win, §6.4.1) and
        :class:`ClockJump`. ``max_clock_drift`` is the servers' bound (the option of
        that name): within it (``clock_drift <= max_clock_drift``), a jump comes with a
        :class:`Crash` of its server at the same time (a host suspended: when it is
        back, its clock has moved on), since a running follower's jump is beyond every
        rate bound; beyond it, jumps hit running servers too. Without ``clock_drift``
        (the default), clock faults are drawn only if ``kinds`` names them, at rates
        within ``1 ± max_clock_drift``."""
        bound = check_clock_drift("max_clock_drift", max_clock_drift)
        drift = bound if clock_drift is None else check_clock_drift("clock_drift", clock_drift)
        hidden = {"recover"} | (CLOCK_KINDS if clock_drift is None else set())
        allowed = sorted(kinds) if kinds is not None else sorted(set(FAULT_KINDS) - hidden)
        for kind in allowed:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        everyone = list(names) + list(spares)
        faults: list[Fault] = []
        if clock_drift is not None:
            faults.extend(
                ClockRate(0.0, n, _random_rate(rng, 1 - drift, 1 + drift)) for n in everyone
            )
        for _ in range(count):
            at = rng.uniform(0, duration)
            kind = rng.choice(allowed)
            faults.append(_random_fault(rng, kind, at, list(names), everyone, drift))
            if kind == "clock_rate_leader":  # and soon cut off: the lease's race
                faults.append(IsolateLeader(min(duration, at + rng.uniform(0, 0.3))))
        if drift <= bound:
            faults = suspend_for_jumps(faults)
        return cls(faults + _recoveries(duration, recover_every))


def _recoveries(duration: float, every: float | None) -> list[Fault]:
    """A :class:`Recover` every ``every`` seconds within ``duration`` (none if ``None``)."""
    if every is None:
        return []
    if every <= 0:
        raise ValueError(f"recover_every must be positive, got {every}")
    out: list[Fault] = []
    k = 1
    while k * every <= duration:
        out.append(Recover(k * every))
        k += 1
    return out


def _random_rate(rng: random.Random, low: float, high: float) -> float:
    return max(0.001, round(rng.uniform(low, high), 3))


def suspend_for_jumps(faults: Iterable[Fault]) -> list[Fault]:
    """``faults`` with a :class:`Crash` of its server just before each
    :class:`ClockJump`: a host suspended, whose clock has moved on when it is back (at
    the next :class:`Restart` or :class:`Recover`). A restarted server waits out the
    lease of any leader it may have acknowledged (§6.4.1), so such jumps stay within a
    drift bound, as those of a running follower do not."""
    out: list[Fault] = []
    for fault in faults:
        if isinstance(fault, ClockJump):
            out.append(Crash(fault.at, fault.name))
        out.append(fault)
    return out


def _random_fault(
    rng: random.Random,
    kind: str,
    at: float,
    names: list[str],
    everyone: list[str],
    drift: float = DEFAULT_MAX_CLOCK_DRIFT,
) -> Fault:
    if kind == "partition":
        cut = [n for n in names if rng.random() < 0.5]
        return Partition(at, (cut, [n for n in names if n not in cut]))
    if kind in ("isolate", "crash", "restart", "trigger_election"):
        return FAULT_KINDS[kind](at, rng.choice(names))  # type: ignore[call-arg]
    if kind == "loss":
        return Loss(at, rng.choice(LOSS_RATES))
    if kind == "duplication":
        return Duplication(at, rng.choice(DUPLICATION_RATES))
    if kind == "delay":
        low, high = rng.choice(DELAYS)
        return Delay(at, low, high)
    if kind == "add_server":
        return AddServer(at, rng.choice(everyone), rng.random() < 0.7)
    if kind == "remove_server":
        return RemoveServer(at, rng.choice(everyone))
    if kind == "transfer":
        return TransferLeadership(at, rng.choice([None, *names]))
    if kind == "clock_rate":
        return ClockRate(at, rng.choice(everyone), _random_rate(rng, 1 - drift, 1 + drift))
    if kind == "clock_rate_leader":  # the slow half: the lease's worst case
        return ClockRateLeader(at, _random_rate(rng, 1 - drift, 1.0))
    if kind == "clock_jump":
        return ClockJump(at, rng.choice(everyone), round(rng.uniform(0, MAX_CLOCK_JUMP), 3))
    return FAULT_KINDS[kind](at)
