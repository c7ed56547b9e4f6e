"""Fault schedules: timed faults, sorted, printable and storable; inflicted on a cluster
by :meth:`FaultSchedule.run`, or drawn at random by :meth:`FaultSchedule.random`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from .._core.options import check_clock_drift
from .._server import TraceEvent
from ._cluster import Cluster
from ._faults import (
    CLOCK_KINDS,
    DEFAULT_MAX_CLOCK_DRIFT,
    DELAYS,
    DUPLICATION_RATES,
    FAULT_KINDS,
    LOSS_RATES,
    MAX_CLOCK_JUMP,
    AddServer,
    ClockJump,
    ClockRate,
    ClockRateLeader,
    Crash,
    Delay,
    Duplication,
    Fault,
    IsolateLeader,
    Loss,
    Partition,
    Recover,
    RemoveServer,
    SetMembers,
    TransferLeadership,
)
from ._memberships import MEMBERSHIP_KINDS, MemberPlan

__all__ = ["FaultSchedule", "suspend_for_jumps"]


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
        stay on time; :meth:`run` returns once the last has finished. ``log(time,
        text)`` is told of each fault as it is inflicted, and of what each background
        call came to (``"<fault>: done"``, or the error it raised)."""
        start = trio.current_time()

        def outcome(event: TraceEvent) -> None:
            if log is not None and event.kind == "outcome":
                log(event.time, f"{event.data['what']}: {event.data['outcome']}")

        cluster.add_tracer(outcome)
        try:
            async with trio.open_nursery() as nursery:
                for fault in self.faults:
                    await trio.sleep_until(start + fault.at)
                    if not isinstance(fault, Recover):
                        cluster.note_fault()
                    what = await fault.apply(cluster, nursery)
                    if log is not None:
                        log(trio.current_time(), what)
        finally:
            cluster.remove_tracer(outcome)

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
        membership: float | None = None,
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
        within ``1 ± max_clock_drift``.

        Membership changes (:class:`AddServer`, :class:`RemoveServer`,
        :class:`SetMembers`) name ``names`` and ``spares``. A :class:`SetMembers` is a
        change of several servers: a swap of voters, the replacement of several, a
        demotion of voters to learners, or any configuration of those servers, drawn
        from the configuration the changes before it (in time) would make. With
        ``membership`` (a share from 0 to 1), that share of the faults are membership
        changes (half of them :class:`SetMembers`), and the other faults hit spares too
        (crashes, isolation, partitions, transfers: a spare may be a voter by then).
        Without it, :class:`SetMembers` is drawn only if ``kinds`` names it, so that the
        seeds of earlier runs keep their schedules."""
        bound = check_clock_drift("max_clock_drift", max_clock_drift)
        drift = bound if clock_drift is None else check_clock_drift("clock_drift", clock_drift)
        pick, allowed = _kind_picker(kinds, clock_drift is not None, membership)
        everyone = list(names) + list(spares)
        targets = everyone if membership is not None else list(names)
        drawing = _Drawing(rng, drift, targets, everyone, MemberPlan(names, everyone))
        faults: list[Fault] = [
            ClockRate(0.0, n, _random_rate(rng, 1 - drift, 1 + drift))
            for n in (everyone if clock_drift is not None else ())
        ]
        faults += drawing.faults(pick, count, duration, SetMembers.kind in allowed)
        if drift <= bound:
            faults = suspend_for_jumps(faults)
        return cls(faults + _recoveries(duration, recover_every))


def _kind_picker(
    kinds: Iterable[str] | None, clocks: bool, membership: float | None
) -> tuple[Callable[[random.Random], str], list[str]]:
    """How each fault's kind is drawn, and the kinds allowed: ``kinds`` (default: all
    but recoveries, clock faults unless ``clocks``, and :class:`SetMembers` unless
    ``membership``), drawn evenly, or with ``membership``, that share of membership
    changes (by :data:`MEMBERSHIP_KINDS`' weights)."""
    hidden = {"recover"} | (set() if clocks else CLOCK_KINDS)
    if membership is None:
        hidden.add(SetMembers.kind)
    allowed = sorted(kinds) if kinds is not None else sorted(set(FAULT_KINDS) - hidden)
    for kind in allowed:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
    if not allowed:
        raise ValueError("kinds names no fault kind to draw from")
    if membership is None:
        return (lambda rng: rng.choice(allowed)), allowed
    if isinstance(membership, bool) or not isinstance(membership, (int, float)):
        raise TypeError(f"membership must be a share from 0 to 1, got {membership!r}")
    if not 0 <= membership <= 1:
        raise ValueError(f"membership must be a share from 0 to 1, got {membership!r}")
    changes = [k for k, weight in MEMBERSHIP_KINDS.items() if k in allowed for _ in range(weight)]
    others = [k for k in allowed if k not in MEMBERSHIP_KINDS]
    if membership > 0 and not changes:
        raise ValueError(
            f"membership={membership} asks for membership changes, but kinds has none of "
            f"{sorted(MEMBERSHIP_KINDS)}"
        )

    def pick(rng: random.Random) -> str:
        change = rng.random() < membership
        return rng.choice(changes if (change and changes) or not others else others)

    return pick, allowed


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


@attrs.define
class _Drawing:
    """What random faults are drawn from: ``rng``; clock rates within ``1 ± drift``;
    the servers the faults on a server hit (``names``); every server membership changes
    and clock faults may name (``everyone``); the configuration the membership changes
    drawn so far would make (``plan``)."""

    rng: random.Random
    drift: float
    names: list[str]
    everyone: list[str]
    plan: MemberPlan

    def faults(
        self, pick: Callable[[random.Random], str], count: int, duration: float, ordered: bool
    ) -> list[Fault]:
        """``count`` faults within ``duration``, of kinds drawn by ``pick``; with
        ``ordered``, their times are drawn first, so that they are drawn in time order
        (membership changes follow one another as they will happen)."""
        rng = self.rng
        faults: list[Fault] = []
        times = sorted(rng.uniform(0, duration) for _ in range(count)) if ordered else []
        for k in range(count):
            at = times[k] if ordered else rng.uniform(0, duration)
            kind = pick(rng)
            faults.append(self.fault(kind, at))
            if kind == "clock_rate_leader":  # and soon cut off: the lease's race
                faults.append(IsolateLeader(min(duration, at + rng.uniform(0, 0.3))))
        return faults

    def fault(self, kind: str, at: float) -> Fault:
        """One fault of ``kind`` at ``at``."""
        rng, names, everyone, plan, drift = (
            self.rng, self.names, self.everyone, self.plan, self.drift,
        )  # fmt: skip
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
            add = AddServer(at, rng.choice(everyone), rng.random() < 0.7)
            plan.added(add.name, add.voter)
            return add
        if kind == "remove_server":
            remove = RemoveServer(at, rng.choice(everyone))
            plan.removed(remove.name)
            return remove
        if kind == "set_members":
            voters, learners = plan.draw(rng)
            return SetMembers(at, voters, learners)
        if kind == "transfer":
            return TransferLeadership(at, rng.choice([None, *names]))
        if kind == "clock_rate":
            return ClockRate(at, rng.choice(everyone), _random_rate(rng, 1 - drift, 1 + drift))
        if kind == "clock_rate_leader":  # the slow half: the lease's worst case
            return ClockRateLeader(at, _random_rate(rng, 1 - drift, 1.0))
        if kind == "clock_jump":
            return ClockJump(at, rng.choice(everyone), round(rng.uniform(0, MAX_CLOCK_JUMP), 3))
        return FAULT_KINDS[kind](at)
