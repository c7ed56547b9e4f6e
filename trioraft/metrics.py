"""Prometheus metrics of a trioraft server (the optional ``metrics`` extra:
``pip install 'trioraft[metrics]'``, which brings ``prometheus-client``).

:func:`collector` gives a collector for an application's own registry::

    from prometheus_client import REGISTRY
    REGISTRY.register(trioraft.metrics.collector(server))

It reads the server's :meth:`~trioraft.Server.statistics` (and its network's) when it
is scraped, and only then: a write costs the server the same with or without it (the
write latency and apply lag histograms are bucket counters the server keeps anyway).
``python -m trioraft serve --metrics HOST:PORT`` serves the same at
``http://HOST:PORT/metrics``, with the process's CPU and memory. Every metric has the
label ``server`` (the server's name). See the documentation's "Metrics" page for the
list and a Grafana dashboard.

This module imports without ``prometheus-client``; :func:`collector` then raises
:exc:`ImportError` saying what to install.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import trio

from ._core.node import Role
from ._runtime import Server, ServerStatistics

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["METRICS", "ServerCollector", "collector", "require_prometheus_client"]

#: The metrics exported: (name, type, help). Counters' names end in ``_total``.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("trioraft_term", "gauge", "The server's current term."),
    ("trioraft_commit_index", "gauge", "Highest log index the server knows committed."),
    ("trioraft_last_applied", "gauge", "Highest log index applied to the state machine."),
    ("trioraft_is_leader", "gauge", "1 while the server leads, else 0."),
    ("trioraft_apply_lag", "gauge", "Committed entries not applied yet."),
    ("trioraft_log_entries", "gauge", "Entries held in the log (after the snapshot)."),
    ("trioraft_snapshot_index", "gauge", "Log index of the latest snapshot."),
    ("trioraft_writes_in_flight", "gauge", "Writes waiting for their entry to be applied."),
    ("trioraft_reads_in_flight", "gauge", "Linearizable reads waiting to be confirmed."),
    ("trioraft_writes_total", "counter", "Writes this server committed as leader."),
    ("trioraft_elections_total", "counter", "Elections this server started."),
    ("trioraft_messages_sent_total", "counter", "Raft messages sent."),
    ("trioraft_messages_received_total", "counter", "Raft messages received."),
    ("trioraft_snapshots_taken_total", "counter", "Snapshots taken."),
    ("trioraft_snapshots_installed_total", "counter", "Snapshots installed from a leader."),
    (
        "trioraft_malformed_frames_total",
        "counter",
        "Connections closed for a malformed or oversized frame.",
    ),
    (
        "trioraft_write_latency_seconds",
        "histogram",
        "Seconds from a write's proposal to its application, on the leader.",
    ),
    (
        "trioraft_apply_lag_entries",
        "histogram",
        "Committed entries not applied yet, seen each time a batch is applied.",
    ),
)

_INSTALL = "pip install 'trioraft[metrics]' (or pip install prometheus-client)"


def require_prometheus_client() -> None:
    """Raise :exc:`ImportError` saying what to install if ``prometheus-client`` is
    missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImportError(f"trioraft's metrics need prometheus-client: {_INSTALL}") from None


def _values(stats: ServerStatistics, malformed: int) -> dict[str, float]:
    """The gauges' and counters' values, by metric name."""
    return {
        "trioraft_term": stats.term,
        "trioraft_commit_index": stats.commit_index,
        "trioraft_last_applied": stats.last_applied,
        "trioraft_is_leader": 1 if stats.role is Role.LEADER else 0,
        "trioraft_apply_lag": stats.apply_lag,
        "trioraft_log_entries": stats.log_length,
        "trioraft_snapshot_index": stats.snapshot_index,
        "trioraft_writes_in_flight": stats.writes_in_flight,
        "trioraft_reads_in_flight": stats.reads_in_flight,
        "trioraft_writes_total": stats.write_latency.count,
        "trioraft_elections_total": stats.elections,
        "trioraft_messages_sent_total": stats.messages_sent,
        "trioraft_messages_received_total": stats.messages_received,
        "trioraft_snapshots_taken_total": stats.snapshots_taken,
        "trioraft_snapshots_installed_total": stats.snapshots_installed,
        "trioraft_malformed_frames_total": malformed,
    }


def _malformed(network: Any) -> int:
    """Frames a network closed a connection for (0 for a network that counts none)."""
    statistics = getattr(network, "statistics", None)
    if statistics is None:
        return 0
    stats = statistics()
    return int(getattr(stats, "malformed", 0)) + int(getattr(stats, "oversized", 0))


class ServerCollector:
    """A Prometheus collector of servers (from :func:`collector`): register it on a
    ``prometheus_client`` registry. Each scrape reads each server's statistics once, in
    the Trio thread that runs them when the scrape comes from another thread (as from
    ``prometheus_client.start_http_server``)."""

    def __init__(self, servers: Sequence[Server], network: Any = None) -> None:
        # Each server's own network unless told otherwise (TCP counts malformed frames).
        self._servers = [
            (server, network if network is not None else _network_of(server)) for server in servers
        ]
        try:
            self._token: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
        except RuntimeError:
            self._token = None  # made outside Trio: scraped from its thread, then

    def _read(self) -> list[tuple[str, ServerStatistics, int]]:
        return [(s.name, s.statistics(), _malformed(n)) for s, n in self._servers]

    def _read_safely(self) -> list[tuple[str, ServerStatistics, int]]:
        """The statistics, read in the Trio thread that runs the servers."""
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:  # another thread: ask the servers'
            if self._token is not None:
                try:
                    return trio.from_thread.run_sync(self._read, trio_token=self._token)
                except trio.RunFinishedError:
                    pass  # the run is over: nothing changes the servers any more
        return self._read()

    def describe(self) -> Iterator[Any]:
        """The metrics, without values (so that registering reads no statistics)."""
        return _families([])

    def collect(self) -> Iterator[Any]:
        """The metrics, with their values now (called at each scrape)."""
        return _families(self._read_safely())


def _families(readings: list[tuple[str, ServerStatistics, int]]) -> Iterator[Any]:
    """Each metric of :data:`METRICS`, a sample per server read."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    kinds: dict[str, Callable[..., Any]] = {
        "gauge": GaugeMetricFamily,
        "counter": CounterMetricFamily,
        "histogram": HistogramMetricFamily,
    }
    values = [(name, stats, _values(stats, malformed)) for name, stats, malformed in readings]
    for metric, kind, text in METRICS:
        family = kinds[kind](metric, text, labels=["server"])
        for name, stats, value in values:
            if kind == "histogram":
                counts = (
                    stats.write_latency
                    if metric == "trioraft_write_latency_seconds"
                    else stats.apply_lag_entries
                )
                buckets = [(_le(bound), float(n)) for bound, n in counts.buckets]
                family.add_metric([name], buckets, counts.sum)
            else:
                family.add_metric([name], value[metric])
        yield family


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it (``+Inf``, ``0.005``, ``4.0``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _network_of(server: Server) -> Any:
    # The network the server's endpoint belongs to (a TcpNetwork keeps its counters).
    endpoint = server._endpoint
    return getattr(endpoint, "_network", None)


def collector(*servers: Server, network: Any = None) -> Collector:
    """A Prometheus collector of a server's metrics (of several servers', if given
    several: one collector per registry), for an application's own registry
    (``registry.register(trioraft.metrics.collector(server))``).

    Every metric carries the label ``server="<name>"``; see :data:`METRICS` for the
    list: at least ``trioraft_term``, ``trioraft_commit_index``,
    ``trioraft_last_applied``, ``trioraft_is_leader`` (0/1), ``trioraft_writes_total``
    (writes this server committed as leader), ``trioraft_elections_total``,
    ``trioraft_malformed_frames_total`` (read from ``network``, by default each
    server's own: a :class:`~trioraft.TcpNetwork` counts them, a
    :class:`~trioraft.MemoryNetwork` has none), and the histograms
    ``trioraft_write_latency_seconds`` and ``trioraft_apply_lag_entries``.

    Values are read when the registry is scraped, from any thread. Raises
    :exc:`ImportError` if ``prometheus-client`` is not installed.
    """
    require_prometheus_client()
    if not servers:
        raise TypeError("collector() takes at least one trioraft.Server")
    for server in servers:
        if not isinstance(server, Server):
            raise TypeError(
                f"collector() takes trioraft.Server objects, got {type(server).__name__}"
            )
    from prometheus_client.registry import Collector

    Collector.register(ServerCollector)  # it is one (an abstract base class's virtual subclass)
    return cast("Collector", ServerCollector(servers, network))
