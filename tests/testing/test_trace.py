"""Structured traces (TraceRecorder, JSON lines) and the timeline picture."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import trio

import trioraft
from trioraft import TraceEvent
from trioraft._core.messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from trioraft.testing import open_cluster, run
from trioraft.testing._trace import (
    TraceRecorder,
    dump_trace,
    format_event,
    load_trace,
    parse_trace,
    print_tail_on_failure,
)
from trioraft.testing.timeline import main as timeline_main
from trioraft.testing.timeline import render_timeline

from machines import Counter

ROLES = {"follower", "pre_candidate", "candidate", "leader"}


async def fault_scenario(
    path: Path | None,
    *,
    servers: int = 5,
    seed: int = 5,
    keep: int | None = None,
    messages: bool = True,
) -> TraceRecorder:
    """Writes, an isolated leader, heal, loss and delay, a crash and restart, a partition."""
    async with open_cluster(Counter, servers, seed=seed) as cluster:
        with TraceRecorder(path, keep=keep, messages=messages) as recorder:
            recorder.attach(cluster)
            with trio.fail_after(10):
                leader = await cluster.wait_for_leader()
            for i in range(5):
                await cluster.write(i)
            cluster.isolate(leader.name)
            await trio.sleep(1.0)
            cluster.heal()
            with trio.fail_after(10):
                leader = await cluster.wait_for_leader()
            cluster.set_loss(0.1)
            cluster.set_delay(0.001, 0.02)
            for i in range(5):
                with contextlib.suppress(trioraft.RaftError):
                    await cluster.write(10 + i)
            victim = next(n for n in cluster.names if n != leader.name)
            await cluster.crash(victim)
            await trio.sleep(0.5)
            await cluster.restart(victim)
            names = cluster.names
            cluster.partition(names[:2], names[2:])
            await trio.sleep(1.0)
            cluster.heal()
            cluster.set_loss(0)
            cluster.set_delay(0, 0)
            with trio.fail_after(10):
                await cluster.wait_for_leader()
            await cluster.write(100)
    return recorder


def record(path: Path | None = None, *, seed: int = 1, **kwargs: Any) -> TraceRecorder:
    return run(functools.partial(fault_scenario, path, **kwargs), seed=seed)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[TraceRecorder, Path]:
    path = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    return record(path), path


# ----------------------------------------------------------------------- recording
def test_records_every_kind_of_event(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    events = recorder.events
    kinds = {e["kind"] for e in events}
    assert kinds >= {
        "role",
        "commit",
        "apply",
        "crash",
        "restart",
        "send",
        "deliver",
        "drop",
        "fault",
    }
    assert recorder.count == len(events)
    times = [e["t"] for e in events]
    assert all(isinstance(t, float) for t in times)
    assert times == sorted(times), "events are in time order"
    for event in events:
        json.dumps(event)  # every event is JSON-able as it is


def test_role_events_carry_role_term_and_leader(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    roles = [e for e in recorder.events if e["kind"] == "role"]
    initial = [e for e in roles if e.get("initial")]
    assert sorted(e["server"] for e in initial) == ["s1", "s2", "s3", "s4", "s5"]
    assert all(e["role"] in ROLES and isinstance(e["term"], int) for e in roles)
    leaders = [e for e in roles if e["role"] == "leader"]
    assert len({e["term"] for e in leaders}) >= 2, "the isolation forced a new election"
    assert all(e["leader"] == e["server"] and e["term"] >= 1 for e in leaders)
    assert any(e["role"] == "pre_candidate" for e in roles)
    assert any(e["role"] == "follower" and e["leader"] is not None for e in roles)


def test_commits_applies_crash_and_restart(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    events = recorder.events
    commits = [e for e in events if e["kind"] == "commit"]
    applies = [e for e in events if e["kind"] == "apply"]
    assert commits and applies
    assert all(isinstance(e["index"], int) and e["index"] >= 1 for e in commits)
    assert {e["entry"] for e in applies} >= {"noop", "command"}
    last: dict[str, int] = {}
    for event in events:  # each incarnation of a server applies in log order
        if event["kind"] == "restart":
            del last[event["server"]]
        elif event["kind"] == "apply":
            assert event["index"] == last.get(event["server"], 0) + 1
            last[event["server"]] = event["index"]
    crashes = [e for e in events if e["kind"] == "crash"]
    restarts = [e for e in events if e["kind"] == "restart"]
    assert len(crashes) == len(restarts) == 1
    assert crashes[0]["server"] == restarts[0]["server"]
    assert restarts[0]["t"] - crashes[0]["t"] == pytest.approx(0.5)


def test_message_events_are_summarised(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    messages = [e for e in recorder.events if e["kind"] in ("send", "deliver", "drop")]
    sends = [e for e in messages if e["kind"] == "send"]
    drops = [e for e in messages if e["kind"] == "drop"]
    delivers = [e for e in messages if e["kind"] == "deliver"]
    assert len(sends) >= len(delivers) > 0 and drops
    assert len(sends) >= len(delivers) + len(drops) - 50  # a few were still in flight
    for event in messages:
        assert "server" not in event
        assert event["src"] != event["dst"]
        assert isinstance(event["term"], int) and isinstance(event["type"], str)
    by_type = {e["type"]: e for e in sends}
    assert {"AppendEntries", "AppendResponse", "RequestVote", "VoteResponse"} <= set(by_type)
    append = next(e for e in sends if e["type"] == "AppendEntries" and e["entries"])
    assert {"prev", "prev_term", "entries", "commit"} <= set(append)
    assert isinstance(by_type["AppendResponse"]["success"], bool)
    assert isinstance(by_type["VoteResponse"]["granted"], bool)
    assert {e["pre_vote"] for e in sends if e["type"] == "RequestVote"} == {True, False}


def test_fault_events_carry_the_networks_details(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    faults = [(e["fault"], e["details"]) for e in recorder.events if e["kind"] == "fault"]
    names = [f for f, _ in faults]
    assert names[:2] == ["isolate", "heal"]
    assert ("loss", {"rate": 0.1}) in faults and ("loss", {"rate": 0.0}) in faults
    assert ("delay", {"low": 0.001, "high": 0.02}) in faults
    assert ("partition", {"groups": [["s1", "s2"], ["s3", "s4", "s5"]]}) in faults
    assert names.count("heal") == 2


def test_json_lines_file_round_trip(recorded: tuple[TraceRecorder, Path], tmp_path: Path) -> None:
    recorder, path = recorded
    lines = path.read_text().splitlines()
    assert len(lines) == recorder.count
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    assert load_trace(path) == recorder.events
    copy = tmp_path / "copy.jsonl"
    recorder.dump(copy)
    assert copy.read_text() == path.read_text()
    again = tmp_path / "again.jsonl"
    dump_trace(load_trace(copy), again)
    assert again.read_text() == path.read_text()


def test_same_seed_same_json_lines(recorded: tuple[TraceRecorder, Path], tmp_path: Path) -> None:
    _, path = recorded
    second = tmp_path / "second.jsonl"
    record(second)
    assert second.read_text() == path.read_text()
    other = tmp_path / "other.jsonl"
    record(other, seed=2, servers=3)
    assert other.read_text() != path.read_text()


def test_keep_bounds_memory_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    recorder = record(path, servers=3, keep=25)
    assert len(recorder.events) == 25
    assert recorder.count > 300
    assert len(load_trace(path)) == recorder.count
    assert load_trace(path)[-25:] == recorder.events
    assert len(recorder.tail(10)) == 10 and len(recorder.tail(100)) == 25
    assert recorder.tail(0) == []


def test_without_messages(tmp_path: Path) -> None:
    recorder = record(None, servers=3, messages=False)
    kinds = {e["kind"] for e in recorder.events}
    assert kinds == {"role", "commit", "propose", "apply", "crash", "restart", "fault"}


def test_piecewise_recording_and_summaries() -> None:
    entry = Entry(term=2, index=5, data=1)

    async def feed() -> list[dict[str, Any]]:
        recorder = TraceRecorder()
        await trio.sleep(1.5)
        recorder.on_server_event(
            TraceEvent(
                trio.current_time(),
                "a",
                "role",
                {"role": trioraft.Role.LEADER, "term": 2, "leader": "a"},
            )
        )
        recorder.on_server_event(
            TraceEvent(1.5, "a", "apply", {"index": 5, "term": 2, "kind": "command"})
        )
        recorder.on_message("sent", AppendEntries("a", "b", 2, 4, 1, (entry,), 3))
        recorder.on_message("delivered", AppendResponse("b", "a", 2, True, match_index=5))
        recorder.on_message("dropped", AppendResponse("b", "a", 2, False, 0, 4, 2, None))
        recorder.on_message("sent", RequestVote("a", "b", 3, 5, 2, pre_vote=True, force=True))
        recorder.on_message("sent", VoteResponse("b", "a", 3, granted=False, pre_vote=True))
        recorder.on_message("sent", Heartbeat("a", "b", 2, commit=4))
        recorder.on_message("sent", HeartbeatResponse("b", "a", 2))
        recorder.on_message("sent", TimeoutNow("a", "b", 2))
        recorder.on_fault("partition", {"groups": [["a"], ["b"]]})
        return recorder.events

    events = run(feed, seed=0)
    assert events[0] == {
        "t": 1.5,
        "kind": "role",
        "server": "a",
        "role": "leader",
        "term": 2,
        "leader": "a",
    }
    assert events[1] == {
        "t": 1.5,
        "kind": "apply",
        "server": "a",
        "index": 5,
        "term": 2,
        "entry": "command",
    }
    common = {"t": 1.5, "src": "a", "dst": "b"}
    assert events[2] == {
        **common,
        "kind": "send",
        "type": "AppendEntries",
        "term": 2,
        "prev": 4,
        "prev_term": 1,
        "entries": 1,
        "commit": 3,
    }
    assert events[3]["kind"] == "deliver" and events[3]["success"] and events[3]["match"] == 5
    assert events[4]["kind"] == "drop"
    assert (events[4]["success"], events[4]["reject"], events[4]["conflict"]) == (False, 4, 2)
    assert events[5]["pre_vote"] is True and events[5]["force"] is True
    assert (events[5]["last_index"], events[5]["last_term"]) == (5, 2)
    assert events[6]["granted"] is False and events[6]["pre_vote"] is True
    assert events[7]["commit"] == 4
    assert events[8]["type"] == "HeartbeatResponse" and events[9]["type"] == "TimeoutNow"
    assert events[10] == {
        "t": 1.5,
        "kind": "fault",
        "fault": "partition",
        "details": {"groups": [["a"], ["b"]]},
    }


def test_detach_stops_recording() -> None:
    async def scenario() -> tuple[int, int]:
        async with open_cluster(Counter, 3, seed=4) as cluster:
            recorder = TraceRecorder()
            recorder.attach(cluster)
            with trio.fail_after(10):
                await cluster.wait_for_leader()
            await cluster.write(1)
            recorder.detach()
            before = recorder.count
            await cluster.write(2)
            cluster.isolate("s1")
            await trio.sleep(1)
            return before, recorder.count

    before, after = run(scenario, seed=0)
    assert before > 0 and after == before


# --------------------------------------------------------------------------- tail
def test_format_event_lines() -> None:
    line = format_event(
        {"t": 1.25, "kind": "role", "server": "s1", "role": "leader", "term": 3, "leader": "s1"}
    )
    assert re.fullmatch(r"\s+1\.250000\s+s1\s+role\s+leader term=3 leader=s1", line)
    line = format_event(
        {"t": 2.0, "kind": "send", "src": "s1", "dst": "s2", "type": "Heartbeat", "term": 3}
    )
    assert "s1->s2" in line and "send" in line and "Heartbeat term=3" in line
    line = format_event({"t": 3.0, "kind": "fault", "fault": "isolate", "details": {"name": "s2"}})
    assert "network" in line and "isolate name=s2" in line
    line = format_event(
        {"t": 3.0, "kind": "role", "server": "s2", "role": "follower", "term": 1, "leader": None}
    )
    assert line.endswith("follower term=1 leader=-")
    assert "crash" in format_event({"t": 4.0, "kind": "crash", "server": "s3"})


def test_tail_is_human_readable(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    lines = recorder.tail(20)
    assert len(lines) == 20
    assert lines == [format_event(e) for e in recorder.events[-20:]]
    floats = [float(line.split()[0]) for line in lines]
    assert floats == sorted(floats)
    whole = "\n".join(recorder.tail(len(recorder.events)))
    for word in ("role", "commit", "apply", "crash", "restart", "send", "deliver", "drop"):
        assert re.search(rf" {word}( |$)", whole, re.M), word


def _small_recorder() -> TraceRecorder:
    recorder = TraceRecorder()
    for i in range(10):
        recorder.on_server_event(TraceEvent(float(i), "s1", "commit", {"index": i + 1}))
    return recorder


def test_print_tail_on_failure_prints_and_reraises(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = _small_recorder()
    with pytest.raises(ValueError, match="boom"), print_tail_on_failure(recorder, n=3):
        raise ValueError("boom")
    err = capsys.readouterr().err
    assert "last 3 of 10 events" in err
    assert "index=10" in err and "index=8" in err and "index=7" not in err


def test_print_tail_on_failure_is_quiet_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = _small_recorder()
    with print_tail_on_failure(recorder) as same:
        assert same is recorder
    out = io.StringIO()
    with pytest.raises(AssertionError), print_tail_on_failure(recorder, 2, file=out):
        raise AssertionError("invariant")
    assert capsys.readouterr().err == ""
    assert "index=10" in out.getvalue()


def test_print_tail_on_failure_ignores_cancellation(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = _small_recorder()

    async def cancelled() -> None:
        with trio.move_on_after(1), print_tail_on_failure(recorder):
            await trio.sleep(10)

    run(cancelled, seed=0)
    assert capsys.readouterr().err == ""


def test_failing_cluster_test_prints_the_clusters_tail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> None:
        async with open_cluster(Counter, 3, seed=6) as cluster:
            recorder = TraceRecorder(keep=200)
            recorder.attach(cluster)
            with print_tail_on_failure(recorder, n=15):
                with trio.fail_after(10):
                    await cluster.wait_for_leader()
                await cluster.write(5)
                raise AssertionError("the test failed here")

    with pytest.raises(Exception) as info:  # the cluster's nursery wraps it in a group
        run(scenario, seed=0)
    assert info.group_contains(AssertionError, match="failed here")
    err = capsys.readouterr().err
    assert "last 15 of" in err
    assert err.count("\n") == 15 + 2


def test_recorder_options_are_checked() -> None:
    with pytest.raises(ValueError, match="keep"):
        TraceRecorder(keep=-1)
    assert "events=0" in repr(TraceRecorder())


def test_load_trace_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0.0, "kind": "crash", "server": "s1"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not JSON"):
        load_trace(path)
    path.write_text('{"t": 0.0, "kind": "crash"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r":2: not a trace event"):
        load_trace(path)
    assert parse_trace(['{"t": 1, "kind": "x"}', "  "]) == [{"t": 1, "kind": "x"}]


# ----------------------------------------------------------------------- timeline
def svg_of(page: str) -> ET.Element:
    match = re.search(r"<svg.*</svg>", page, re.S)
    assert match, "the page holds an inline SVG"
    return ET.fromstring(match.group(0))  # well-formed XML


def lane_names(svg: ET.Element) -> list[str]:
    ns = "{http://www.w3.org/2000/svg}"
    return [t.text or "" for t in svg.iter(f"{ns}text") if t.get("class") == "lane"]


def check_page(page: str, title: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page
    assert "<script" not in page.lower()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert lane_names(svg_of(page)) == ["s1", "s2", "s3", "s4", "s5"]
    for legend in ("follower", "pre-candidate", "candidate", "leader", "crashed", "commit"):
        assert f"</i>{legend}" in page
    for label in (
        ">isolate s",
        ">heal<",
        ">loss 10%<",
        ">delay 1 ms-20 ms<",
        ">loss off<",
        ">delay off<",
        ">partition s1,s2 | s3,s4,s5<",
    ):
        assert label in page, label
    assert "url(#crashed)" in page  # the crashed period is drawn
    assert re.search(r">T[1-9]\d*</text>", page)  # term labels


def test_render_timeline_function(recorded: tuple[TraceRecorder, Path]) -> None:
    recorder, _ = recorded
    page = render_timeline(recorder.events, title="fault scenario")
    check_page(page, "fault scenario")
    # Messages are aggregated: twenty times the messages make no more elements.
    more = [e for e in recorder.events for _ in range(20 if e["kind"] == "send" else 1)]
    busy = render_timeline(more, title="fault scenario")
    assert busy.count("<") <= page.count("<") + 5
    assert len(busy) < 1.5 * len(page)


def test_timeline_command_line(recorded: tuple[TraceRecorder, Path], tmp_path: Path) -> None:
    _, trace = recorded
    out = tmp_path / "run.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trioraft.testing.timeline",
            str(trace),
            "-o",
            str(out),
            "--title",
            "my run",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    check_page(out.read_text(encoding="utf-8"), "my run")


def test_timeline_command_line_help_and_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trioraft.testing.timeline", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "usage: python -m trioraft.testing.timeline" in result.stdout
    for option in ("--output", "--title", "--width", "--start", "--end"):
        assert option in result.stdout
    assert timeline_main([str(tmp_path / "missing.jsonl")]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nonsense\n")
    assert timeline_main([str(bad)]) == 1


def test_timeline_default_output_and_window(
    recorded: tuple[TraceRecorder, Path], tmp_path: Path
) -> None:
    _, trace = recorded
    copy = tmp_path / "copy.jsonl"
    copy.write_text(trace.read_text())
    assert timeline_main([str(copy), "--start", "0.5", "--end", "1.5", "--width", "600"]) == 0
    page = (tmp_path / "copy.html").read_text(encoding="utf-8")
    assert "trioraft timeline: copy.jsonl" in page
    assert lane_names(svg_of(page)) == ["s1", "s2", "s3", "s4", "s5"]
    assert "0.500 s to 1.500 s" in page


def test_timeline_of_partial_and_empty_traces() -> None:
    # A trace that starts mid-run: no role events for s2, s10 sorts after s2.
    events = [
        {"t": 5.0, "kind": "send", "src": "s10", "dst": "s2", "type": "Heartbeat", "term": 4},
        {"t": 5.1, "kind": "role", "server": "s10", "role": "leader", "term": 4, "leader": "s10"},
        {"t": 5.2, "kind": "fault", "fault": "isolate", "details": {"name": "s2"}},
        {"t": 5.3, "kind": "crash", "server": "s10"},
        {"t": 5.4, "kind": "fault", "fault": "chaos", "details": {"level": 3}},
    ]
    page = render_timeline(events, title="<partial> & odd")
    assert "&lt;partial&gt; &amp; odd" in page and "<partial>" not in page
    assert lane_names(svg_of(page)) == ["s2", "s10"]
    assert "unknown" in page and ">chaos level=3<" in page
    empty = render_timeline([], title="empty")
    svg_of(empty)
    assert lane_names(svg_of(empty)) == []
