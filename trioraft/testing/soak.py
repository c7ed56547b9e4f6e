"""Soak runs: many seeded, randomized fault schedules against a cluster under load.

``python -m trioraft.testing.soak --seeds 20 --servers 5`` runs 20 seeds. Each seed is
one deterministic run (:func:`trioraft.testing.run`) of a counter service: a random
fault schedule (partitions, isolation, loss, delay, crashes, restarts, elections,
transfers, membership changes, with a recovery every few seconds) while clients write
and read through whoever leads. Raft's invariants are checked as it runs; at the end
the cluster must recover, and the clients' history must be linearizable. A failing seed
is printed with its schedule, the tail of its trace and what went wrong; rerun exactly
that run with ``--seed-start SEED --seeds 1``. The ratio of virtual to wall time is
reported. ``--clock-drift`` gives every server a clock of its own that drifts and jumps
(within the servers' ``max_clock_drift`` unless given a larger spread). ``--membership``
makes half the faults (or another share) membership changes, most of them of several
servers at once (joint consensus), with three spare servers to bring in.

To soak your own service from Python, call :func:`soak_seed` with your state machine
class, a sequential :class:`~trioraft.testing.Model` of it and a workload.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import attrs
import trio

from .._client import open_client
from .._core.options import check_clock_drift
from .._errors import NotLeader, RaftError
from .._server import TraceEvent
from ..recipes import Counter
from ._cluster import Cluster, open_cluster
from ._faults import DEFAULT_MAX_CLOCK_DRIFT
from ._linearizability import History, Model, counter_model
from ._run import run
from ._schedule import FaultSchedule
from ._trace import TraceRecorder

__all__ = ["SoakResult", "counter_workload", "main", "soak", "soak_seed"]

#: ``workload(rng) -> (kind, input)``: the next client operation ("write" or "read").
Workload = Callable[[random.Random], tuple[str, Any]]


def counter_workload(rng: random.Random) -> tuple[str, Any]:
    """Two writes for every read. Each write adds a large random amount, so that writes
    of unknown outcome can be told apart (the linearizability search stays fast)."""
    if rng.random() < 2 / 3:
        return "write", rng.randint(1, 10**9)
    return "read", None


@attrs.frozen(kw_only=True)
class SoakResult:
    """What one seed did."""

    seed: int
    ok: bool
    #: Virtual seconds simulated, and wall seconds they took.
    virtual_s: float
    wall_s: float
    operations: int
    unknown: int
    faults: int
    #: Messages the simulated network carried.
    messages: int = 0
    #: On failure: what failed, the schedule, the trace tail, the linearizability report.
    failure: str = ""
    schedule: str = ""
    tail: tuple[str, ...] = ()
    #: CPU seconds of this process the run took (a measure other processes disturb less
    #: than wall time).
    cpu_s: float = 0.0
    #: The schedule's faults by kind.
    kinds: dict[str, int] = attrs.field(factory=dict)
    #: What the schedule's membership changes and transfers came to, by kind and
    #: outcome (``"set_members: done"``, ``"set_members: ChangeInProgress"``...).
    outcomes: dict[str, int] = attrs.field(factory=dict)
    #: Joint configurations (C_old,new, §4.3) committed in the run.
    joint: int = 0

    @property
    def speed(self) -> float:
        """Virtual seconds per wall second."""
        return self.virtual_s / self.wall_s if self.wall_s else float("inf")

    def as_json(self) -> dict[str, Any]:
        """This result as a JSON-able dict."""
        data = attrs.asdict(self)
        data["tail"] = list(self.tail)
        data["speed"] = self.speed
        return data


_SPARES = ("x1",)
#: The spares of runs with ``membership``: enough to replace several voters at once.
_MEMBERSHIP_SPARES = ("x1", "x2", "x3")
#: Real seconds one seed may take before it counts as a hang.
_HANG_TIMEOUT = 300.0


def _spares(membership: float | None) -> tuple[str, ...]:
    return _SPARES if membership is None else _MEMBERSHIP_SPARES


def _schedule(
    seed: int,
    servers: int,
    duration: float,
    clock_drift: float | None = None,
    membership: float | None = None,
) -> FaultSchedule:
    return FaultSchedule.random(
        random.Random(seed),
        [f"s{i}" for i in range(1, servers + 1)],
        duration=duration,
        count=int(duration),
        spares=_spares(membership),
        recover_every=5.0,
        clock_drift=clock_drift,
        max_clock_drift=DEFAULT_MAX_CLOCK_DRIFT,  # the servers' (their default)
        membership=membership,
    )


@attrs.frozen(kw_only=True)
class _Settings:
    servers: int
    duration: float
    machine: Callable[..., Any]
    model: Model
    workload: Workload
    clients: int
    rate: float
    duplication: float
    snapshot_threshold: int
    sync_latency: tuple[float, float] | None
    sessions: bool
    spread_reads: bool = False
    clock_drift: float | None = None
    membership: float | None = None


class _Run:
    """One soak run's clients, over one cluster."""

    def __init__(self, seed: int, settings: _Settings, cluster: Cluster) -> None:
        self.seed = seed
        self.settings = settings
        self.cluster = cluster
        self.history = History()
        self.acknowledged: list[Any] = []

    def _rng(self, k: int) -> random.Random:
        return random.Random(f"{self.seed}/client/{k}")

    async def direct_client(self, k: int) -> None:
        """Calls on whichever server leads; an unknown outcome stays unknown."""
        rng, s = self._rng(k), self.settings
        while True:
            await trio.sleep(rng.expovariate(s.rate / s.clients))
            leader = self.cluster.leader()
            if leader is None:
                continue
            kind, value = s.workload(rng)
            reader = leader
            if s.spread_reads:  # any running server: follower reads, lease on the leader
                running = sorted(self.cluster.servers)
                reader = self.cluster.servers[rng.choice(running)]
            try:
                with trio.move_on_after(2.0):
                    async with self.history.operation(k, kind, value) as op:
                        if kind == "write":
                            op.output = await leader.write(value)
                        else:
                            op.output = await reader.read(value)
            except (RaftError, ValueError):
                pass

    async def session_client(self, k: int) -> None:
        """Client mode: trioraft.open_client, which retries until it has an answer and
        writes exactly once (sessions, dissertation §6.3)."""
        rng, s, names = self._rng(k), self.settings, self.cluster.names
        async with open_client(names, network=self.cluster.network, name=f"c{k}") as remote:
            while True:
                await trio.sleep(rng.expovariate(s.rate / s.clients))
                kind, value = s.workload(rng)
                async with self.history.operation(k, kind, value) as op:
                    if kind == "write":
                        op.output = await remote.write(value)
                        self.acknowledged.append(op.output)
                    else:
                        op.output = await remote.read(value)

    async def final_read(self) -> None:
        """Recovery: every server back, a clean network; the cluster must serve again,
        with a leader within the liveness bound (wait_for_leader checks it)."""
        cluster = self.cluster
        await cluster.recover()
        with trio.fail_after(cluster.liveness_bound + 30):
            while True:
                leader = await cluster.wait_for_leader()
                try:
                    async with self.history.operation("final", "read", None) as op:
                        op.output = await leader.read(None)
                    return
                except NotLeader:
                    await trio.sleep(0.1)

    def verdict(self) -> tuple[int, int]:
        """Check the history; return (operations, unknown outcomes)."""
        result = self.history.check(self.settings.model, max_seconds=60)
        if result.ok is None:
            raise TimeoutError(
                "the linearizability check gave up after 60 s (undecided, not a violation):"
                f"\n{result}"
            )
        if result.ok is not True:
            raise AssertionError(f"the history is not linearizable:\n{result}")
        acked = self.acknowledged
        if self.settings.sessions and len(set(acked)) != len(acked):
            raise AssertionError(f"two writes of clients got the same reply: {sorted(acked)}")
        operations = self.history.operations
        return len(operations), sum(op.unknown for op in operations)


async def _soak_run(
    seed: int, schedule: FaultSchedule, settings: _Settings, recorder: TraceRecorder
) -> dict[str, Any]:
    names = [f"s{i}" for i in range(1, settings.servers + 1)]
    async with open_cluster(
        settings.machine,
        names,
        seed=seed,
        sync_latency=settings.sync_latency,
        snapshot_threshold=settings.snapshot_threshold,
        snapshot_trailing=min(5, settings.snapshot_threshold),
        follower_reads=settings.spread_reads,
        lease_reads=settings.spread_reads,
    ) as cluster:
        recorder.attach(cluster)
        cluster.duplication_baseline = settings.duplication
        cluster.set_duplication(settings.duplication)
        for spare in _spares(settings.membership):
            await cluster.start(spare, initial_config=())
        outcomes: collections.Counter[str] = collections.Counter()
        cluster.add_tracer(functools.partial(_count_outcome, outcomes))
        soak_run = _Run(seed, settings, cluster)
        client = soak_run.session_client if settings.sessions else soak_run.direct_client
        async with trio.open_nursery() as nursery:
            for k in range(settings.clients):
                nursery.start_soon(client, k)
            await schedule.run(cluster)
            await trio.sleep_until(settings.duration)
            nursery.cancel_scope.cancel()
        await soak_run.final_read()
        cluster.check()
        messages = cluster.network.statistics().sent
        joint = sum(1 for c in cluster.monitor.figure3.configs.values() if c.joint)
    operations, unknown = soak_run.verdict()
    return {
        "operations": operations,
        "unknown": unknown,
        "messages": messages,
        "outcomes": dict(outcomes),
        "joint": joint,
    }


def _count_outcome(outcomes: collections.Counter[str], event: TraceEvent) -> None:
    """Count what a schedule's call came to: its kind and the outcome's first word."""
    if event.kind == "outcome":
        outcomes[f"{event.data['call']}: {event.data['outcome'].split(':')[0]}"] += 1


def soak_seed(
    seed: int,
    *,
    servers: int = 5,
    duration: float = 30.0,
    machine: Callable[..., Any] = Counter,
    model: Model | None = None,
    workload: Workload = counter_workload,
    clients: int = 3,
    rate: float = 10.0,
    duplication: float = 0.0,
    snapshot_threshold: int = 40,
    sync_latency: tuple[float, float] | None = (0.0, 0.002),
    sessions: bool = False,
    spread_reads: bool = False,
    clock_drift: float | None = None,
    membership: float | None = None,
    tail: int = 60,
) -> SoakResult:
    """One soak run (deterministic for a given seed and arguments). ``machine`` is the
    state machine class (called with no argument), ``model`` its sequential model
    (default: :func:`~trioraft.testing.counter_model`), ``workload`` draws each client
    operation; ``rate`` is operations per virtual second over all ``clients``;
    ``duplication`` is a rate of duplicated messages kept on throughout (recoveries
    included), on top of the schedule's own duplication faults. Servers compact their
    logs every ``snapshot_threshold`` entries (so InstallSnapshot runs) and their storage
    syncs take ``sync_latency`` (so a crash loses what was not yet synced). With
    ``sessions``, the clients are :func:`trioraft.open_client` clients, whose writes
    are applied exactly once: every write returns (unless the run ends first), each
    reply is distinct, and the history is linearizable. With ``spread_reads``, servers
    run with ``follower_reads`` and ``lease_reads`` and direct clients read from any
    running server (§6.4, §6.4.1). With ``clock_drift``, each server's clock drifts:
    it starts at a rate drawn from ``1 ± clock_drift`` and the schedule changes rates and
    makes clocks jump (:meth:`FaultSchedule.random
    <trioraft.testing.FaultSchedule.random>`); the servers keep the default
    ``max_clock_drift``, so a larger ``clock_drift`` goes beyond their bound. With
    ``membership`` (a share from 0 to 1), that share of the faults are membership
    changes, half of them :class:`~trioraft.testing.SetMembers` of several servers at
    once, among the servers and three spares (``FaultSchedule.random(membership=...)``)."""
    if clock_drift is not None:
        check_clock_drift("clock_drift", clock_drift)
    settings = _Settings(
        servers=servers,
        duration=duration,
        machine=machine,
        model=model if model is not None else counter_model(),
        workload=workload,
        clients=clients,
        rate=rate,
        duplication=duplication,
        snapshot_threshold=snapshot_threshold,
        sync_latency=sync_latency,
        sessions=sessions,
        spread_reads=spread_reads,
        clock_drift=clock_drift,
        membership=membership,
    )
    return _soak_one(seed, settings, tail)


def _soak_one(seed: int, settings: _Settings, tail: int) -> SoakResult:
    schedule = _schedule(
        seed, settings.servers, settings.duration, settings.clock_drift, settings.membership
    )
    recorder = TraceRecorder(keep=max(tail, 1) * 20)
    start, cpu = time.perf_counter(), time.process_time()
    virtual: list[float] = []

    async def timed() -> dict[str, Any]:
        t0 = trio.current_time()
        try:
            return await _soak_run(seed, schedule, settings, recorder)
        finally:
            virtual.append(trio.current_time() - t0)

    outcome: dict[str, Any] = {"operations": 0, "unknown": 0}
    try:
        outcome.update(run(timed, seed=seed, hang_timeout=_HANG_TIMEOUT))
    except BaseException as exc:  # a violation, a hang, a crash: report it with the seed
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome.update(
            ok=False,
            failure=_describe(exc),
            schedule=str(schedule),
            tail=tuple(recorder.tail(tail)),
        )
    return SoakResult(
        seed=seed,
        ok=outcome.pop("ok", True),
        virtual_s=virtual[0] if virtual else 0.0,
        wall_s=time.perf_counter() - start,
        cpu_s=time.process_time() - cpu,
        faults=len(schedule),
        kinds=dict(collections.Counter(f.kind for f in schedule.faults)),
        **outcome,
    )


def _describe(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)  # an exception group (Python 3.10: backport)
    if isinstance(inner, tuple) and inner:
        return "\n".join(_describe(e) for e in inner)
    return f"{type(exc).__name__}: {exc}"


def soak(
    seeds: Sequence[int],
    *,
    out: TextIO | None = None,
    **options: Any,
) -> list[SoakResult]:
    """Run :func:`soak_seed` for each seed, printing a line per seed to ``out``."""
    results = []
    for seed in seeds:
        result = soak_seed(seed, **options)
        results.append(result)
        if out is not None:
            status = "ok  " if result.ok else "FAIL"
            print(
                f"seed {seed:6d} {status} {result.virtual_s:7.1f} virtual s in "
                f"{result.wall_s:6.2f} s ({result.speed:5.0f}x), {result.operations} ops "
                f"({result.unknown} unknown), {result.faults} faults",
                file=out,
                flush=True,
            )
            if not result.ok:
                _print_failure(result, out)
    return results


def _print_failure(result: SoakResult, out: TextIO) -> None:
    print(f"  seed {result.seed} failed:", file=out)
    for line in result.failure.splitlines():
        print(f"    {line}", file=out)
    print("  schedule:", file=out)
    for line in result.schedule.splitlines():
        print(f"    {line}", file=out)
    print("  trace tail:", file=out)
    for line in result.tail:
        print(f"    {line}", file=out)
    print(
        f"  rerun: python -m trioraft.testing.soak --seed-start {result.seed} --seeds 1",
        file=out,
    )


_FLAGS: list[tuple[str, type, Any, str]] = [
    ("--seeds", int, 10, "how many seeds (default 10)"),
    ("--seed-start", int, 0, "first seed (default 0)"),
    ("--servers", int, 5, "servers (default 5)"),
    ("--duration", float, 30.0, "virtual seconds of faults (default 30)"),
    ("--clients", int, 3, "client tasks (default 3)"),
    ("--rate", float, 10.0, "operations per virtual second (default 10)"),
    (
        "--duplication",
        float,
        0.0,
        "rate of duplicated messages throughout, 0 to 1 (default 0; the schedules add "
        "duplication faults of their own)",
    ),
    (
        "--snapshot-threshold",
        int,
        40,
        "entries applied between snapshots (default 40: compaction and InstallSnapshot all "
        "the time)",
    ),
    (
        "--sync-latency",
        float,
        0.002,
        "most virtual seconds a storage sync takes (default 0.002; 0: at once)",
    ),
]


#: Flags handed to :func:`soak_seed` as they are.
_PASSED_ON = ("servers", "duration", "clients", "rate", "duplication", "snapshot_threshold")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trioraft.testing.soak",
        description="Randomized fault schedules against a replicated counter, checking "
        "Raft's invariants and linearizability; prints failing seeds.",
    )
    for flag, kind, default, text in _FLAGS:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument(
        "--client-mode",
        action="store_true",
        help="clients are trioraft.open_client clients (exactly-once writes through "
        "sessions) instead of direct calls on the leader",
    )
    parser.add_argument(
        "--spread-reads",
        action="store_true",
        help="servers run with follower_reads and lease_reads, and direct clients read "
        "from any running server",
    )
    parser.add_argument(
        "--clock-drift",
        type=float,
        nargs="?",
        const=DEFAULT_MAX_CLOCK_DRIFT,
        default=None,
        metavar="SPREAD",
        help="every server's clock drifts: rates drawn from 1 +- SPREAD, changed and made "
        f"to jump by the schedule (default SPREAD {DEFAULT_MAX_CLOCK_DRIFT:g}: the servers' "
        "max_clock_drift, within which lease reads stay linearizable; more goes beyond it)",
    )
    parser.add_argument(
        "--membership",
        type=float,
        nargs="?",
        const=0.5,
        default=None,
        metavar="SHARE",
        help="that share of the faults (default SHARE 0.5) are membership changes, half of "
        "them of several servers at once (swaps, replacements of several voters, demotions "
        "to learner: joint consensus), with three spare servers; other faults hit the "
        "spares too",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.seeds < 1 or args.servers < 1 or args.clients < 1:
        parser.error("--seeds, --servers and --clients must be at least 1")
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    if not 0 <= args.duplication <= 1:
        parser.error("--duplication must be from 0 to 1")
    if args.clock_drift is not None and not 0 <= args.clock_drift < 1:
        parser.error("--clock-drift must be from 0 up to (not including) 1")
    if args.membership is not None and not 0 <= args.membership <= 1:
        parser.error("--membership must be from 0 to 1")


def _summary(results: list[SoakResult], wall: float, as_json: bool) -> str:
    failed = [r.seed for r in results if not r.ok]
    virtual = sum(r.virtual_s for r in results)
    summary: dict[str, Any] = {
        "seeds": len(results),
        "failed": failed,
        "virtual_s": virtual,
        "wall_s": wall,
        "speed": virtual / wall if wall else None,
        "cpu_s": sum(r.cpu_s for r in results),
        "operations": sum(r.operations for r in results),
        "kinds": _total(r.kinds for r in results),
        "outcomes": _total(r.outcomes for r in results),
        "joint": sum(r.joint for r in results),
    }
    if as_json:
        summary["results"] = [r.as_json() for r in results]
        return json.dumps(summary)
    return (
        f"{len(results) - len(failed)}/{len(results)} seeds passed; "
        f"{virtual:.0f} virtual s in {wall:.1f} wall s ({summary['speed']:.0f}x)"
        + (f"; failing seeds: {failed}" if failed else "")
        + f"\nfaults by kind: {_counts(summary['kinds'])}"
        + f"\ncalls' outcomes: {_counts(summary['outcomes'])}"
        + f"\njoint configurations committed: {summary['joint']}"
    )


def _total(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for each in counts:
        total.update(each)
    return dict(sorted(total.items()))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (1 if any seed failed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    started = time.perf_counter()
    results = soak(
        range(args.seed_start, args.seed_start + args.seeds),
        out=sys.stderr if args.json else sys.stdout,
        **{name: getattr(args, name) for name in _PASSED_ON},
        sync_latency=(0.0, args.sync_latency) if args.sync_latency > 0 else None,
        sessions=args.client_mode,
        spread_reads=args.spread_reads,
        clock_drift=args.clock_drift,
        membership=args.membership,
    )
    print(_summary(results, time.perf_counter() - started, args.json))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
