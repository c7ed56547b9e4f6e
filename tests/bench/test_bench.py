"""Smoke tests of ``trioraft.bench``: tiny parameters, shapes and sanity, no thresholds."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import trio

import trioraft
from trioraft import bench
from trioraft.bench import disk as disk_module
from trioraft.bench import floor as floor_module
from trioraft.bench import plots
from trioraft.bench.election import measure_election_times
from trioraft.bench.snapshot import bare_copy

TINY = bench.BenchOptions(
    seconds=0.2,
    warmup=0.05,
    concurrency=(1, 4),
    trials=3,
    catchup_entries=200,
    sim_seeds=1,
    sim_seconds=2.0,
    memory_writes=(3_000, 12_000),
    snapshot_mb=1,
    disk_concurrency=(1, 2),
    reads_concurrency=(1, 2),
)
#: The sections this file tests one by one (test_sections_run_... skips them).
NEW_SECTIONS = ["floor", "memory", "snapshot", "disk", "reads"]


def quiet(line: str) -> None:
    """A progress callback that drops the lines."""


def test_sections_are_registered_in_order() -> None:
    names = list(bench.SECTIONS)
    assert names[:2] == ["throughput", "floor"]
    start = names.index("linearizability")
    assert names[start + 1 : start + 5] == ["memory", "snapshot", "disk", "reads"]


def test_sections_run_and_report_sane_values() -> None:
    report = bench.run_benchmark(TINY, skip=NEW_SECTIONS, progress=quiet)

    assert report["ok"] is True
    assert report["errors"] == []
    assert set(report) >= {"ok", "errors", "meta", "options", "sections", "skipped"}
    on_request = {n: why for n, why in report["skipped"].items() if why == "skipped on request"}
    assert on_request == {name: "skipped on request" for name in NEW_SECTIONS}
    assert report["options"]["concurrency"] == [1, 4]
    # Which build it measured: the one this process runs, named in the header too.
    assert report["meta"]["build"] == trioraft._build.build() in ("compiled", "pure")
    assert f"({report['meta']['build']}" in bench.render_report(report).splitlines()[0]

    throughput = report["sections"]["throughput"]
    assert [r["concurrency"] for r in throughput["runs"]] == [1, 4]
    for run in throughput["runs"]:
        assert run["writes"] > 0
        assert run["writes_per_s"] > 0
        assert run["elapsed_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert run["counter"] == run["writes"] + run["warmup_writes"]
        assert run["errors"] == []
        assert run["cpu_s"] > 0 and run["cpu_us_per_write"] > 0 and run["cpu_share"] > 0
    # Per-write latencies stay in memory (for --plot), out of the report.
    assert "latencies" not in throughput["runs"][0]
    assert sorted(bench.throughput.LATENCIES) == [1, 4]
    kept = bench.throughput.LATENCIES[4]
    assert len(kept) == throughput["runs"][1]["writes"] and list(kept) == sorted(kept)
    one = throughput["one_at_a_time"]
    assert one["p50_ms"] == throughput["runs"][0]["p50_ms"]
    assert one["p99_ms"] == throughput["runs"][0]["p99_ms"]

    election = report["sections"]["election"]
    assert election["trials"] == 3
    assert 0 < election["min_s"] <= election["median_s"] <= election["p99_s"]
    assert election["p99_s"] <= election["max_s"]

    text = bench.render_report(report)
    assert "writes/s" in text and "median s" in text and "skipped" in text
    json.dumps(report, allow_nan=False)  # the report is strict JSON


def test_report_header_shows_the_options_of_the_sections_run() -> None:
    report = bench.run_benchmark(TINY, only=["election"], progress=quiet)
    header = bench.render_report(report).splitlines()[1]
    assert header == "options: trials=3"
    full = bench.run_benchmark(TINY, only=["throughput", "reads"], progress=quiet)
    header = bench.render_report(full).splitlines()[1]
    assert header == "options: seconds=0.2 warmup=0.05 concurrency=1,4 reads_concurrency=1,2"
    for section in bench.SECTIONS.values():
        assert set(section.options) <= set(report["options"])
    with pytest.raises(ValueError, match="no such option"):
        election = bench.SECTIONS["election"]
        bench.register_section("x", "x", election.run, election.render, options=["nope"])


def test_election_trials_are_deterministic() -> None:
    first = bench.measure_election(2)
    second = bench.measure_election(2)
    assert (first.median_s, first.max_s) == (second.median_s, second.max_s)


def test_floor_is_this_project_s_own_module() -> None:
    run = bench.measure_floor(2, 0.1, 0.02)
    assert run.concurrency == 2 and run.writes > 0 and run.errors == ()
    assert run.writes_per_s > 0 and run.cpu_share > 0
    assert run.p50_ms is not None and run.p99_ms is not None
    assert 0 < run.p50_ms <= run.p99_ms
    # It runs in this process: no script, no subprocess.
    source = Path(floor_module.__file__).read_text()
    assert "subprocess" not in source and "trio_floor" not in source


def test_floor_section_reports_the_ratio() -> None:
    options = bench.BenchOptions(concurrency=(2,), seconds=0.1, warmup=0.02)
    ours = {"concurrency": 2, "writes_per_s": 500.0, "cpu_us_per_write": 100.0}
    results = {"throughput": {"runs": [ours]}}
    floor = bench.SECTIONS["floor"].run(options, results, quiet)
    row = floor["runs"][0]
    assert set(row) == {
        "concurrency",
        "floor_writes_per_s",
        "floor_p50_ms",
        "floor_p99_ms",
        "trioraft_writes_per_s",
        "floor_cpu_share",
        "ratio",
        "floor_cpu_us_per_write",
        "cpu_ratio",
    }
    assert row["floor_writes_per_s"] > 0 and row["trioraft_writes_per_s"] == 500.0
    assert row["ratio"] == pytest.approx(500.0 / row["floor_writes_per_s"])
    # The CPU each took per write: the floor's (CPU share over writes/s) over trioraft's.
    floor_cpu = row["floor_cpu_share"] / row["floor_writes_per_s"] * 1e6
    assert row["floor_cpu_us_per_write"] == pytest.approx(floor_cpu)
    assert row["cpu_ratio"] == pytest.approx(floor_cpu / 100.0)
    assert floor["errors"] == []
    assert "ratio" in bench.render_floor(floor)[0]
    # Without the throughput section there is no ratio, but the floor is measured.
    alone = bench.SECTIONS["floor"].run(options, {}, quiet)
    assert alone["runs"][0]["ratio"] is None and alone["runs"][0]["floor_writes_per_s"] > 0


def test_floor_flag_is_accepted_and_ignored(tmp_path: Path) -> None:
    options, _, _ = bench.parse_args(["--floor", str(tmp_path / "no_such_floor.py")])
    assert options.floor == tmp_path / "no_such_floor.py"  # kept, used by nothing


def test_closed_loop_counts_and_times() -> None:
    async def operation(i: int) -> None:
        await trio.sleep(0.001)

    loop = trio.run(bench.closed_loop, operation, 3, 0.05, 0.01)
    assert loop.concurrency == 3 and loop.operations > 0 and loop.failures == ()
    assert len(loop.latencies) == loop.operations
    assert loop.per_s > 0 and loop.percentile_ms(0.5) is not None


def test_command_line_json_is_the_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--seconds", "0.1", "--warmup", "0", "--concurrency", "2"]
    argv += ["--trials", "2", "--catchup-entries", "100", "--sim-seeds", "1"]
    argv += ["--sim-seconds", "1", "--memory-writes", "1000,2000", "--snapshot-mb", "1"]
    status = bench.main([*argv, "--disk-concurrency", "2", "--reads-concurrency", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert status == 0, report["errors"]
    assert report["ok"] is True
    defaults = [name for name, section in bench.SECTIONS.items() if section.default]
    assert list(report["sections"]) == defaults  # every default section, in order
    assert report["options"]["memory_writes"] == [1000, 2000]
    assert report["options"]["disk_concurrency"] == [2]
    assert report["options"]["reads_concurrency"] == [2]
    assert report["options"]["snapshot_mb"] == 1


def test_command_line_flags_of_the_new_sections() -> None:
    argv = ["--memory-writes", "10,20", "--snapshot-mb", "2", "--disk-concurrency", "1,3"]
    options, _, _ = bench.parse_args([*argv, "--reads-concurrency", "4"])
    assert options.memory_writes == (10, 20)
    assert options.snapshot_mb == 2
    assert options.disk_concurrency == (1, 3)
    assert options.reads_concurrency == (4,)
    with pytest.raises(SystemExit):
        bench.parse_args(["--memory-writes", "20,10"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--snapshot-mb", "0"])


def test_command_line_rejects_bad_concurrency() -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--concurrency", "0"])


def test_catch_up_section_smoke() -> None:
    runs = bench.measure_catch_up(300)
    assert [r.clock for r in runs] == ["virtual", "real"]
    for run in runs:
        assert run.entries == 300
        assert run.catch_up_wall_s > 0
        assert run.catch_up_s >= 0
        assert run.fill_writes_per_s > 0
    lines = bench.render_catch_up({"runs": [r.as_json() for r in runs]})
    assert any("virtual" in line for line in lines)


def test_simulation_section_smoke() -> None:
    runs = bench.measure_simulation(2, 5.0)
    assert [r.seed for r in runs] == [0, 1]
    for run in runs:
        assert run.ok and run.virtual_s >= 5.0 and run.wall_s > 0 and run.speed > 0
        assert run.operations > 0 and run.messages > 0
    result = {
        "runs": [r.as_json() for r in runs],
        "speed": 1.0,
        "min_speed": 1.0,
    }
    assert any("virtual s per wall s" in line for line in bench.render_simulation(result))


def test_linearizability_section_smoke() -> None:
    result = bench.measure_linearizability(operations=200, clients=5, seed=1)
    assert result["operations"] == 200
    assert result["accept_s"] > 0 and result["reject_s"] > 0 and result["replay_s"] > 0
    ops = bench.simulated_counter_history(50, 3, seed=2)
    assert len(ops) == 50 and len({o.client for o in ops}) == 3
    assert any("accept ms" in line for line in bench.render_linearizability(result))


def test_memory_section_smoke() -> None:
    lines: list[str] = []
    result = bench.SECTIONS["memory"].run(TINY, {}, lines.append)
    assert result["errors"] == []
    assert [r["writes"] for r in result["checkpoints"]] == [3_000, 12_000]
    bound = result["log_bound"]
    assert bound == result["snapshot_threshold"] + result["snapshot_trailing"] == 11_000
    for row in result["checkpoints"]:
        assert row["rss_mb"] > 0 and row["counter"] == row["writes"]
        assert set(row["log_lengths"]) == set(result["servers"])
        assert 0 < row["max_log_length"] <= bound
    assert result["checkpoints"][-1]["snapshot_index"] > 0  # 12,000 writes compacted
    assert result["rss_ratio"] > 0 and result["rss_start_mb"] > 0
    assert result["samples"] and all(len(s) == 3 for s in result["samples"])
    assert any(line.startswith("memory: 12,000 writes") for line in lines)  # relayed
    assert any("RSS" in line for line in bench.render_memory(result))


def test_memory_in_this_process() -> None:
    result = bench.measure_memory((500, 1_000), concurrency=8)
    assert [r["writes"] for r in result["checkpoints"]] == [500, 1_000]
    assert result["errors"] == []
    with pytest.raises(ValueError):
        bench.measure_memory((1_000, 500))


def test_blob_machine() -> None:
    machine = bench.BlobMachine()
    assert machine.write(b"ab") == 1 and machine.write(b"c") == 2
    assert machine.read(None) == 3
    other = bench.BlobMachine()
    other.restore(machine.snapshot())
    assert other.pieces == [b"ab", b"c"]
    with pytest.raises(TypeError):
        machine.write("not bytes")


def test_bare_copy_delivers_the_bytes() -> None:
    async def copy() -> float:
        return await bare_copy(trioraft.MemoryNetwork(seed=0), bytes(range(256)) * 999, 4096, 3)

    assert trio.run(copy) > 0


def test_snapshot_section_smoke() -> None:
    result = bench.measure_snapshot(1)
    assert result["state_mb"] == 1.0
    assert 1.0 <= result["snapshot_mb"] < 1.01
    assert result["snapshot_index"] >= 2
    assert result["chunk_size"] == 1 << 20 and result["window"] == 8
    assert 0 < result["install_s"] <= result["add_server_s"]
    assert result["bare_s"] > 0 and result["ratio"] > 0
    assert result["install_mb_per_s"] > 0 and result["bare_mb_per_s"] > 0
    assert isinstance(result["errors"], list)
    assert any("bare copy" in line for line in bench.render_snapshot(result))


def test_disk_section_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = bench.measure_disk((1, 2), 0.1, 0.02)
    assert list(tmp_path.iterdir()) == []  # the temporary directory is removed
    assert result["errors"] == []
    runs = [(r["storage"], r["concurrency"]) for r in result["runs"]]
    assert runs == [("disk", 1), ("disk", 2), ("memory", 1), ("memory", 2)]
    for run in result["runs"]:
        assert run["writes"] > 0 and run["writes_per_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["leader_syncs"] > 0
    assert 0 < result["fsync"]["p50_ms"] <= result["fsync"]["p99_ms"]
    assert result["one_at_a_time"]["ratio"] > 0
    together = result["fsync"]["together"]
    assert together["writers"] == 3 and together["samples"] == 3 * (disk_module.FSYNC_SAMPLES // 2)
    assert result["one_at_a_time"]["ratio_to_together"] > 0
    assert result["top"]["concurrency"] == 2
    assert any("raw fsync" in line for line in bench.render_disk(result))


def test_fsync_probe(tmp_path: Path) -> None:
    fsync = bench.measure_fsync(tmp_path, samples=5)
    assert fsync["samples"] == 5 and 0 < fsync["p50_ms"] <= fsync["p99_ms"]
    assert list(tmp_path.iterdir()) == []


def test_reads_section_smoke() -> None:
    result = bench.measure_reads((1, 2), 0.1, 0.02)
    assert result["errors"] == []
    modes = [(r["mode"], r["concurrency"]) for r in result["runs"]]
    assert modes == [(m, c) for m in ("leader", "lease", "spread") for c in (1, 2)]
    for run in result["runs"]:
        assert run["reads"] > 0 and run["reads_per_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["messages_per_read"] >= 0
    top = result["top"]
    assert top["concurrency"] == 2
    assert top["lease_over_leader"] > 0 and top["spread_over_leader"] > 0
    assert any("lease / leader" in line for line in bench.render_reads(result))


def test_election_times_per_timeout_range() -> None:
    first = measure_election_times(3, (0.15, 0.2))
    assert first == measure_election_times(3, (0.15, 0.2))  # deterministic
    assert all(0.15 <= t < 10 for t in first)
    capped = measure_election_times(2, (0.15, 0.15), cap=0.5)
    assert all(t > 0 for t in capped)  # some may be math.inf: no leader within the cap
    assert all(math.isinf(t) or t <= 0.5 for t in capped)


def test_plot_needs_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.parse_args(["--plot", str(tmp_path)])


def test_plot_writes_svg_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    argv = ["throughput", "floor", "election", "memory", "--seconds", "0.1", "--warmup", "0"]
    argv += ["--concurrency", "1,2", "--trials", "2", "--memory-writes", "500,1000"]
    assert bench.main([*argv, "--plot", str(tmp_path / "plots")]) == 0
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["election_cdf.svg", "memory.svg", "throughput.svg", "write_latency_cdf.svg"]
    for name in written:
        text = (tmp_path / "plots" / name).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "wrote" in capsys.readouterr().err


def test_memory_child_failure_is_reported() -> None:
    from trioraft.bench.memory import measure_memory_in_fresh_process

    with pytest.raises(RuntimeError, match="memory measurement failed"):
        measure_memory_in_fresh_process([5, 1])


def test_disk_section_with_a_directory_per_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--disk-dirs A,B,C`` puts each server's DiskStorage (and its fsync probe) in a
    temporary directory under its own directory, and removes them after."""
    dirs = [tmp_path / d for d in "abc"]
    for d in dirs:
        d.mkdir()
    made: list[Path] = []
    real = trioraft.DiskStorage

    def recording(path: Path) -> trioraft.DiskStorage:
        made.append(Path(path))
        return real(path)

    monkeypatch.setattr(trioraft, "DiskStorage", recording)
    options, _, _ = bench.parse_args(["--disk-dirs", ",".join(map(str, dirs))])
    assert options.disk_dirs == tuple(dirs)
    assert options.as_json()["disk_dirs"] == [str(d) for d in dirs]
    result = bench.measure_disk((1,), 0.1, 0.02, dirs=options.disk_dirs)
    assert result["errors"] == []
    assert {p.parent.parent.parent for p in made} == set(dirs)  # dir/tmp/disk-1/raftN
    assert all(list(d.iterdir()) == [] for d in dirs)
    assert result["fsync"]["together"]["directories"] == 3
    with pytest.raises(SystemExit):
        bench.parse_args(["--disk-dirs", f"{dirs[0]},{dirs[1]}"])  # one per server
