"""The ``simulation`` section of the benchmark (see :mod:`trioraft.bench`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..testing.soak import SoakResult, soak_seed
from ._base import (
    BenchOptions,
    Reporter,
    Result,
    _num,
    _records_table,
    section,
)


# ------------------------------------------------------------------------ simulation
def measure_simulation(seeds: int, duration: float, rate: float = 10.0) -> list[SoakResult]:
    """Simulation speed: ``seeds`` soak runs (:func:`trioraft.testing.soak.soak_seed`) of 5
    servers for ``duration`` virtual seconds under a random fault schedule (one fault per
    virtual second, a recovery every 5) with ``rate`` client operations per virtual
    second, each history checked for linearizability. Raises if a run fails."""
    runs = []
    for seed in range(seeds):
        result = soak_seed(seed, servers=5, duration=duration, rate=rate)
        if not result.ok:
            raise RuntimeError(f"simulation seed {seed} failed: {result.failure}")
        runs.append(result)
    return runs


def run_simulation(
    options: BenchOptions, results: Mapping[str, Result], progress: Reporter
) -> Result:
    """The ``simulation`` section: :func:`measure_simulation`."""
    progress(f"simulation: {options.sim_seeds} runs of {options.sim_seconds:g} virtual s ...")
    runs = measure_simulation(options.sim_seeds, options.sim_seconds)
    total_virtual = sum(r.virtual_s for r in runs)
    total_wall = sum(r.wall_s for r in runs)
    total_cpu = sum(r.cpu_s for r in runs)
    return {
        "runs": [r.as_json() for r in runs],
        "speed": total_virtual / total_wall,
        "min_speed": min(r.speed for r in runs),
        #: Virtual seconds per CPU second (other processes disturb it less than wall time).
        "cpu_speed": total_virtual / total_cpu if total_cpu else None,
    }


def render_simulation(result: Result) -> list[str]:
    """Table lines for the ``simulation`` section."""
    lines = _records_table(
        result["runs"],
        "seed: {seed} | virtual s: {virtual_s:.0f} | wall s: {wall_s:.2f} | speed: {speed:.0f} | "
        "operations: {operations} | faults: {faults} | messages: {messages:,}",
    )
    cpu_speed = result.get("cpu_speed")
    lines.append(
        f"overall {result['speed']:.0f} virtual s per wall s "
        f"({_num(cpu_speed, '.0f')} per CPU s; slowest run {result['min_speed']:.0f} per wall s): "
        "5 servers, one random fault per virtual "
        "second and a recovery every 5, 10 client operations per virtual second, each history "
        "checked for linearizability"
    )
    return lines


SECTION = section(
    "simulation",
    "Simulation speed (virtual clock, faults)",
    run_simulation,
    render_simulation,
    options=("sim_seeds", "sim_seconds"),
)
