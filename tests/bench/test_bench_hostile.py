"""Smoke test of the benchmark's ``hostile`` section: tiny attacks, the JSON shape, sanity,
and no process left behind. No thresholds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from test_bench_tcp import no_process_left

from trioraft import bench
from trioraft.bench import hostile
from trioraft.bench._hostile_frames import _sample_frames
from trioraft.bench.hostile import Attack, HostileParams

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the section reads Linux's /proc"
)

#: Every attack, tiny.
TINY = (
    Attack("idle", "idle", (("count", 20), ("reopen", 1.0))),
    Attack("slowloris", "slowloris", (("count", 3), ("interval", 0.05), ("reopen", 0.05))),
    Attack("garbage", "garbage", (("workers", 2),)),
    Attack("flood", "flood", (("connections", 2), ("window", 32))),
)


def _check_attacker(kind: str, figures: dict[str, Any]) -> None:
    """The attacker did what it was asked, as far as a short window shows."""
    assert figures["kind"] == kind and figures["seconds"] > 0
    if kind == "idle":
        assert figures["opened"] >= 20
    elif kind == "slowloris":
        assert figures["opened"] >= 3 and figures["bytes_sent"] >= 3
    elif kind == "garbage":
        assert figures["opened"] >= 2 and figures["bytes_sent"] > 0
    else:
        assert figures["authenticated"] >= 2 and figures["requests"] > 0
        assert figures["answers"] > 0
    assert figures["probes_ok"] + figures["probes_failed"] >= 1


def _check_frames(frames: dict[str, Any]) -> None:
    assert frames["errors"] == [] and frames["rounds"] == 1
    (figures,) = frames["per_round"]
    assert list(figures) == ["sealed", "sealed_again", "plain"]
    for turn in figures.values():
        assert turn["writes_per_s"] > 0 and turn["cpu_us_per_write"] > 0 and turn["p50_ms"] > 0
    for other in ("plain", "sealed_again"):
        for key, ratios in frames["ratios"][other].items():
            assert ratios == [figures["sealed"][key] / figures[other][key]]
    assert frames["sealed_over_plain_writes"] == frames["ratios"]["plain"]["writes_per_s"][0]
    assert [r["frame"] for r in frames["per_record"]] == list(_sample_frames())
    assert all(r["seal_us"] > 0 and r["open_us"] > 0 for r in frames["per_record"])


def test_hostile_section_smoke() -> None:
    params = HostileParams(
        seconds=0.2, warmup=0.1, rounds=1, follower=False, attacks=TINY, frame_rounds=1,
        sync_writes=5, micro_seconds=0.002,
        # Long timeouts: a machine stalled by other work must not depose a leader in a
        # quiet window (a sanity failure); this checks the machinery, not the figures.
        election_timeout=(1.0, 2.0),
    )  # fmt: skip
    with no_process_left():
        result = hostile.measure_hostile(params)
    assert result["processes"]["started"] == 3 + 1 + 9  # the cluster, attacker, the A/B's
    assert not [pid for pid in result["processes"]["pids"] if Path(f"/proc/{pid}").exists()]
    json.dumps(result, allow_nan=False)  # strict JSON
    assert result["errors"] == []

    windows = result["windows"]
    assert [w["attack"] for w in windows] == [
        None, "idle", None, "slowloris", None, "garbage", None, "flood", None,
    ]  # fmt: skip
    for w in windows:
        assert w["writes_per_s"] > 0 and w["elections"] >= 0 and w["peak_reset"]
        assert all(mb > 0 for mb in w["peak_rss_mb"].values())
    rows = result["attacks"]
    assert [(r["attack"], r["target"]) for r in rows] == [(a.kind, "leader") for a in TINY]
    for i, row in enumerate(rows):
        around = (windows[2 * i], windows[2 * i + 2])
        assert row["quiet_writes_per_s"] == sum(w["writes_per_s"] for w in around) / 2
        assert row["ratio"] == windows[2 * i + 1]["writes_per_s"] / row["quiet_writes_per_s"]
        assert row["cpu_ratio"] > 0 and row["rss_over_quiet_mb"] is not None
        _check_attacker(row["attack"], row["attacker"])
    _check_frames(result["frames"])
    targets = [t["target"] for t in result["targets"]]
    assert len(targets) == 3 * len(TINY) + 1 and targets[-1].startswith("frames (1 rounds)")
    text = "\n".join(hostile.render_hostile(result))
    assert "CPU-normalized" in text and "flood on the leader" in text
    assert "sealed records (s)" in text and "append, 256 writes" in text


def test_hostile_targets_sum_elections_and_take_the_worst_memory() -> None:
    rows = [
        {"attack": "idle", "target": "leader", "ratio": r, "elections": e,
         "rss_over_quiet_mb": mb}
        for r, e, mb in ((0.9, 0, 1.0), (0.7, 1, 60.0), (0.85, 0, None))
    ]  # fmt: skip
    ratio, elections, memory = hostile.hostile_targets(rows)
    assert ratio["value"] == 0.85 and ratio["met"]
    assert elections["value"] == 1 and elections["met"] is False
    assert memory["value"] == 60.0 and memory["met"] is False


def test_hostile_options_on_the_command_line() -> None:
    argv = ["hostile", "--hostile-seconds", "2", "--hostile-rounds", "3"]
    options, _, _ = bench.parse_args([*argv, "--hostile-frame-rounds", "0"])
    assert options.hostile_seconds == 2.0 and options.hostile_rounds == 3
    assert options.hostile_frame_rounds == 0
    assert not bench.SECTIONS["hostile"].default
    with pytest.raises(SystemExit):
        bench.parse_args(["hostile", "--hostile-rounds", "0"])
