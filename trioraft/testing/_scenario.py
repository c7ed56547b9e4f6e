"""One whole-cluster scenario under a fault schedule: the property test's unit of work.

:func:`check_fault_schedule` runs a counter cluster under a schedule while a client
writes, then recovers it and checks everything Raft promises: the invariants as it runs,
liveness after the recovery, and that every acknowledged write was applied exactly once,
in the same order everywhere. A failure raises with a one-line command that reproduces
it from the repository root (:func:`reproduction`).
"""

from __future__ import annotations

from typing import Any

import trio

from .._errors import NotLeader, OutcomeUnknown, RaftError
from .._server import Server
from ._cluster import Cluster, members_of, open_cluster
from ._machines import Counter
from ._run import run
from ._schedule import FaultSchedule

__all__ = ["SPARES", "check_fault_schedule", "reproduction"]

#: Servers started outside the cluster, that membership faults add and remove.
SPARES = ("x1", "x2")
#: Times the final write is tried when its leader loses its leadership (see
#: :func:`_final_write`).
FINAL_WRITE_ATTEMPTS = 3
#: Real seconds one scenario may take before it counts as a hang.
HANG_TIMEOUT = 120.0


async def _scenario(
    schedule: FaultSchedule,
    servers: int,
    seed: int,
    options: dict[str, Any],
    sync_latency: tuple[float, float] | None,
) -> None:
    acknowledged: list[int] = []
    issued: list[int] = []
    async with open_cluster(
        Counter, servers, seed=seed, check_interval=0.02, sync_latency=sync_latency, **options
    ) as cluster:
        for spare in SPARES:
            await cluster.start(spare, initial_config=())

        async def client() -> None:
            for command in range(1, 10**6):
                issued.append(command)
                try:
                    with trio.move_on_after(2):
                        await cluster.write(command, attempts=1)
                        acknowledged.append(command)
                except RaftError:
                    pass
                await trio.sleep(0.03)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await schedule.run(cluster)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

        # Recovery: a fully connected, loss-free network with every server back. A
        # leader must come within the liveness bound (wait_for_leader checks it).
        await cluster.recover()
        with trio.fail_after(cluster.liveness_bound + 30):
            leader = await _final_write(cluster)
            target = leader.status().commit_index
            members = members_of(leader.status()) & set(cluster.servers)
            while any(cluster[m].status().last_applied < target for m in members):
                await trio.sleep(0.01)
        cluster.check()
        sequences = {name: s.machine.applied for name, s in cluster.servers.items()}
    reference = sequences[leader.name]
    for name, applied in sequences.items():
        assert applied[: len(reference)] == reference[: len(applied)], f"{name} diverges"
    assert reference[-1] == -1
    commands = [c for c in reference if c != -1]
    assert len(commands) == len(set(commands)), "a command was applied twice"
    assert set(commands) <= set(issued), "a command nobody issued was applied"
    missing = set(acknowledged) - set(commands)
    assert not missing, f"acknowledged writes were lost: {sorted(missing)}"


async def _final_write(cluster: Cluster) -> Server:
    """Write -1 through the leader, which commits everything before it; return the
    leader that committed it. Leadership may still change once after the recovery,
    legitimately: a server removed by an entry it never received campaigns, and with
    ``check_quorum`` off nobody ignores it (§4.2.3: the lease on votes comes with
    CheckQuorum), or a transfer asked for before the recovery completes. So a write
    whose leader lost its leadership is written again, a few times at most (its -1
    may or may not be applied: -1 is not a client's command)."""
    for _ in range(FINAL_WRITE_ATTEMPTS - 1):
        leader = await cluster.wait_for_leader()
        try:
            await leader.write(-1)
            return leader
        except (NotLeader, OutcomeUnknown):
            continue
    leader = await cluster.wait_for_leader()
    await leader.write(-1)
    return leader


def reproduction(
    schedule: FaultSchedule,
    servers: int,
    seed: int,
    options: dict[str, Any],
    sync_latency: tuple[float, float] | None = None,
) -> str:
    """A shell command that reruns exactly this scenario, from any directory."""
    code = (
        "from trioraft.testing import *; "
        f"check_fault_schedule({schedule!r}, servers={servers}, seed={seed}, "
        f"options={options!r}, sync_latency={sync_latency!r})"
    )
    return f'python -c "{code}"'


def check_fault_schedule(
    schedule: FaultSchedule,
    *,
    servers: int = 3,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    sync_latency: tuple[float, float] | None = None,
) -> None:
    """Run a counter cluster of ``servers`` servers (``s1``, ``s2``, ...) and two spares
    under ``schedule`` while a client writes, deterministically for ``seed``; then recover
    and check Raft's invariants, liveness, and that every acknowledged write was applied
    exactly once, in one order on every server. ``options`` are server options (small
    ``snapshot_threshold`` values exercise compaction); with ``sync_latency``, storage
    syncs take time, so crashes lose what was written and not yet synced.

    Raises :class:`AssertionError` on any failure, with the schedule, the seed and a
    command that reproduces it (see :func:`reproduction`).
    """
    opts = dict(options or {})
    try:
        run(
            _scenario,
            schedule,
            servers,
            seed,
            opts,
            sync_latency,
            seed=seed,
            hang_timeout=HANG_TIMEOUT,
        )
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        repro = reproduction(schedule, servers, seed, opts, sync_latency)
        raise AssertionError(
            f"scenario failed with seed={seed}, {servers} servers, options={opts}, "
            f"sync_latency={sync_latency}.\nschedule:\n{schedule}\nreproduce with:\n  {repro}"
        ) from exc
