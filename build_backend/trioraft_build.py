"""trioraft's build backend: setuptools', which also asks for mypy (mypyc) and trioraft's
dependencies when it is to make the compiled build (mypyc type-checks what it compiles,
so it needs the types of what that imports).

The compiled build is made where a C compiler works (it compiles a file that includes
Python.h), unless the environment variable ``TRIORAFT_PURE`` is set (to anything but
``""`` or ``"0"``): then, and where no compiler works, the build is pure Python. See
``setup.py`` for what is compiled, and docs/performance.rst for the builds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook of setuptools' backend)

#: The mypy that compiles the compiled build (mypyc ships with mypy).
MYPY = "mypy>=1.10"


def pure_reason() -> str:
    """Why this build is pure Python ("" when it is to be compiled)."""
    if os.environ.get("TRIORAFT_PURE", "") not in ("", "0"):
        return "TRIORAFT_PURE is set"
    if not _compiler_works():
        return "no C compiler works here"
    return ""


def _compiler_works() -> bool:
    """Whether a C compiler compiles a file that includes Python.h."""
    import sysconfig

    from setuptools._distutils import ccompiler, errors
    from setuptools._distutils import sysconfig as distutils_sysconfig

    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w", encoding="ascii") as f:
            f.write("#include <Python.h>\nint trioraft_probe(void) { return 0; }\n")
        compiler: Any = ccompiler.new_compiler()
        try:
            distutils_sysconfig.customize_compiler(compiler)
            compiler.compile(
                [source], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (errors.DistutilsError, errors.CCompilerError, OSError):
            return False
    return True


def _compiled_requires() -> list[str]:
    if pure_reason():
        return []
    from setuptools.config.pyprojecttoml import read_configuration

    project = read_configuration("pyproject.toml", expand=False)["project"]
    return [MYPY, *project.get("dependencies", [])]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, and mypy's and trioraft's for the compiled build."""
    requires: list[str] = _setuptools.get_requires_for_build_wheel(config_settings)
    return requires + _compiled_requires()


def get_requires_for_build_editable(
    config_settings: dict[str, Any] | None = None,
) -> list[str]:
    """As :func:`get_requires_for_build_wheel`, for an editable install."""
    requires: list[str] = _setuptools.get_requires_for_build_editable(config_settings)
    return requires + _compiled_requires()


if __name__ == "__main__":  # python build_backend/trioraft_build.py: which build is made
    reason = pure_reason()
    print(f"pure ({reason})" if reason else "compiled")
    sys.exit(0)
