"""Smaller promises of issue 25 ("operable by people who did not write it").

The timeline's header counts clients apart from servers; ``bench --help`` lists no dead
option; the package installs a ``trioraft`` command, the same as ``python -m trioraft``;
``examples/kv.py`` takes its commands as JSON gives them (lists), so the command line can
serve it.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from trioraft.testing.timeline import render_timeline

ROOT = Path(__file__).resolve().parents[2]


def test_timeline_header_counts_clients_apart() -> None:
    events = [
        {"t": 0.0, "kind": "role", "server": "s1", "role": "leader", "term": 1, "leader": "s1"},
        {"t": 0.1, "kind": "send", "src": "s1", "dst": "s2", "type": "AppendEntries"},
        {"t": 0.2, "kind": "send", "src": "client-1", "dst": "s1", "type": "ClientRequest"},
        {"t": 0.3, "kind": "send", "src": "s1", "dst": "client-1", "type": "ClientResponse"},
    ]
    page = render_timeline(events, title="t")
    assert "2 servers, 1 client ·" in page  # s2 only received: still a server
    assert "1 server ·" in render_timeline(events[:1], title="t")


def test_bench_help_lists_no_dead_option(capsys: pytest.CaptureFixture[str]) -> None:
    from trioraft import bench

    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    assert "--floor" not in capsys.readouterr().out
    assert bench.parse_args(["--floor", "old.py"])[0].floor == Path("old.py")  # still taken


def test_the_trioraft_command_is_the_module() -> None:
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="trioraft")
    from trioraft.__main__ import main

    assert script.load() is main


def test_kv_example_takes_json_lists() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from kv import KeyValue
    finally:
        sys.path.remove(str(ROOT / "examples"))
    kv = KeyValue()
    for command, reply in [
        (["put", "colour", "red"], None),
        (["put", ["x", 1], "list key"], None),
        (["cas", "colour", "red", "blue"], True),
    ]:
        kv.validate(command)
        assert kv.write(command) == reply
    assert kv.read(["get", "colour"]) == "blue" and kv.read(["get", ["x", 1]]) == "list key"
    kv.restore([[["x", 1], "again"]])  # a snapshot back from msgpack: lists
    assert kv.read(["get", ["x", 1]]) == "again"
    with pytest.raises(ValueError, match="unknown query"):
        kv.read(["size"])
