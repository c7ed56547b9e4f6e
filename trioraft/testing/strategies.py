"""Hypothesis strategies for fault schedules (they shrink towards fewer, earlier faults,
and clocks towards virtual time's own pace).

Import this module only where Hypothesis is installed (it is in trioraft's ``test`` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import strategies as st

from .._core.options import check_clock_drift
from . import _faults as menu
from ._schedule import FaultSchedule, suspend_for_jumps

__all__ = ["fault_schedules", "faults"]


def faults(
    names: Sequence[str],
    *,
    duration: float = 10.0,
    spares: Sequence[str] = (),
    kinds: Iterable[str] | None = None,
    clock_drift: float = menu.DEFAULT_MAX_CLOCK_DRIFT,
) -> st.SearchStrategy[menu.Fault]:
    """One fault at a time in ``[0, duration]`` (whole milliseconds), on servers ``names``
    (``spares`` are extra names that membership faults may add and remove).
    ``kinds`` limits the fault kinds (see :data:`~trioraft.testing.FAULT_KINDS`).

    :class:`~trioraft.testing.SetMembers` draws each of ``names`` and ``spares`` a
    voter, a learner or out of the configuration (at least one voter): swaps,
    replacements of several voters and demotions to learner, shrinking towards no
    change (``names`` voters, the spares out).

    :class:`~trioraft.testing.ClockRate` draws rates within ``1 ± clock_drift`` (whole
    thousandths; by default the servers' default ``max_clock_drift``, so within the
    bound of their lease reads: pass more to go beyond it).
    :class:`~trioraft.testing.ClockJump` draws jumps of up to two seconds; a jump of a
    running follower is beyond every drift bound (see :func:`fault_schedules`)."""
    names = list(names)
    if not names:
        raise ValueError("faults() needs at least one server name")
    allowed = set(kinds) if kinds is not None else set(menu.FAULT_KINDS)
    unknown = allowed - set(menu.FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
    at = st.integers(0, int(duration * 1000)).map(lambda ms: ms / 1000)
    name = st.sampled_from(names)
    anyone = st.sampled_from(names + list(spares))
    options: dict[str, st.SearchStrategy[menu.Fault]] = {
        "heal": st.builds(menu.Heal, at),
        "recover": st.builds(menu.Recover, at),
        "partition": _partitions(at, names),
        "isolate": st.builds(menu.Isolate, at, name),
        "isolate_leader": st.builds(menu.IsolateLeader, at),
        "loss": st.builds(menu.Loss, at, st.sampled_from(menu.LOSS_RATES)),
        "duplication": st.builds(menu.Duplication, at, st.sampled_from(menu.DUPLICATION_RATES)),
        "delay": st.sampled_from(menu.DELAYS).flatmap(
            lambda lh: st.builds(menu.Delay, at, st.just(lh[0]), st.just(lh[1]))
        ),
        "crash": st.builds(menu.Crash, at, name),
        "crash_leader": st.builds(menu.CrashLeader, at),
        "restart": st.builds(menu.Restart, at, name),
        "add_server": st.builds(menu.AddServer, at, anyone, st.booleans()),
        "remove_server": st.builds(menu.RemoveServer, at, anyone),
        "transfer": st.builds(menu.TransferLeadership, at, st.one_of(st.none(), name)),
        "trigger_election": st.builds(menu.TriggerElection, at, name),
        "set_members": _set_members(at, names, list(spares)),
        **_clock_faults(at, anyone, check_clock_drift("clock_drift", clock_drift)),
    }
    # menu.Heal first: Hypothesis shrinks towards the first alternative.
    order = ["heal", *sorted(k for k in options if k != "heal")]
    return st.one_of(*(options[k] for k in order if k in allowed))


def _partitions(at: st.SearchStrategy[float], names: list[str]) -> st.SearchStrategy[menu.Fault]:
    """:class:`~trioraft.testing.Partition` of ``names`` in two sides."""
    return st.builds(
        lambda t, side: menu.Partition(
            t,
            (
                [n for n, s in zip(names, side, strict=True) if s],
                [n for n, s in zip(names, side, strict=True) if not s],
            ),
        ),
        at,
        st.lists(st.booleans(), min_size=len(names), max_size=len(names)),
    )


#: What a server is in a drawn :class:`~trioraft.testing.SetMembers`.
_VOTER, _LEARNER, _OUT = "voter", "learner", "out"


def _set_members(
    at: st.SearchStrategy[float], names: list[str], spares: list[str]
) -> st.SearchStrategy[menu.Fault]:
    """:class:`~trioraft.testing.SetMembers` of ``names`` and ``spares``: each server
    drawn a voter, a learner or out, shrinking towards what it was at the start (the
    cluster's servers voters, the spares out): swaps, replacements of several voters and
    demotions are all a few servers changed. With no voter drawn, the first server of
    ``names`` stays one."""
    pool = list(dict.fromkeys(names + spares))
    roles = st.tuples(
        *(
            st.sampled_from((_VOTER, _LEARNER, _OUT) if n in names else (_OUT, _VOTER, _LEARNER))
            for n in pool
        )
    )

    def build(t: float, drawn: tuple[str, ...]) -> menu.Fault:
        voters = [n for n, role in zip(pool, drawn, strict=True) if role == _VOTER]
        learners = [n for n, role in zip(pool, drawn, strict=True) if role == _LEARNER]
        if not voters:
            voters = [names[0]]
            learners = [n for n in learners if n != names[0]]
        return menu.SetMembers(t, voters, learners)

    return st.builds(build, at, roles)


def _clock_faults(
    at: st.SearchStrategy[float], anyone: st.SearchStrategy[str], drift: float
) -> dict[str, st.SearchStrategy[menu.Fault]]:
    """The clock faults, rates within ``1 ± drift`` in whole thousandths (shrinking to
    1, virtual time's own pace), jumps in whole milliseconds (shrinking to 0)."""
    spread = round(drift * 1000)
    rate = st.integers(-spread, spread).map(lambda p: 1 + p / 1000)
    jump = st.integers(0, int(menu.MAX_CLOCK_JUMP * 1000)).map(lambda ms: ms / 1000)
    return {
        "clock_rate": st.builds(menu.ClockRate, at, anyone, rate),
        "clock_rate_leader": st.builds(menu.ClockRateLeader, at, rate),
        "clock_jump": st.builds(menu.ClockJump, at, anyone, jump),
    }


def fault_schedules(
    names: Sequence[str],
    *,
    duration: float = 10.0,
    max_faults: int = 10,
    spares: Sequence[str] = (),
    kinds: Iterable[str] | None = None,
    clock_drift: float = menu.DEFAULT_MAX_CLOCK_DRIFT,
    max_clock_drift: float = menu.DEFAULT_MAX_CLOCK_DRIFT,
) -> st.SearchStrategy[FaultSchedule]:
    """Schedules of up to ``max_faults`` faults within ``duration`` seconds (see
    :func:`faults`). Shrinking removes faults and moves them earlier.

    ``max_clock_drift`` is the servers' bound (the option of that name). Within it
    (``clock_drift <= max_clock_drift``, the default), each
    :class:`~trioraft.testing.ClockJump` comes with a :class:`~trioraft.testing.Crash`
    of its server at the same time (a host suspended; the pair counts as two faults), as
    :meth:`FaultSchedule.random <trioraft.testing.FaultSchedule.random>` does; beyond
    it, jumps hit running servers too."""
    within = check_clock_drift("clock_drift", clock_drift) <= check_clock_drift(
        "max_clock_drift", max_clock_drift
    )
    drawn = faults(names, duration=duration, spares=spares, kinds=kinds, clock_drift=clock_drift)
    schedules = st.lists(drawn, max_size=max_faults)
    if within:
        # At most max_faults still: a pair that would go past it loses its jump.
        return schedules.map(lambda fs: FaultSchedule(suspend_for_jumps(fs)[:max_faults]))
    return schedules.map(FaultSchedule)
