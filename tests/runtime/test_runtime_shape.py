"""The runtime's shape, kept by test (docs/design.rst, "The runtime's rooms"): rooms of
bounded size, each saying what it owns and may not touch; the node reached only through
its facade; no import circle in the package, not even one hidden in a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import trioraft

PACKAGE = Path(trioraft.__file__).parent
RUNTIME = PACKAGE / "_runtime"
MAX_CLASS_LINES = 400
MAX_FILE_LINES = 800

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


def test_rooms_are_small() -> None:
    big = []
    for path, tree in _rooms():
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            big.append(f"{path.name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    big.append(f"{path.name}: class {node.name}, {size} lines")
    assert big == []


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(module: str, is_package: bool, tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules ``module`` imports, anywhere in it (in a function too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.update(
                f"{target}.{a.name}" if f"{target}.{a.name}" in known else target
                for a in node.names
            )
    return {m for m in found if m in known and m != module}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle_in_the_package() -> None:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph = {
        name: _imported(name, path.name == "__init__.py", ast.parse(path.read_text()), known)
        for name, path in paths.items()
    }
    assert _circles(graph) == []
