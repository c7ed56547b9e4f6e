"""Tools for testing replicated services deterministically.

* :func:`run`: one ``trio.run`` on a virtual clock with deterministic scheduling.
* :func:`open_cluster` / :class:`Cluster`: servers of your state machine on a
  :class:`~trioraft.MemoryNetwork`, with crash, restart and the network's faults, each
  server on a clock of its own that may drift or jump (:meth:`Cluster.set_clock_rate`).
* :class:`InvariantMonitor`: Raft's safety properties, checked as the cluster runs.
* :class:`FaultSchedule` and its faults: timed, printable fault plans;
  :mod:`trioraft.testing.strategies` generates (and shrinks) them with Hypothesis.
* :class:`History` and :func:`check_linearizability`: record client operations and
  check them against a sequential :class:`Model` (Wing & Gong / Lowe).
* :func:`check_fault_schedule`: one whole-cluster scenario under a fault schedule,
  checked for safety, liveness and exactly-once application (what the project's own
  property test runs).
* ``python -m trioraft.testing.soak``: randomized, seeded soak runs.
* :func:`free_tcp_ports`: ports for servers a test starts over TCP, safe from the
  kernel's choice of source ports.
* :class:`TraceRecorder`: every event of a cluster as JSON lines, with a readable tail;
  ``python -m trioraft.testing.timeline trace.jsonl -o run.html`` draws a run.
"""

from ._checker import LinearizabilityResult, check_linearizability
from ._cluster import LIVENESS_ELECTION_TIMEOUTS, Cluster, derive_seed, open_cluster
from ._faults import *  # noqa: F403  (every fault class, FAULT_KINDS)
from ._faults import __all__ as _fault_names
from ._history import History, PendingOperation
from ._invariants import InvariantMonitor, InvariantViolation
from ._machines import Counter
from ._models import UNKNOWN, Model, counter_model, kv_model, outputs_match
from ._operation import Operation
from ._ports import free_tcp_ports
from ._run import HangError, run, scheduler_hooks_available
from ._scenario import check_fault_schedule
from ._schedule import FaultSchedule
from ._trace import TraceRecorder, format_event, load_trace, print_tail_on_failure

__all__ = [
    *_fault_names,
    "LIVENESS_ELECTION_TIMEOUTS",
    "Cluster",
    "Counter",
    "FaultSchedule",
    "HangError",
    "History",
    "LinearizabilityResult",
    "Model",
    "Operation",
    "PendingOperation",
    "TraceRecorder",
    "UNKNOWN",
    "InvariantMonitor",
    "check_fault_schedule",
    "InvariantViolation",
    "check_linearizability",
    "counter_model",
    "derive_seed",
    "format_event",
    "free_tcp_ports",
    "kv_model",
    "load_trace",
    "open_cluster",
    "outputs_match",
    "print_tail_on_failure",
    "run",
    "scheduler_hooks_available",
]
