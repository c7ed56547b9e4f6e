"""trioraft's benchmark: ``python -m trioraft.bench [--json]`` (see ``_base``'s
documentation of the sections and their method). Each section is a module of this
package; importing the package registers them, in order."""

# isort: off
from . import (  # noqa: F401  (registers the sections, in this order)
    throughput,
    floor,
    election,
    catchup,
    simulation,
    linearizability,
    memory,
    snapshot,
    disk,
    reads,
    tcp,
    hostile,
)

# isort: on
from ._base import (
    SECTIONS,
    BenchOptions,
    Reporter,
    Section,
    SkipSection,
    main,
    parse_args,
    percentile,
    register_section,
    render_report,
    run_benchmark,
)
from ._cluster import LoopResult, closed_loop
from .catchup import measure_catch_up, render_catch_up
from .disk import measure_disk, measure_fsync, render_disk
from .election import ElectionStats, measure_election
from .floor import FloorRun, measure_floor, render_floor
from .linearizability import (
    RegisterDict,
    measure_dict_linearizability,
    measure_linearizability,
    render_linearizability,
    simulated_counter_history,
    simulated_dict_history,
)
from .memory import measure_memory, render_memory
from .plots import write_plots
from .reads import measure_reads, render_reads
from .simulation import measure_simulation, render_simulation
from .snapshot import BlobMachine, measure_snapshot, render_snapshot
from .throughput import ThroughputRun, measure_throughput

__all__ = [
    "SECTIONS",
    "BlobMachine",
    "RegisterDict",
    "BenchOptions",
    "ElectionStats",
    "FloorRun",
    "LoopResult",
    "Reporter",
    "Section",
    "SkipSection",
    "ThroughputRun",
    "closed_loop",
    "main",
    "measure_catch_up",
    "measure_dict_linearizability",
    "measure_disk",
    "measure_election",
    "measure_floor",
    "measure_fsync",
    "measure_linearizability",
    "measure_memory",
    "measure_reads",
    "measure_simulation",
    "measure_snapshot",
    "measure_throughput",
    "parse_args",
    "percentile",
    "register_section",
    "render_catch_up",
    "render_disk",
    "render_floor",
    "render_linearizability",
    "render_memory",
    "render_reads",
    "render_report",
    "render_simulation",
    "render_snapshot",
    "run_benchmark",
    "simulated_counter_history",
    "simulated_dict_history",
    "write_plots",
]
