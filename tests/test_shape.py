"""The codebase's shape, kept by test: no function of the library over 60 lines, no
class over 400 and no file over 800, no import circle (at the top, inside a function or
for type checking only), and a docstring on every public module, class, function and
method of the public modules (a name without a leading underscore, in a module without
one)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Collection, Iterator
from pathlib import Path

import trioraft

ROOT = Path(trioraft.__file__).parent
MAX_FUNCTION_LINES = 60


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(ROOT.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_library_function_is_over_60_lines() -> None:
    long = [
        f"{path.relative_to(ROOT.parent)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1})"
        for path, tree in _modules()
        for f in _functions(tree)
        if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def _public(path: Path) -> bool:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return not any(p.startswith("_") and p != "__init__" for p in parts)


def _undocumented(path: Path, tree: ast.Module) -> Iterator[str]:
    where = path.relative_to(ROOT.parent)
    if ast.get_docstring(tree) is None:
        yield f"{where}: the module"
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("_"):
                continue
            if ast.get_docstring(node) is None:
                yield f"{where}:{node.lineno} {node.name}"
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not item.name.startswith("_")
                        and ast.get_docstring(item) is None
                    ):
                        yield f"{where}:{item.lineno} {node.name}.{item.name}"


def test_every_public_name_of_a_public_module_has_a_docstring() -> None:
    missing = [
        name for path, tree in _modules() if _public(path) for name in _undocumented(path, tree)
    ]
    assert missing == []


def _exported() -> Iterator[tuple[str, object]]:
    import trioraft.recipes
    import trioraft.testing

    for module in (trioraft, trioraft.testing, trioraft.recipes):
        for name in module.__all__:
            yield f"{module.__name__}.{name}", getattr(module, name)


def test_every_exported_name_and_its_public_methods_have_a_docstring() -> None:
    missing = []
    for name, obj in _exported():
        if not isinstance(obj, type) and not callable(obj):
            continue  # a constant: documented where it is defined
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if isinstance(obj, type):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or (
                    not callable(value) and not isinstance(value, property)
                ):
                    continue
                # An override without a docstring of its own inherits its base's, as
                # in the API pages (inspect.getdoc and Sphinx's autodoc both do).
                if not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == []


MAX_CLASS_LINES = 400
MAX_FILE_LINES = 800


def test_no_library_class_is_over_400_lines_nor_file_over_800() -> None:
    """Rooms stay rooms: a class that grows past 400 lines, or a file past 800, holds
    more than one part of Raft (docs/design.rst's map says where each part goes)."""
    long = [
        f"{path.relative_to(ROOT.parent)}:{c.lineno} {c.name} ({c.end_lineno - c.lineno + 1})"
        for path, tree in _modules()
        for c in ast.walk(tree)
        if isinstance(c, ast.ClassDef)
        and c.end_lineno is not None
        and c.end_lineno - c.lineno + 1 > MAX_CLASS_LINES
    ]
    long += [
        f"{path.relative_to(ROOT.parent)} ({n} lines)"
        for path, _ in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert long == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(
    name: str, path: Path, node: ast.Import | ast.ImportFrom, modules: Collection[str]
) -> Iterator[str]:
    """The trioraft modules an import statement of module ``name`` (at ``path``) names."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.startswith("trioraft"))
        return
    module = node.module or ""
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        module = ".".join([*package, *([module] if module else [])])
    if module.startswith("trioraft"):
        for alias in node.names:
            # ``from package import module`` imports the module (its package, the
            # parent, is imported anyway and may re-export its modules: not a circle);
            # ``from module import name`` imports the module.
            yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module


def _import_graph() -> dict[str, set[str]]:
    """Every module of the library and the modules it imports: at the top, inside a
    function, or for type checking only (a circle hidden in any of them is a circle)."""
    paths = {_module_name(path): path for path, _ in _modules()}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(name, path, node, paths):
                    if target in paths and target != name:
                        graph[name].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

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
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    """No module imports, however indirectly, one that imports it: not at the top, not
    inside a function, not for type checking (each hid a circle once)."""
    assert _circles(_import_graph()) == []


def test_the_circle_finder_finds_circles() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


#: What a test module does that needs the real-time worker (tests/conftest.py).
_REAL_TIME_SIGNS = ("subprocess", "free_tcp_ports", "open_tcp_network", "serve_tcp",
                    "socket.socket", "measure_tcp", "measure_hostile", "tcp_helpers")  # fmt: skip


def test_every_test_module_that_opens_sockets_or_starts_processes_runs_on_real_time() -> None:
    """The suite's two workers keep real-time tests on one of them (tests/conftest.py's
    REAL_TIME): a new module that starts processes or opens sockets must be listed there,
    or it would run beside other real-time tests and their timing margins."""
    from conftest import REAL_TIME

    tests = Path(__file__).parent
    unlisted = [
        name
        for path in sorted(tests.rglob("test_*.py"))
        if (name := path.relative_to(tests).as_posix()) not in REAL_TIME
        and any(sign in path.read_text() for sign in _REAL_TIME_SIGNS)
        and name != "test_shape.py"
    ]
    assert unlisted == []
    assert all((tests / name).exists() for name in REAL_TIME)  # no stale name either
