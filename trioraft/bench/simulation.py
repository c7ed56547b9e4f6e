"""The ``simulation`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

import attrs
import trio

import trioraft
import trioraft.testing
from trioraft.recipes import Counter

from ._base import (
    BenchOptions,
    Progress,
    Result,
    _records_table,
    register_section,
)


# ------------------------------------------------------------------------ simulation
@attrs.frozen(kw_only=True)
class SimulationRun:
    """One simulated run: 5 servers under random faults with a steady write load."""

    seed: int
    virtual_s: float
    wall_s: float
    writes_ok: int
    faults: int
    messages: int

    @property
    def speed(self) -> float:
        """Virtual seconds simulated per wall second."""
        return self.virtual_s / self.wall_s

    def as_json(self) -> Result:
        """This run as a JSON-able dict."""
        return {**attrs.asdict(self), "speed": self.speed}


async def _simulation_trial(seed: int, duration: float, rate: float) -> tuple[int, int, int]:
    from ..testing import FaultSchedule, open_cluster

    schedule = FaultSchedule.random(
        random.Random(seed),
        [f"s{i}" for i in range(1, 6)],
        duration=duration,
        count=max(1, int(duration)),
        recover_every=5.0,
    )
    ok = 0
    async with open_cluster(Counter, 5, seed=seed, init_arg=0) as cluster:

        async def client() -> None:
            nonlocal ok
            while True:
                with trio.move_on_after(1.0):
                    try:
                        await cluster.write(1, attempts=1)
                        ok += 1
                    except trioraft.RaftError:
                        pass
                await trio.sleep(1 / rate)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await schedule.run(cluster)
            await trio.sleep_until(duration)
            nursery.cancel_scope.cancel()
        messages = cluster.network.statistics().sent
    return ok, len(schedule), messages


def measure_simulation(seeds: int, duration: float, rate: float = 10.0) -> list[SimulationRun]:
    """Simulation speed: ``seeds`` runs of 5 servers for ``duration`` virtual seconds under
    a random fault schedule (one fault per virtual second) with ``rate`` writes per
    virtual second, each a fresh :func:`trioraft.testing.run`."""
    runs = []
    for seed in range(seeds):
        start = time.perf_counter()
        ok, faults, messages = trioraft.testing.run(
            _simulation_trial, seed, duration, rate, seed=seed
        )
        wall = time.perf_counter() - start
        runs.append(
            SimulationRun(
                seed=seed,
                virtual_s=duration,
                wall_s=wall,
                writes_ok=ok,
                faults=faults,
                messages=messages,
            )
        )
    return runs


def run_simulation(
    options: BenchOptions, results: Mapping[str, Result], progress: Progress
) -> Result:
    """The ``simulation`` section: :func:`measure_simulation`."""
    progress(f"simulation: {options.sim_seeds} runs of {options.sim_seconds:g} virtual s ...")
    runs = measure_simulation(options.sim_seeds, options.sim_seconds)
    total_virtual = sum(r.virtual_s for r in runs)
    total_wall = sum(r.wall_s for r in runs)
    return {
        "runs": [r.as_json() for r in runs],
        "speed": total_virtual / total_wall,
        "min_speed": min(r.speed for r in runs),
    }


def render_simulation(result: Result) -> list[str]:
    """Table lines for the ``simulation`` section."""
    lines = _records_table(
        result["runs"],
        "seed: {seed} | virtual s: {virtual_s:.0f} | wall s: {wall_s:.2f} | speed: {speed:.0f} | "
        "writes ok: {writes_ok} | faults: {faults} | messages: {messages:,}",
    )
    lines.append(
        f"overall {result['speed']:.0f} virtual s per wall s "
        f"(slowest run {result['min_speed']:.0f}): 5 servers, one random fault per virtual "
        "second and a recovery every 5, 10 writes per virtual second"
    )
    return lines


register_section(
    "simulation",
    "Simulation speed (virtual clock, faults)",
    run_simulation,
    render_simulation,
    options=("sim_seeds", "sim_seconds"),
)
