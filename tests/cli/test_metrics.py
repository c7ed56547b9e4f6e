"""Metrics: ``trioraft.metrics.collector(server)`` and the counters behind it.

The promises checked: the collector exports, per server (label ``server``), the term,
commit and apply indexes, whether it leads, the writes it committed as leader, the
elections it started and the network's malformed frames, with write latency and apply
lag histograms whose counts agree with the counters; it reads the server when scraped,
from the server's own thread or another; it imports and fails in one clear line without
prometheus-client. The live ``serve --metrics`` is scraped in tests/cli/test_cli.py.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import attrs
import pytest
import trio

import trioraft
import trioraft.metrics
from trioraft._histogram import Histogram
from trioraft.testing import Counter, open_cluster, run

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def samples(text: str) -> dict[tuple[str, str], float]:
    """``{(sample name, server): value}`` of an exposition (histogram buckets as
    ``name{le}``)."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if "le" in sample.labels:
                name += "{" + sample.labels["le"] + "}"
            out[name, sample.labels.get("server", "")] = sample.value
    return out


def test_histogram_counts_into_buckets_by_upper_bound() -> None:
    histogram = Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    counts = histogram.counts()
    # A value equal to a bound counts in its bucket (Prometheus's "le"); cumulative.
    assert counts.buckets == ((0.1, 2), (1.0, 4), (float("inf"), 5))
    assert counts.count == 5 and counts.sum == pytest.approx(8.65)
    with pytest.raises(ValueError, match="ascending"):
        Histogram([1.0, 0.5])


def test_collector_exports_each_servers_counters() -> None:
    """Writes through the leader (write and submit) count on the leader only, as many
    as were committed; the latency histogram counts the same writes; every server's
    term, indexes and role are those of its status; an election was counted."""

    async def scenario() -> tuple[dict[tuple[str, str], float], dict[str, Any], str]:
        async with open_cluster(Counter, 3, seed=11) as cluster:
            with trio.fail_after(20):
                leader = await cluster.wait_for_leader()
            for _ in range(10):
                await leader.write(1)
            done = trio.Event()
            results: list[object] = []

            def callback(outcome: Any) -> None:
                results.append(outcome.unwrap())
                if len(results) == 5:
                    done.set()

            for _ in range(5):
                leader.submit(1, callback)
            await done.wait()
            await trio.sleep(1)  # the followers apply the last commit
            registry = prometheus_client.CollectorRegistry()
            registry.register(trioraft.metrics.collector(*cluster.servers.values()))
            # Scraped from another thread, as prometheus-client's HTTP server does.
            text = await trio.to_thread.run_sync(prometheus_client.generate_latest, registry)
            status = {name: s.status() for name, s in cluster.servers.items()}
            return samples(text.decode()), status, leader.name

    found, status, leader = run(scenario, seed=11)
    for name, st in status.items():
        assert found["trioraft_term", name] == st.term
        assert found["trioraft_commit_index", name] == st.commit_index
        assert found["trioraft_last_applied", name] == st.last_applied
        assert found["trioraft_is_leader", name] == (name == leader)
        assert found["trioraft_writes_total", name] == (15 if name == leader else 0)
        assert found["trioraft_write_latency_seconds_count", name] == (15 if name == leader else 0)
        assert (
            found["trioraft_write_latency_seconds_bucket{+Inf}", name]
            == (found["trioraft_write_latency_seconds_count", name])
        )
        assert found["trioraft_apply_lag_entries_count", name] > 0
        assert found["trioraft_malformed_frames_total", name] == 0  # a MemoryNetwork's
    assert found["trioraft_elections_total", leader] >= 1
    latency = [v for (n, s), v in found.items() if s == leader and "latency_seconds_bucket" in n]
    assert latency == sorted(latency)  # cumulative


def test_malformed_frames_come_from_the_network() -> None:
    """``trioraft_malformed_frames_total`` is the network's malformed and oversized
    frames (a TcpNetwork counts them), read at each scrape."""

    @attrs.frozen
    class Stats:
        malformed: int
        oversized: int

    class Network:
        malformed = 3

        def statistics(self) -> Stats:
            return Stats(self.malformed, 1)

    async def scenario() -> list[float]:
        network = Network()
        async with open_cluster(Counter, 1, seed=1) as cluster:
            server = next(iter(cluster.servers.values()))
            registry = prometheus_client.CollectorRegistry()
            registry.register(trioraft.metrics.collector(server, network=network))
            seen = []
            for _ in range(2):
                text = prometheus_client.generate_latest(registry).decode()
                seen.append(samples(text)["trioraft_malformed_frames_total", server.name])
                network.malformed += 2
            return seen

    assert run(scenario, seed=1) == [4, 6]


def test_without_prometheus_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """trioraft imports without prometheus-client; the collector and ``serve --metrics``
    then say what to install, in one line (exit status 2 for serve)."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import trioraft, trioraft.metrics, trioraft.__main__\n"
        "print('imported')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == "imported\n", result.stderr
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'trioraft\[metrics\]'"):
        trioraft.metrics.collector(object())  # type: ignore[arg-type]
    from trioraft._cli import main

    status = main(["serve", "--name", "a", "--listen", "127.0.0.1:1", "--machine",
                   "examples.counter:Counter", "--data-dir", str(tmp_path / "a"),
                   "--metrics", "127.0.0.1:2"])  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert err == "error: --metrics needs prometheus-client: pip install 'trioraft[metrics]'\n"
    assert not (tmp_path / "a").exists()  # refused before anything started
