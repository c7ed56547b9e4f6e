"""Smoke tests of ``trioraft.bench``: tiny parameters, shapes and sanity, no thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trioraft import bench

TINY = bench.BenchOptions(
    seconds=0.2,
    warmup=0.05,
    concurrency=(1, 4),
    trials=3,
    catchup_entries=200,
    sim_seeds=1,
    sim_seconds=2.0,
)


def test_sections_run_and_report_sane_values() -> None:
    report = bench.run_benchmark(TINY, skip=["floor"], progress=lambda line: None)

    assert report["ok"] is True
    assert report["errors"] == []
    assert set(report) >= {"ok", "errors", "meta", "options", "sections", "skipped"}
    assert report["skipped"] == {"floor": "skipped on request"}
    assert report["options"]["concurrency"] == [1, 4]

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


def test_election_trials_are_deterministic() -> None:
    first = bench.measure_election(2)
    second = bench.measure_election(2)
    assert (first.median_s, first.max_s) == (second.median_s, second.max_s)


def test_missing_floor_is_skipped_with_a_note(tmp_path: Path) -> None:
    options = bench.BenchOptions(floor=tmp_path / "no_such_floor.py", concurrency=(1,))
    report = bench.run_benchmark(
        options,
        skip=["throughput", "election", "catchup", "simulation", "linearizability"],
        progress=lambda line: None,
    )
    assert report["ok"] is True
    assert report["sections"] == {}
    assert "not found" in report["skipped"]["floor"]


def test_floor_subprocess_and_ratio(tmp_path: Path) -> None:
    # A stand-in floor script: the bench only runs it and parses its last JSON line.
    fake = tmp_path / "floor.py"
    fake.write_text(
        "import json, sys\n"
        "c = int(sys.argv[sys.argv.index('--concurrency') + 1])\n"
        "print('noise')\n"
        "print(json.dumps({'floor_writes_per_s': 1000.0 * c, 'concurrency': c,"
        " 'p50_ms': 0.1, 'p99_ms': 0.2}))\n"
    )
    options = bench.BenchOptions(floor=fake, concurrency=(2,), seconds=0.1)
    results = {"throughput": {"runs": [{"concurrency": 2, "writes_per_s": 500.0}]}}
    floor = bench.SECTIONS["floor"].run(options, results, lambda line: None)
    assert floor["runs"][0]["floor_writes_per_s"] == 2000.0
    assert floor["runs"][0]["ratio"] == pytest.approx(0.25)
    assert "floor_cpu_share" in floor["runs"][0]
    assert "ratio" in bench.render_floor(floor)[0]


def test_command_line_json_is_the_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--seconds", "0.1", "--warmup", "0", "--concurrency", "2"]
    argv += ["--trials", "2", "--no-floor", "--catchup-entries", "100"]
    status = bench.main([*argv, "--sim-seeds", "1", "--sim-seconds", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert status == 0
    assert report["ok"] is True
    assert set(report["sections"]) == {
        "throughput",
        "election",
        "catchup",
        "simulation",
        "linearizability",
    }
    assert "floor" in report["skipped"]


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
        assert run.virtual_s == 5.0 and run.wall_s > 0 and run.speed > 0
        assert run.writes_ok > 0 and run.messages > 0
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
