"""Every code block of docs/tutorial.rst runs, in order, and prints what the page shows.

How each kind of block is run:

* ``.. code-block:: python``: executed in the order of the page, in one namespace, as if
  typed into one Python session at the root of the repository. Functions a block defines
  whose names start with ``test_`` are then called, as pytest would call them.
* ``.. code-block:: text`` right after a Python block: what that block must print
  (its stdout), compared as doctest compares with ELLIPSIS (``...`` matches anything)
  and NORMALIZE_WHITESPACE.
* ``.. code-block:: console``: a shell session. ``$ `` starts a command (a trailing
  ``\\`` continues it on the next line); the lines up to the next ``$ `` are its expected
  output (stdout and stderr together), compared the same way. ``$ NAME=value`` sets a
  shell variable for the later commands. ``python -m trioraft serve`` runs in the
  background until the end of the test, which waits (bounded) until its output matches,
  then stops it (SIGTERM, then SIGKILL) even when the test fails. Every other command runs
  to completion through ``bash`` (bounded) and must exit 0, or non-zero when its expected
  output starts with ``error:`` (the command line's one-line error).
* ``.. literalinclude::``: the file exists, and so does its ``:pyobject:``. (The Python
  blocks import what it shows, from ``examples/config_store.py``.)

Addresses: the page uses ``127.0.0.1:7011`` to ``127.0.0.1:7013`` (not the README's
7001-7003: both clusters may run at once). The test replaces each
of these three ports, everywhere on the page (commands, outputs, Python), by a free port,
and fails if the page uses any other. Commands run in a temporary directory, so the
servers' ``store/a``... land in ``tmp_path``, with the running interpreter first on PATH
as ``python`` and the repository on PYTHONPATH (the page runs them from the root of a
checkout, where ``examples.config_store`` is importable).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import pytest

from trioraft.testing import free_tcp_ports

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.rst"

#: The ports the page is written with; each is replaced by a free port.
PORTS = ("7011", "7012", "7013")
ADDRESS = re.compile(r"\b127\.0\.0\.1:(\d+)\b")

#: Bounds on every wait (seconds of real time).
COMMAND_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0

CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


# ------------------------------------------------------------------------ the page
@attrs.frozen
class Block:
    """One directive of the page: its kind, options and (dedented) content."""

    directive: str  # "code-block" or "literalinclude"
    argument: str  # the language, or the included path
    options: dict[str, str]
    content: str
    line: int  # the line of the page where the content starts (1-based)

    @property
    def where(self) -> str:
        return f"docs/tutorial.rst:{self.line}"


DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w-]+)::\s*(.*)$")
OPTION = re.compile(r"^\s+:([\w-]+):\s*(.*)$")


def parse(text: str) -> list[Block]:
    """The code blocks and included files of a reStructuredText page, in order. A literal
    block made with ``::`` is refused: it would escape the test."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = DIRECTIVE.match(line)
        if match is None:
            if line.rstrip().endswith("::"):
                raise AssertionError(
                    f"docs/tutorial.rst:{i + 1}: a '::' literal block is not run by this "
                    "test: use '.. code-block:: python' (or text, or console)"
                )
            i += 1
            continue
        indent, directive, argument = match.groups()
        i += 1
        if directive in ("code", "sourcecode", "code-block", "literalinclude", "doctest"):
            assert directive in ("code-block", "literalinclude"), (
                f"docs/tutorial.rst:{i}: use '.. code-block::', not '.. {directive}::'"
            )
        else:
            continue  # another directive (toctree, note...): not code
        options: dict[str, str] = {}
        while i < len(lines) and (option := OPTION.match(lines[i])):
            options[option.group(1)] = option.group(2)
            i += 1
        body: list[str] = []
        start = i + 1
        while i < len(lines):
            current = lines[i]
            if current.strip() and len(current) - len(current.lstrip()) <= len(indent):
                break
            body.append(current)
            i += 1
        while body and not body[0].strip():
            body.pop(0)
            start += 1
        content = _dedent(body).rstrip() + "\n"
        blocks.append(Block(directive, argument.strip(), options, content, start))
    return blocks


def _dedent(lines: list[str]) -> str:
    widths = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return "\n".join(line[cut:] for line in lines)


def rewrite_ports(text: str, ports: dict[str, str]) -> str:
    """Every ``127.0.0.1:PORT`` of the page, with PORT replaced by ``ports[PORT]``."""
    return ADDRESS.sub(lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)


def matches(want: str, got: str) -> bool:
    return CHECKER.check_output(want, got, FLAGS)


def difference(want: str, got: str) -> str:
    return CHECKER.output_difference(doctest.Example("", want), got, FLAGS)


# ------------------------------------------------------------------- shell sessions
@attrs.frozen
class Command:
    """One ``$`` command of a console block, and the output shown after it."""

    text: str
    expected: str
    line: int

    @property
    def where(self) -> str:
        return f"docs/tutorial.rst:{self.line}"


def commands(block: Block) -> list[Command]:
    """The commands of a console block, with their expected outputs."""
    found: list[Command] = []
    lines = block.content.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"{block.where}: expected a '$ ' command, got {line!r}"
        number = block.line + i
        parts = [line[2:]]
        while parts[-1].endswith("\\"):
            parts[-1] = parts[-1][:-1].rstrip()
            i += 1
            parts.append(lines[i].strip())
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        found.append(Command(" ".join(parts), "\n".join(output), number))
    return found


ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=(\S*)$")


class Shell:
    """The terminals of the page: background servers, and commands run to completion."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        python = bin_dir / "python"  # 'python' is this interpreter (and its venv)
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        python.chmod(0o755)
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": python_path,
        }
        self.servers: list[tuple[Command, subprocess.Popen[bytes], Path]] = []

    def run(self, command: Command) -> None:
        assignment = ASSIGNMENT.match(command.text)
        if assignment is not None:
            self.env[assignment.group(1)] = assignment.group(2)
            assert not command.expected.strip(), f"{command.where}: output of an assignment"
        elif shlex.split(command.text)[:4] == ["python", "-m", "trioraft", "serve"]:
            self.serve(command)
        else:
            self.complete(command)

    def serve(self, command: Command) -> None:
        log_path = self.workdir / f"server-{len(self.servers)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command.text}"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no signal meant for pytest reaches it
            )
        self.servers.append((command, process, log_path))
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not matches(command.expected, got := log_path.read_text()):
            assert process.poll() is None, f"{command.where}: the server exited:\n{got}"
            assert time.monotonic() < deadline, (
                f"{command.where}: no matching output within {SERVER_START_TIMEOUT} s:\n"
                + difference(command.expected, got)
            )
            time.sleep(0.05)  # a bounded poll of a real process

    def complete(self, command: Command) -> None:
        try:
            result = subprocess.run(
                ["bash", "-c", command.text],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{command.where}: no exit within {COMMAND_TIMEOUT} s\n{self.logs()}"
            ) from None
        failing = command.expected.lstrip().startswith("error:")
        assert (result.returncode != 0) == failing, (
            f"{command.where}: exit status {result.returncode}:\n{result.stdout}\n" + self.logs()
        )
        assert matches(command.expected, result.stdout), (
            f"{command.where}: {command.text}\n"
            + difference(command.expected, result.stdout)
            + self.logs()
        )

    def logs(self) -> str:
        return "".join(
            f"\n--- {path.name}: {command.text}\n{path.read_text()}"
            for command, _, path in self.servers
        )

    def close(self) -> None:
        """Stop every server: SIGTERM (a clean stop), then SIGKILL if it lingers."""
        for _, process, _ in self.servers:
            if process.poll() is None:
                process.terminate()
        for _, process, _ in self.servers:
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=SERVER_STOP_TIMEOUT)


# ---------------------------------------------------------------------- the tests
def test_every_block_is_one_the_test_runs() -> None:
    """The page holds only blocks this test knows how to run, and only the ports it
    rewrites."""
    text = TUTORIAL.read_text()
    blocks = parse(text)
    kinds = [b.argument if b.directive == "code-block" else b.directive for b in blocks]
    assert set(kinds) <= {"python", "text", "console", "literalinclude"}, kinds
    for previous, block in zip([None, *blocks], blocks, strict=False):
        if block.directive == "code-block" and block.argument == "text":
            assert previous is not None and previous.argument == "python", (
                f"{block.where}: an output block must follow a Python block"
            )
    assert kinds.count("python") >= 8 and kinds.count("console") >= 5, kinds
    assert set(ADDRESS.findall(text)) == set(PORTS), "the page must use exactly these ports"
    for block in blocks:
        if block.directive == "literalinclude":
            assert set(block.options) <= {"pyobject"}, block.options
            path = (TUTORIAL.parent / block.argument).resolve()
            assert path.is_file(), f"{block.where}: no file {block.argument}"
            if "pyobject" in block.options:
                source = path.read_text()
                name = block.options["pyobject"]
                assert re.search(rf"^(class|def|async def) {name}\b", source, re.M), (
                    f"{block.where}: {name} is not defined in {block.argument}"
                )


def test_the_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every block, in the page's order: Python in one namespace, consoles as real
    processes on free ports, outputs as shown."""
    if shutil.which("bash") is None:
        pytest.skip("the console blocks need bash")
    ports = {port: str(free) for port, free in zip(PORTS, free_tcp_ports(len(PORTS)), strict=True)}
    blocks = parse(rewrite_ports(TUTORIAL.read_text(), ports))
    monkeypatch.syspath_prepend(str(ROOT))  # `from examples.config_store import ...`
    namespace: dict[str, Any] = {"__name__": "tutorial"}
    shell = Shell(tmp_path)
    printed: tuple[Block, str] | None = None
    try:
        for block in blocks:
            if block.directive == "literalinclude":
                continue  # checked above; the Python blocks import what it shows
            if block.argument == "python":
                printed = (block, run_python(block, namespace))
            elif block.argument == "text":
                assert printed is not None, f"{block.where}: no Python block before"
                source, out = printed
                assert matches(block.content, out), (
                    f"{block.where}: the output of {source.where} differs\n"
                    + difference(block.content, out)
                )
                printed = None
            elif block.argument == "console":
                for command in commands(block):
                    shell.run(command)
    finally:
        shell.close()


def run_python(block: Block, namespace: dict[str, Any]) -> str:
    """Execute a Python block in ``namespace``, then the ``test_`` functions it defines;
    return what it printed. Tracebacks point at the page's lines."""
    before = set(namespace)
    code = compile("\n" * (block.line - 1) + block.content, str(TUTORIAL), "exec")
    out = io.StringIO()
    with _tee(out):
        exec(code, namespace)
        for name in sorted(set(namespace) - before):
            if name.startswith("test_") and callable(namespace[name]):
                namespace[name]()
    return out.getvalue()


@contextlib.contextmanager
def _tee(out: IO[str]) -> Iterator[None]:
    """Capture stdout into ``out`` (and still show it, for pytest's report)."""
    real = sys.stdout

    class Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            out.write(text)
            return real.write(text)

    with contextlib.redirect_stdout(Tee()):
        yield
