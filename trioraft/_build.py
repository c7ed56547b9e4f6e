"""Which build of trioraft runs: the compiled one (mypyc) or the pure-Python one.

trioraft's synchronous path (:data:`COMPILED`: the core, the records it hands out, the
wire codec, the runtime's rooms that carry out each Ready: the driver, the applier, the
waiters and replication, and the write path) is compiled with mypyc when it is built
where a C compiler is (see ``setup.py``): each of these modules then has, beside its
source, an extension module built from it (``node.cpython-311-x86_64-linux-gnu.so``
beside ``node.py``), which Python imports in preference to the source. The same
sources, run as they are, are the pure build. Importing trioraft runs the sources even
where compiled modules are:

* when the environment variable ``TRIORAFT_PURE`` is set (to anything but ``""`` or
  ``"0"``): the pure build, from the same installation (CI runs the suite both ways);
* in a source checkout (an editable or in-place build), when the compiled modules are
  not those of the sources any more (a source is newer than its compiled module, or the
  modules compiled are not those :data:`COMPILED` lists): a warning says so, and how
  to build them again.

Compiled and pure modules never mix: a compiled module works with the native classes of
the other compiled modules, so it is all of them or none.

This module is never compiled (``setup.py`` reads :data:`COMPILED` from it). It chooses
the build when it is imported, which must be before any compiled module is:
``trioraft/__init__.py`` imports it first.
"""

from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "GROUP", "build", "build_reason", "document"]

#: The modules the compiled build compiles with mypyc.
COMPILED = (
    "trioraft._core.base",
    "trioraft._core.confchange",
    "trioraft._core.elections",
    "trioraft._core.follower",
    "trioraft._core.log",
    "trioraft._core.membership",
    "trioraft._core.messages",
    "trioraft._core.node",
    "trioraft._core.progress",
    "trioraft._core.quorum",
    "trioraft._core.reads",
    "trioraft._core.ready",
    "trioraft._core.record",
    "trioraft._core.replication",
    "trioraft._core.snapshots",
    "trioraft._core.types",
    "trioraft._core.unstable",
    "trioraft._network.wire",
    "trioraft._runtime.apply",
    "trioraft._runtime.driver",
    "trioraft._runtime.replication",
    "trioraft._runtime.waiters",
    "trioraft._runtime.writes",
    "trioraft._protocol",
)
#: The name mypyc gives the shared library of the compiled modules (with ``__mypyc``).
GROUP = "trioraft._compiled"

_PACKAGE = Path(__file__).resolve().parent
#: Why the pure build runs where compiled modules are ("" if it does not).
_reason = ""


def _source(module: str) -> Path:
    return _PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def _compiled_file(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _stale(compiled: Sequence[Path | None]) -> str:
    """Why compiled modules of a source checkout are not those of its sources ("" if
    they are)."""
    if not (_PACKAGE.parent / "setup.py").is_file():
        return ""  # installed from a wheel: sources and compiled modules came together
    if None in compiled:
        missing = COMPILED[compiled.index(None)]
        return f"{missing} has no compiled module beside the others"
    for module, built in zip(COMPILED, compiled, strict=True):
        assert built is not None
        if _source(module).stat().st_mtime > built.stat().st_mtime:
            return f"{_source(module).relative_to(_PACKAGE.parent)} is newer than {built.name}"
    return ""


class _Sources(importlib.abc.MetaPathFinder):
    """A finder that imports the modules of :data:`COMPILED` from their sources."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


_SOURCES = _Sources()


def _select_build() -> None:
    """Run the pure build if it must run (see the module's documentation)."""
    global _reason
    compiled = [_compiled_file(_source(module)) for module in COMPILED]
    if not any(compiled):
        return  # the pure build: nothing was compiled
    if os.environ.get("TRIORAFT_PURE", "") not in ("", "0"):
        _reason = "TRIORAFT_PURE is set"
    else:
        stale = _stale(compiled)
        if not stale:
            return
        _reason = f"the compiled modules are older than the sources ({stale})"
        warnings.warn(
            f"trioraft runs its pure-Python sources: {_reason}. Build the compiled modules "
            "again (pip install -e .), or remove "
            "them (TRIORAFT_PURE=1 pip install -e .)",
            RuntimeWarning,
            stacklevel=2,
        )
    if _SOURCES not in sys.meta_path:
        sys.meta_path.insert(0, _SOURCES)


_select_build()


def build() -> str:
    """``"compiled"`` if the compiled modules run, else ``"pure"``."""
    from ._core import node

    return "pure" if (node.__file__ or "").endswith(".py") else "compiled"


def build_reason() -> str:
    """Why the pure build runs where compiled modules are ("" otherwise)."""
    return _reason


def document(*classes: type) -> None:
    """Give compiled ``classes`` their docstrings back, read from their sources (mypyc
    leaves compiled classes none): for ``help()`` on the public ones. Costs a parse of
    their modules, so only what trioraft exports gets them."""
    trees: dict[str, ast.Module] = {}
    for cls in classes:
        if cls.__doc__ or cls.__module__ not in COMPILED:
            continue
        if cls.__module__ not in trees:
            source = _source(cls.__module__).read_text(encoding="utf-8")
            trees[cls.__module__] = ast.parse(source)
        for node in trees[cls.__module__].body:
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                cls.__doc__ = ast.get_docstring(node)
