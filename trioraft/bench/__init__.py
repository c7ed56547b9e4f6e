"""trioraft's benchmark: ``python -m trioraft.bench [--json]`` (see ``_base``'s
documentation of the sections and their method). Each section is a module of this
package; importing the package registers them, in order."""

from . import (  # noqa: F401  (registers the sections, in this order)
    catchup,
    election,
    floor,
    linearizability,
    simulation,
    throughput,
)
from ._base import (
    SECTIONS,
    BenchOptions,
    Progress,
    Section,
    SkipSection,
    main,
    parse_args,
    percentile,
    register_section,
    render_report,
    run_benchmark,
)
from .catchup import measure_catch_up, render_catch_up
from .election import ElectionStats, measure_election
from .floor import find_floor, render_floor, run_floor
from .linearizability import (
    DictMachine,
    measure_dict_linearizability,
    measure_linearizability,
    render_linearizability,
    simulated_counter_history,
    simulated_dict_history,
)
from .simulation import measure_simulation, render_simulation
from .throughput import ThroughputRun, measure_throughput

__all__ = [
    "SECTIONS",
    "DictMachine",
    "BenchOptions",
    "ElectionStats",
    "Progress",
    "Section",
    "SkipSection",
    "ThroughputRun",
    "find_floor",
    "main",
    "measure_catch_up",
    "measure_dict_linearizability",
    "measure_election",
    "measure_linearizability",
    "measure_simulation",
    "measure_throughput",
    "parse_args",
    "percentile",
    "register_section",
    "render_catch_up",
    "render_floor",
    "render_linearizability",
    "render_report",
    "render_simulation",
    "run_benchmark",
    "run_floor",
    "simulated_counter_history",
    "simulated_dict_history",
]
