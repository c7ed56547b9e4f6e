"""Soak runs: many seeded, randomized fault schedules against a cluster under load.

``python -m trioraft.testing.soak --seeds 20 --servers 5`` runs 20 seeds. Each seed is
one deterministic run (:func:`trioraft.testing.run`) of a counter service: a random
fault schedule (partitions, isolation, loss, delay, crashes, restarts, elections,
transfers, membership changes, with a recovery every few seconds) while clients write
and read through whoever leads. Raft's invariants are checked as it runs; at the end
the cluster must recover, and the clients' history must be linearizable. A failing seed
is printed with its schedule, the tail of its trace and what went wrong; rerun exactly
that run with ``--seed-start SEED --seeds 1``. The ratio of virtual to wall time is
reported.

To soak your own service from Python, call :func:`soak_seed` with your state machine
class, a sequential :class:`~trioraft.testing.Model` of it and a workload.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs
import trio

from .._client import open_client
from .._errors import NotLeader, RaftError
from ..recipes import Counter
from ._cluster import open_cluster
from ._faults import FaultSchedule
from ._linearizability import History, Model, counter_model
from ._run import run
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
    #: On failure: what failed, the schedule, the trace tail, the linearizability report.
    failure: str = ""
    schedule: str = ""
    tail: tuple[str, ...] = ()

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
#: Real seconds one seed may take before it counts as a hang.
_HANG_TIMEOUT = 300.0


def _schedule(seed: int, servers: int, duration: float) -> FaultSchedule:
    return FaultSchedule.random(
        random.Random(seed),
        [f"s{i}" for i in range(1, servers + 1)],
        duration=duration,
        count=int(duration),
        spares=_SPARES,
        recover_every=5.0,
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


async def _soak_run(
    seed: int, schedule: FaultSchedule, settings: _Settings, recorder: TraceRecorder
) -> tuple[int, int]:
    names = [f"s{i}" for i in range(1, settings.servers + 1)]
    history = History()
    workload, rate, clients = settings.workload, settings.rate, settings.clients
    async with open_cluster(
        settings.machine,
        names,
        seed=seed,
        sync_latency=settings.sync_latency,
        snapshot_threshold=settings.snapshot_threshold,
        snapshot_trailing=min(5, settings.snapshot_threshold),
    ) as cluster:
        recorder.attach(cluster)
        cluster.duplication_baseline = settings.duplication
        cluster.set_duplication(settings.duplication)
        for spare in _SPARES:
            await cluster.start(spare, initial_config=())

        async def client(k: int) -> None:
            client_rng = random.Random(f"{seed}/client/{k}")
            while True:
                await trio.sleep(client_rng.expovariate(rate / clients))
                leader = cluster.leader()
                if leader is None:
                    continue
                kind, value = workload(client_rng)
                try:
                    with trio.move_on_after(2.0):
                        async with history.operation(k, kind, value) as op:
                            if kind == "write":
                                op.output = await leader.write(value)
                            else:
                                op.output = await leader.read(value)
                except (RaftError, ValueError):
                    pass

        async def session_client(k: int) -> None:
            # Client mode: trioraft.open_client, which retries until it has an answer,
            # writes exactly once (sessions, dissertation §6.3).
            client_rng = random.Random(f"{seed}/client/{k}")
            async with open_client(names, network=cluster.network, name=f"c{k}") as remote:
                while True:
                    await trio.sleep(client_rng.expovariate(rate / clients))
                    kind, value = workload(client_rng)
                    async with history.operation(k, kind, value) as op:
                        if kind == "write":
                            op.output = await remote.write(value)
                            acknowledged.append(op.output)
                        else:
                            op.output = await remote.read(value)

        acknowledged: list[Any] = []
        async with trio.open_nursery() as nursery:
            for k in range(clients):
                nursery.start_soon(session_client if settings.sessions else client, k)
            await schedule.run(cluster)
            await trio.sleep_until(settings.duration)
            nursery.cancel_scope.cancel()

        # Recovery: every server back, a clean network; the cluster must serve again, with
        # a leader within the liveness bound (wait_for_leader checks it).
        await cluster.recover()
        with trio.fail_after(cluster.liveness_bound + 30):
            while True:
                leader = await cluster.wait_for_leader()
                try:
                    async with history.operation("final", "read", None) as op:
                        op.output = await leader.read(None)
                    break
                except NotLeader:
                    await trio.sleep(0.1)
        cluster.check()
    result = history.check(settings.model, max_seconds=60)
    if result.ok is None:
        raise TimeoutError(
            f"the linearizability check gave up after 60 s (undecided, not a violation):\n{result}"
        )
    if result.ok is not True:
        raise AssertionError(f"the history is not linearizable:\n{result}")
    operations = history.operations
    if settings.sessions and len(set(acknowledged)) != len(acknowledged):
        raise AssertionError(f"two writes of clients got the same reply: {sorted(acknowledged)}")
    return len(operations), sum(op.unknown for op in operations)


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
    reply is distinct, and the history is linearizable."""
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
    )
    schedule = _schedule(seed, servers, duration)
    recorder = TraceRecorder(keep=max(tail, 1) * 20)
    start = time.perf_counter()
    virtual: list[float] = []

    async def timed() -> tuple[int, int]:
        t0 = trio.current_time()
        try:
            return await _soak_run(seed, schedule, settings, recorder)
        finally:
            virtual.append(trio.current_time() - t0)

    try:
        operations, unknown = run(timed, seed=seed, hang_timeout=_HANG_TIMEOUT)
    except BaseException as exc:  # a violation, a hang, a crash: report it with the seed
        if isinstance(exc, KeyboardInterrupt):
            raise
        return SoakResult(
            seed=seed,
            ok=False,
            virtual_s=virtual[0] if virtual else 0.0,
            wall_s=time.perf_counter() - start,
            operations=0,
            unknown=0,
            faults=len(schedule),
            failure=_describe(exc),
            schedule=str(schedule),
            tail=tuple(recorder.tail(tail)),
        )
    return SoakResult(
        seed=seed,
        ok=True,
        virtual_s=virtual[0],
        wall_s=time.perf_counter() - start,
        operations=operations,
        unknown=unknown,
        faults=len(schedule),
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


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (1 if any seed failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m trioraft.testing.soak",
        description="Randomized fault schedules against a replicated counter, checking "
        "Raft's invariants and linearizability; prints failing seeds.",
    )
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--servers", type=int, default=5, help="servers (default 5)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="virtual seconds of faults (default 30)"
    )
    parser.add_argument("--clients", type=int, default=3, help="client tasks (default 3)")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="operations per virtual second (default 10)"
    )
    parser.add_argument(
        "--duplication",
        type=float,
        default=0.0,
        help="rate of duplicated messages throughout, 0 to 1 (default 0; the schedules "
        "add duplication faults of their own)",
    )
    parser.add_argument(
        "--snapshot-threshold",
        type=int,
        default=40,
        help="entries applied between snapshots (default 40: compaction and InstallSnapshot "
        "all the time)",
    )
    parser.add_argument(
        "--sync-latency",
        type=float,
        default=0.002,
        help="most virtual seconds a storage sync takes (default 0.002; 0: at once)",
    )
    parser.add_argument(
        "--client-mode",
        action="store_true",
        help="clients are trioraft.open_client clients (exactly-once writes through "
        "sessions) instead of direct calls on the leader",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.servers < 1 or args.clients < 1:
        parser.error("--seeds, --servers and --clients must be at least 1")
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    if not 0 <= args.duplication <= 1:
        parser.error("--duplication must be from 0 to 1")
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    started = time.perf_counter()
    results = soak(
        seeds,
        out=sys.stderr if args.json else sys.stdout,
        servers=args.servers,
        duration=args.duration,
        clients=args.clients,
        rate=args.rate,
        duplication=args.duplication,
        snapshot_threshold=args.snapshot_threshold,
        sync_latency=(0.0, args.sync_latency) if args.sync_latency > 0 else None,
        sessions=args.client_mode,
    )
    wall = time.perf_counter() - started
    failed = [r.seed for r in results if not r.ok]
    virtual = sum(r.virtual_s for r in results)
    summary = {
        "seeds": len(results),
        "failed": failed,
        "virtual_s": virtual,
        "wall_s": wall,
        "speed": virtual / wall if wall else None,
        "operations": sum(r.operations for r in results),
    }
    if args.json:
        summary["results"] = [r.as_json() for r in results]
        print(json.dumps(summary))
    else:
        print(
            f"{len(results) - len(failed)}/{len(results)} seeds passed; "
            f"{virtual:.0f} virtual s in {wall:.1f} wall s ({summary['speed']:.0f}x)"
            + (f"; failing seeds: {failed}" if failed else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
