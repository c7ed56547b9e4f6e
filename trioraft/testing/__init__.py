"""Tools for testing replicated services deterministically.

* :func:`run`: one ``trio.run`` on a virtual clock with deterministic scheduling.
* :func:`open_cluster` / :class:`Cluster`: servers of your state machine on a
  :class:`~trioraft.MemoryNetwork`, with crash, restart and the network's faults.
* :class:`InvariantMonitor`: Raft's safety properties, checked as the cluster runs.
"""

from ._cluster import Cluster, derive_seed, open_cluster
from ._invariants import InvariantMonitor, InvariantViolation
from ._run import run, scheduler_hooks_available

__all__ = [
    "Cluster",
    "InvariantMonitor",
    "InvariantViolation",
    "derive_seed",
    "open_cluster",
    "run",
    "scheduler_hooks_available",
]
