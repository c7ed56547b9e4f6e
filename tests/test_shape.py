"""The codebase's shape, kept by test: no function of the library over 60 lines, and a
docstring on every public module, class, function and method of the public modules (a
name without a leading underscore, in a module without one)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
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
