"""The two builds (trioraft/_build.py): which one runs, and when the sources run where
compiled modules are. The compiled build itself is tested by running this whole suite
on it (CI runs it on both builds)."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import trioraft
from trioraft import _build

PACKAGE = Path(trioraft.__file__).parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
#: Prints the build that runs, why, and the warnings importing trioraft gave.
PROBE = textwrap.dedent(
    """
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import trioraft
        from trioraft import _build
    print(_build.build(), "|", _build.build_reason(), "|", [str(w.message) for w in caught])
    """
)


def test_the_build_that_runs_is_the_one_the_core_was_loaded_from() -> None:
    node = sys.modules["trioraft._core.node"]
    compiled = not (node.__file__ or "").endswith(".py")
    assert _build.build() == ("compiled" if compiled else "pure")
    # Compiled and pure modules never mix.
    for name in _build.COMPILED:
        module = sys.modules.get(name)
        if module is not None:
            assert (module.__file__ or "").endswith(".py") is not compiled, name


def test_compiled_modules_are_sources_of_the_package() -> None:
    for name in _build.COMPILED:
        assert name.startswith("trioraft.")
        assert PACKAGE.parent.joinpath(*name.split(".")).with_suffix(".py").is_file(), name
    # Modules that stay pure: this one (it chooses), and the attrs classes.
    for pure in ("trioraft._build", "trioraft._core.config", "trioraft._core.options"):
        assert pure not in _build.COMPILED


def _checkout(tmp_path: Path, compiled_mtime: float | None, skip: str = "") -> Path:
    """A copy of trioraft's sources in a fake checkout, with a stand-in compiled module
    (not loadable) beside each source of COMPILED (but ``skip``), of this mtime."""
    root = tmp_path / "checkout"
    shutil.copytree(PACKAGE, root / "trioraft", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    (root / "setup.py").write_text("# a source checkout\n")
    if compiled_mtime is not None:
        for name in _build.COMPILED:
            if name == skip:
                continue
            fake = root.joinpath(*name.split(".")).with_suffix(SUFFIX)
            fake.write_bytes(b"not a shared library")
            os.utime(fake, (compiled_mtime, compiled_mtime))
    return root


def _probe(root: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "TRIORAFT_PURE"}
    environ.update(env, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, env=environ, capture_output=True, text=True
    )
    return [out.stdout.strip(), out.stderr]


def test_sources_newer_than_the_compiled_modules_run_pure_with_a_warning(
    tmp_path: Path,
) -> None:
    root = _checkout(tmp_path, compiled_mtime=1_000_000.0)  # 1970: older than any source
    stdout, stderr = _probe(root)
    assert stdout.startswith("pure | the compiled modules are older than the sources"), stderr
    assert "Build the compiled modules again" in stdout


def test_a_module_missing_from_the_compiled_ones_runs_pure(tmp_path: Path) -> None:
    root = _checkout(tmp_path, compiled_mtime=4_000_000_000.0, skip="trioraft._core.node")
    stdout, stderr = _probe(root)
    assert "trioraft._core.node has no compiled module" in stdout, stderr
    assert stdout.startswith("pure |")


def test_trioraft_pure_runs_the_sources_where_compiled_modules_are(tmp_path: Path) -> None:
    root = _checkout(tmp_path, compiled_mtime=4_000_000_000.0)  # newer: would be loaded
    stdout, stderr = _probe(root, TRIORAFT_PURE="1")
    assert stdout == "pure | TRIORAFT_PURE is set | []", stderr
    # Without it, the (stand-in) compiled modules are what Python imports.
    stdout, stderr = _probe(root)
    assert stdout == "" and "ImportError" in stderr


@pytest.mark.parametrize("value", ["", "0"])
def test_trioraft_pure_off(tmp_path: Path, value: str) -> None:
    root = _checkout(tmp_path, compiled_mtime=None)  # nothing compiled: the pure build
    stdout, stderr = _probe(root, TRIORAFT_PURE=value)
    assert stdout == "pure |  | []", stderr


def test_records_list_their_fields_in_the_order_of_their_constructors() -> None:
    """FIELDS is what wire.py encodes, in order, and what equality, hash and repr read:
    it must name every parameter of the constructor, in order, with its type."""
    if _build.build() == "compiled":
        pytest.skip("compiled classes keep no annotations to compare with")
    import typing

    from trioraft._core import messages, ready, record
    from trioraft._protocol import ClientRequest, ClientResponse

    classes = [
        cls
        for module in (messages, ready)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, record.Record) and cls is not record.Record
    ]
    classes += [ClientRequest, ClientResponse]
    assert len(classes) >= 19
    for cls in classes:
        hints = typing.get_type_hints(cls.__init__)
        hints.pop("return")
        params = list(hints)
        if "cluster" in params:  # keyword-only in the constructor, fourth on the wire
            params.remove("cluster")
            params.insert(3, "cluster")
        assert [name for name, _ in cls.FIELDS] == params, cls
        for name, kind in cls.FIELDS:
            declared = hints[name]
            if typing.get_origin(declared) in (typing.Union, types.UnionType) and (
                kind is not typing.Any and type(None) not in typing.get_args(kind)
            ):  # an optional parameter of a field that always has a value
                declared = next(a for a in typing.get_args(declared) if a is not type(None))
            assert declared == kind, (cls, name)


def test_a_soft_state_s_values_are_its_fields() -> None:
    from trioraft._core import Role, SoftState

    soft = SoftState(Role.LEADER, 3, "a", 7, None, 2, 5)
    assert soft.values() == tuple(getattr(soft, name) for name, _ in soft.FIELDS)
    assert soft == SoftState(Role.LEADER, 3, "a", 7, None, 2, 5)
    assert soft != SoftState(Role.LEADER, 3, "a", 8, None, 2, 5)
