"""Build trioraft: compiled with mypyc where a C compiler works, pure Python elsewhere.

The modules of the synchronous path (``trioraft._build.COMPILED``: the core, its
records, the wire codec, the runtime's per-Ready work) are compiled into extension
modules beside their sources; everything else, and everything on a machine without a
compiler, stays pure Python. Both builds are the same code and pass the same suite. The choice:

* ``pip install .`` / ``pip install -e .`` / ``python -m build``: compiled where a C
  compiler works (build_backend/trioraft_build.py asks for mypy then), pure elsewhere;
* ``TRIORAFT_PURE=1`` (set for any of these): pure, even where a compiler works (an
  editable pure build also removes compiled modules an earlier one left in the tree);
* ``python setup.py build_ext --inplace``: the compiled modules, in the checkout (with
  mypy installed in the environment, and a setuptools new enough to read the project's
  SPDX ``license``, 77 or later: a venv's own may not be; ``pip install -e .`` builds in
  an environment of its own and needs neither);
* a compiled build that fails to compile (a C compiler error) is pure, with a warning,
  unless ``TRIORAFT_COMPILED=1`` is set, which makes the failure an error.

At run time, ``TRIORAFT_PURE=1`` runs the sources of a compiled install (see
``trioraft/_build.py``).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_backend"))

from trioraft_build import pure_reason  # noqa: E402


def _build_constants() -> dict[str, Any]:
    """COMPILED and GROUP of trioraft/_build.py, read without importing trioraft."""
    tree = ast.parse((HERE / "trioraft" / "_build.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("COMPILED", "GROUP"):
                found[target.id] = ast.literal_eval(node.value)
    return found


CONSTANTS = _build_constants()
SOURCES = [str(Path(*name.split(".")).with_suffix(".py")) for name in CONSTANTS["COMPILED"]]
REQUIRED = os.environ.get("TRIORAFT_COMPILED", "") not in ("", "0")


def _warn(text: str) -> None:
    print(f"trioraft: {text}", file=sys.stderr)


def _compiled_in_tree() -> list[Path]:
    """Compiled modules built in place in this checkout (trioraft has no others)."""
    package = HERE / "trioraft"
    return sorted([*package.rglob("*.so"), *package.rglob("*.pyd")])


def _expected(path: Path) -> bool:
    """Whether ``path`` is a compiled module this build makes (not one an earlier build
    made of a module no longer compiled, which Python would still import)."""
    module = ".".join(path.relative_to(HERE).with_name(path.name.split(".")[0]).parts)
    return module in CONSTANTS["COMPILED"] or module == CONSTANTS["GROUP"] + "__mypyc"


class BuildExt(build_ext):
    """build_ext that leaves the build pure when compiling fails (unless required)."""

    def run(self) -> None:
        inplace = self.inplace or getattr(self, "editable_mode", False)
        for stale in _compiled_in_tree() if inplace else ():
            if not _expected(stale):
                _warn(f"removing {stale.relative_to(HERE)}: no longer compiled")
                stale.unlink()
        try:
            super().run()
        except Exception as exc:
            if REQUIRED or not self.extensions:
                raise
            _warn(f"compiling failed ({exc}): this build is pure Python")
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            return
        if inplace:
            # Newer than the sources they were built from, even where a module was not
            # copied again (it had not changed): trioraft/_build.py compares the times.
            for built in _compiled_in_tree():
                os.utime(built)


class BuildPy(build_py):
    """build_py that removes in-place compiled modules from the tree in a pure editable
    build (Python would import them in preference to the sources)."""

    def run(self) -> None:
        if getattr(self, "editable_mode", False) and not EXT_MODULES:
            for stale in _compiled_in_tree():
                _warn(f"removing {stale.relative_to(HERE)}: this build is pure Python")
                stale.unlink()
        super().run()


def _ext_modules() -> list[Any]:
    reason = pure_reason()
    if reason:
        _warn(f"pure Python build ({reason})")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if REQUIRED:
            raise
        _warn("pure Python build (mypy, which compiles the compiled build, is not installed)")
        return []
    _warn(f"compiling {len(SOURCES)} modules with mypyc (TRIORAFT_PURE=1: a pure build)")
    return list(mypycify(SOURCES, group_name=CONSTANTS["GROUP"], opt_level="3"))


EXT_MODULES = _ext_modules()
setup(ext_modules=EXT_MODULES, cmdclass={"build_ext": BuildExt, "build_py": BuildPy})
