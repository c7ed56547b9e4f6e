"""The runtime's shape, kept by test (docs/design.rst, "The runtime's rooms"): rooms that
each say what they own and may not touch, the node reached only through its facade, no
import inside a function. The size of every class and file, and import circles, are
tests/test_shape.py's, for the whole package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import trioraft

PACKAGE = Path(trioraft.__file__).parent
RUNTIME = PACKAGE / "_runtime"

#: What the runtime may use of the node (``node.X`` / ``self._node.X``): its events, the
#: Ready/Advance cycle, its live soft state, and its reports.
FACADE = {
    # events
    "step", "tick", "propose", "propose_entry", "request_read", "lease_read_index",
    "trigger_election", "transfer_leadership", "change_config", "add_server_config",
    "remove_server_config", "set_members", "start_catch_up", "snapshot_taken",
    "snapshot_failed",
    # the Ready/Advance cycle
    "has_ready", "needs_sync", "ready", "advance", "deadline", "unsent_entries",
    # the live soft state
    "role", "term", "leader", "commit_index", "transfer_target", "lease_until", "applied",
    "snapshot_index",
    # reports
    "status", "followers", "entries_from", "foreign_identity", "awaiting_first_answer",
    "transfer_outcome", "unknown_outcomes",
}  # fmt: skip


def _rooms() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(RUNTIME.glob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def test_every_room_says_what_it_owns_and_may_not_touch() -> None:
    silent = []
    for path, tree in _rooms():
        doc = " ".join((ast.get_docstring(tree) or "").split())
        if path.name != "__init__.py" and not ("Owns" in doc and "May not touch" in doc):
            silent.append(path.name)
    assert silent == []


def test_the_runtime_reaches_the_node_only_through_its_facade() -> None:
    outside = set()
    for path, tree in _rooms():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            of = node.value
            named = (isinstance(of, ast.Name) and of.id == "node") or (
                isinstance(of, ast.Attribute) and of.attr == "_node"
            )
            if named and node.attr not in FACADE:
                outside.add(f"{path.name}: node.{node.attr}")
    assert sorted(outside) == []


def test_the_runtime_imports_nothing_inside_a_function() -> None:
    inside = []
    for path, tree in _rooms():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside.extend(
                    f"{path.name}:{n.lineno}"
                    for n in ast.walk(fn)
                    if isinstance(n, (ast.Import, ast.ImportFrom))
                )
    assert inside == []
