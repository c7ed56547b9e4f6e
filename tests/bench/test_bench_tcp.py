"""Smoke test of the benchmark's ``tcp`` section: tiny parameters, the JSON shape, sanity,
and no process left behind. No thresholds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trioraft
from trioraft import bench
from trioraft.bench import _tcp_paired as tcp_paired
from trioraft.bench import _tcp_reads as tcp_reads
from trioraft.bench import tcp
from trioraft.bench._tcp_processes import NodeError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the tcp section's nodes use Linux's /proc"
)

#: The whole smoke test must end within this many seconds.
BOUND = 120.0


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread after ``seconds``, whatever it waits on."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the tcp smoke test took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _children() -> list[int]:
    """The pids of this process's children (zombies included)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry.name))
    return found


@contextlib.contextmanager
def no_process_left(seconds: float = BOUND) -> Iterator[None]:
    """Run the block within ``seconds``; whatever happens, kill the processes it started
    and left running, and fail if there were any."""
    before = set(_children())
    try:
        with _bounded(seconds):
            yield
    finally:
        left = set(_children()) - before
        for pid in left:  # whatever happened, no node outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"node processes were left running: {sorted(left)}"


def _check_system(result: dict[str, Any], concurrency: tuple[int, ...]) -> None:
    assert result["errors"] == []
    assert [p["concurrency"] for p in result["throughput"]] == list(concurrency)
    for point in result["throughput"]:
        assert point["writes"] > 0 and point["writes_per_s"] > 0
        assert point["counter_delta"] == point["total_ok"] >= point["writes"]
        assert 0 < point["p50_ms"] <= point["p99_ms"]
    one = result["one_at_a_time"]
    assert one["samples"] == 5 and 0 < one["p50_ms"] <= one["p99_ms"]
    election = result["election"]
    assert len(election["trials"]) == 1
    assert 0 < election["median_s"] < tcp.ELECTION_TIMEOUT
    assert election["trials"][0]["new_leader"] != election["trials"][0]["old_leader"]
    assert result["peak_rss_mb"] > 0
    assert len(set(result["counters"])) == 1 and result["counters"][0] > 0


def _check_reads(reads: dict[str, Any]) -> None:
    """The reads ran in every mode, and each returned the value the cluster agreed on."""
    assert reads["errors"] == [] and reads["readers"] == 6
    assert [r["mode"] for r in reads["runs"]] == ["leader", "spread", "lease", "spread_lease"]
    for run in reads["runs"]:
        assert run["reads"] > 0 and run["reads_per_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        # The counter after the writes (a fresh cluster: 0 + 1 per write).
        assert run["value"] == tcp_reads.WRITES_BEFORE_READS
        spread = run["mode"].startswith("spread")
        assert len(run["per_server"]) == (3 if spread else 1)
        for answer in run["per_server"]:
            assert answer["value"] == run["value"] and answer["wrong"] == 0
            assert answer["reads"] > 0 and answer["errors"] == {}
        processes = run["processes"]
        assert [p["readers"] for p in processes] == ([2, 2, 2] if spread else [6, 0, 0])
        assert processes[0]["leader"] and all(p["cpu_share"] > 0 for p in processes)
    assert reads["spread_over_leader"] > 0 and reads["lease_over_leader"] > 0


def _check_paired(paired: dict[str, Any], with_pysyncobj: bool) -> None:
    """Every system took its turn in each round, in rotating order, and every ratio is
    that of its own round."""
    assert paired["errors"] == [] and paired["rounds"] == 2
    (point,) = paired["throughput"]  # the largest C measured: 4
    assert point["concurrency"] == 4
    keys = ["memory", "memory_submit", *(["batching_off", "batching_on"] if with_pysyncobj else [])]
    assert [list(r) for r in point["rounds"]] == [keys, [*keys[1:], keys[0]]]
    assert all(value > 0 for r in point["rounds"] for value in r.values())
    if with_pysyncobj:
        for r, ratio in zip(point["rounds"], point["memory_ratios"], strict=True):
            assert ratio == r["memory"] / max(r["batching_off"], r["batching_on"])
    else:
        assert point["memory_ratios"] == [None, None] and point["memory_over_pysyncobj"] is None
    one = paired["one_at_a_time"]
    assert all(r["memory"] > 0 for r in one["rounds"])
    reads = paired["reads"]
    assert [list(r) for r in reads["rounds"]] == [
        ["leader", "spread", "lease"],
        ["spread", "lease", "leader"],
    ]
    for r, ratio in zip(reads["rounds"], reads["lease_ratios"], strict=True):
        assert ratio == r["lease"] / r["leader"]
    assert reads["lease_over_leader"] == statistics.median(reads["lease_ratios"])


def test_tcp_section_smoke() -> None:
    with_pysyncobj = tcp.pysyncobj_version() is not None
    options = bench.BenchOptions(
        tcp_concurrency=(1, 4), tcp_seconds=0.3, tcp_elections=1, tcp_readers=6
    )
    with no_process_left():
        result = tcp.measure_tcp(
            options.tcp_concurrency,
            options.tcp_seconds,
            options.tcp_elections,
            warmup=0.1,
            sync_writes=5,
            readers=options.tcp_readers,
            # Long timeouts: the sanity checks fail a run whose leader changed, and a
            # whole machine stalled for over 150 ms once did it here (both followers
            # timed out within a millisecond of each other). This checks the
            # machinery; the figures come from the defaults.
            election_timeout=(1.0, 2.0),
            paired_rounds=2,
            paired_seconds=0.2,
        )
    assert result["processes"]["started"] >= 12
    assert not [pid for pid in result["processes"]["pids"] if Path(f"/proc/{pid}").exists()]

    json.dumps(result, allow_nan=False)  # strict JSON
    assert result["errors"] == []
    for key in ("memory", "disk"):
        _check_system(result[key], options.tcp_concurrency)
    assert result["disk"]["election"]["restart"] == "on its directory"
    submitted = result["memory_submit"]  # PySyncObj's method: callbacks, no task per write
    assert [p["concurrency"] for p in submitted["throughput"]] == [1, 4]
    assert all(p["writes_per_s"] > 0 and p["errors"] == {} for p in submitted["throughput"])
    assert all(p["counter_delta"] == p["total_ok"] for p in submitted["throughput"])
    _check_reads(result["reads"])
    pso = result["pysyncobj"]
    if with_pysyncobj:
        assert set(pso["configurations"]) == {"batching_off", "batching_on"}
        assert [p["concurrency"] for p in pso["throughput"]] == [1, 4]
        assert all(p["writes_per_s"] > 0 for p in pso["throughput"])
        assert pso["one_at_a_time"]["p50_ms"] > 0
        assert pso["election"]["median_s"] > 0 and pso["peak_rss_mb"] > 0
    else:
        assert pso is None
        assert any("not installed" in note for note in result["notes"])
    _check_paired(result["paired"], with_pysyncobj)
    assert result["method"]["paired_rounds"] == 2 and result["method"]["paired_seconds"] == 0.2
    targets = {t["target"] for t in result["targets"]}
    assert sum(t.startswith("paired (2 rounds): ") for t in targets) == (
        2 + 1 + 2  # writes at C=4 (write() and submit()), one at a time, two read ratios
    )
    assert "election median s (MemoryStorage)" in targets
    assert "MemoryStorage, submit() writes/s at C=4096 / PySyncObj's best" in targets
    assert sum("leader ReadIndex" in t and not t.startswith("paired") for t in targets) == 2
    text = "\n".join(tcp.render_tcp(result))
    assert "writes/s, C=4" in text and "election after SIGKILL" in text
    assert "trioraft submit()" in text and "submit()/PySyncObj" in text
    assert "spread_lease" in text and "spread / leader ReadIndex" in text
    assert "paired rounds (2;" in text and "lease/leader" in text

    # Without PySyncObj: null, a note, and the table still renders.
    alone = tcp._assemble(
        {"memory": result["memory"], "disk": result["disk"]}, None, [], None, True
    )
    assert alone["pysyncobj"] is None
    assert any("not installed" in note for note in alone["notes"])
    assert "writes/s, C=1" in "\n".join(tcp.render_tcp(alone))


def test_tcp_options_on_the_command_line() -> None:
    argv = ["tcp", "--tcp-concurrency", "2,8", "--tcp-seconds", "0.5", "--tcp-elections", "2"]
    options, _, _ = bench.parse_args([*argv, "--tcp-readers", "0"])
    assert options.tcp_concurrency == (2, 8)
    assert options.tcp_seconds == 0.5
    assert options.tcp_elections == 2
    assert options.tcp_readers == 0
    paired, _, _ = bench.parse_args(
        [*argv, "--tcp-paired-rounds", "0", "--tcp-paired-seconds", "2"]
    )
    assert paired.tcp_paired_rounds == 0 and paired.tcp_paired_seconds == 2.0
    assert not bench.SECTIONS["tcp"].default
    defaults, _, _ = bench.parse_args([])
    assert defaults.tcp_concurrency == (1, 16, 256, 4096)
    assert defaults.tcp_readers == 256
    assert defaults.tcp_paired_rounds == 3
    with pytest.raises(SystemExit):
        bench.parse_args(["tcp", "--tcp-readers", "-1"])


def test_readers_are_split_over_the_servers() -> None:
    assert tcp_reads.shares(256, 3) == [86, 85, 85]
    assert tcp_reads.shares(2, 3) == [1, 1, 0]
    assert sum(tcp_reads.shares(1000, 3)) == 1000


def test_a_failed_turn_of_the_paired_rounds_is_no_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn whose sanity checks failed (the leader lost its leadership in the window:
    nothing committed) or whose node failed gives no figure, its round no ratio, and the
    median is that of the other rounds; the rounds go on, and each failure is reported
    with its system (PySyncObj's apart)."""
    figures = {"memory": [30.0, 0.0, 40.0], "memory_submit": [60.0, 60.0, 60.0],
               "batching_off": [5.0, 5.0, 5.0], "batching_on": [10.0, -1.0, 10.0]}  # fmt: skip
    turns: dict[str, int] = {}

    def point(cluster: str, c: int, seconds: float, warmup: float, failures: list[str]) -> Any:
        turn = turns[cluster] = turns.get(cluster, -1) + 1
        value = figures[cluster][turn]
        if value < 0:
            raise NodeError(f"{cluster}: the node's stdout closed")
        if not value:
            failures.append(f"{cluster}: no write committed in the window")
        return {"writes_per_s": value}

    monkeypatch.setattr(tcp_paired, "throughput_point", point)
    errors: tuple[list[str], list[str]] = ([], [])
    params = tcp_paired.PairedParams(rounds=3, seconds=1.0, concurrency=(4096,))
    clusters: Any = {key: key for key in figures}
    (result,) = tcp_paired._write_rounds(clusters, params, errors, lambda line: None)
    assert [r["memory"] for r in result["rounds"]] == [30.0, None, 40.0]
    assert result["memory_ratios"] == [3.0, None, 4.0]
    assert result["memory_over_pysyncobj"] == 3.5
    # Round 2: PySyncObj's best is batching off's (batching on failed): 60 / 5.
    assert result["submit_ratios"] == [6.0, 12.0, 6.0]
    assert [r["batching_on"] for r in result["rounds"]] == [10.0, None, 10.0]
    assert errors == (
        ["memory: no write committed in the window"],
        ["paired batching_on, C=4096: batching_on: the node's stdout closed"],
    )


def test_a_node_runs_the_drivers_trioraft_whatever_the_current_directory(
    tmp_path: Path,
) -> None:
    """A node process imports the trioraft its driver names (``PYTHONPATH``), not one in
    the directory the driver was started from: ``-c`` puts that directory first on
    ``sys.path``, and an A/B comparison started from a checkout once ran that checkout
    on both sides."""
    from trioraft.bench._tcp_processes import _BOOTSTRAP

    decoy = tmp_path / "trioraft"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    script = tmp_path / "node.py"
    script.write_text("import trioraft\nprint(trioraft.__file__)\n")
    real = Path(trioraft.__file__).resolve()
    env = {**os.environ, "PYTHONPATH": str(real.parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", _BOOTSTRAP, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == real


def test_the_clients_section_runs_paired_rounds_and_renders_them() -> None:
    """``clients``: a real (tiny) run against a cluster in a child process: each of the
    four runs wrote something, the ratios are those of the rounds' figures, and the
    table shows each round and each ratio's verdict (speed itself is not asserted)."""
    from trioraft.bench.clients import measure_clients, render_clients

    result = measure_clients(rounds=1, seconds=0.3)
    (figures,) = result["rounds"]
    assert set(figures) == {"trio_256", "asyncio_256", "trio_16", "sync_16"}
    assert all(value > 0 for value in figures.values())
    assert result["ratios"]["sync_over_trio_16"] == [figures["sync_16"] / figures["trio_16"]]
    text = "\n".join(render_clients(result))
    assert "round 1" in text and "asyncio_over_trio_256: median" in text
