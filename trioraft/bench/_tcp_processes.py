"""The processes of the ``tcp`` section (see :mod:`trioraft.bench.tcp`): a node
process driven over its stdin/stdout (:class:`_Child`), what runs in a cluster's
processes (:class:`_System`), every process of a measurement (:class:`_ProcessRun`) and a
cluster of three (:class:`_ProcessCluster`)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

import trioraft
from trioraft.testing import free_tcp_ports

_HERE = Path(__file__).resolve().parent
#: Runs a node script by its path (importing the benchmark package would add ~10 MB),
#: with its directory on ``sys.path`` for the module the nodes share (``_node_common``),
#: and without the current directory (``-c`` puts it first): a node imports the trioraft
#: of ``PYTHONPATH`` (the driver's own), not one that happens to sit in the directory
#: the driver was started from.
_BOOTSTRAP = (
    "import os, runpy, sys; sys.argv.pop(0); sys.path[:] = [p for p in sys.path if p]; "
    "sys.path.append(os.path.dirname(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
#: Seconds a server process may take to start (until its first line).
STARTUP_TIMEOUT = 30.0
#: Seconds to wait for one leader known to all.
STABLE_TIMEOUT = 30.0
#: Seconds a simple command (status, mem, watch) may take.
COMMAND_TIMEOUT = 10.0
#: The driver's polling period while a cluster settles.
SETTLE_POLL = 0.02


class NodeError(Exception):
    """A node process died, answered nonsense, or did not answer in time."""


class _Child:
    """One node process: its pipes, its log, and a bounded request/answer over them."""

    def __init__(
        self, label: str, cmd: Sequence[str], log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.label = label
        self.cmd = list(cmd)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
            )
        self.pid = self.proc.pid
        self._buffer = bytearray()
        self.name: str | None = None

    def __repr__(self) -> str:
        return f"<node {self.label} pid={self.pid}>"

    def _fail(self, problem: str) -> NodeError:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        detail = f" (log: {' | '.join(tail)})" if tail else ""
        return NodeError(f"node {self.label} (pid {self.pid}): {problem}{detail}")

    def readline(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the node prints, waiting ``timeout`` seconds at most."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while (end := self._buffer.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise self._fail(f"no answer within {timeout:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._fail(f"exited (status {self.proc.poll()})")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        try:
            answer = json.loads(line)
        except ValueError:
            raise self._fail(f"printed {line[:100]!r}") from None
        if not isinstance(answer, dict) or "error" in answer:
            raise self._fail(f"answered {answer!r}")
        return answer

    def send(self, op: str, **fields: Any) -> None:
        """Send one command (its answer is for :meth:`readline`)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fail(f"exited (status {self.proc.poll()})") from None

    def call(self, op: str, timeout: float = COMMAND_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Send one command and return its answer."""
        self.send(op, **fields)
        return self.readline(timeout)

    def await_hello(self, timeout: float) -> None:
        """Wait for the node's first line (it listens and its server runs)."""
        self.name = str(self.readline(timeout)["hello"])

    def sigkill(self) -> None:
        """``kill -9`` the process now (no wait)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self, graceful: bool = True) -> None:
        """End the process (``quit`` first if ``graceful``, then SIGKILL) and reap it."""
        if graceful and self.proc.poll() is None:
            try:
                self.call("quit", timeout=3.0)
                self.proc.wait(5.0)
            except (NodeError, subprocess.TimeoutExpired):
                pass
        self.sigkill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL ends a process
            self.proc.wait(10.0)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@attrs.frozen
class _System:
    """What runs in a cluster's processes: trioraft on some storage, or PySyncObj."""

    key: str
    label: str
    #: ``"memory"`` or ``"disk"`` for trioraft; ``None`` for PySyncObj.
    storage: str | None = None
    #: PySyncObj's ``appendEntriesUseBatch``.
    batch: bool = True
    #: More flags of a trioraft node (``--follower-reads``, ``--lease-reads``).
    flags: tuple[str, ...] = ()
    #: How a trioraft leader keeps writes in flight: ``"write"``, a task per write;
    #: ``"submit"``, :meth:`~trioraft.Server.submit` and callbacks (as PySyncObj's).
    api: str = "write"
    #: More environment variables of the node processes (``(name, value)`` pairs).
    env: tuple[tuple[str, str], ...] = ()

    @property
    def restarts(self) -> bool:
        """Whether a killed server restarts on its state (else: a fresh cluster)."""
        return self.storage == "disk"

    def command(self, index: int, ports: Sequence[int], data: Path, lifetime: float) -> list[str]:
        """The command line of server ``index`` of a cluster on ``ports``."""
        addresses = [f"127.0.0.1:{p}" for p in ports]
        life = ["--lifetime", f"{lifetime:.0f}"]
        if self.storage is None:
            peers = [a for i, a in enumerate(addresses) if i != index]
            extra = [] if self.batch else ["--no-batch"]
            script = _HERE / "_pysyncobj_node.py"
            args = ["--listen", addresses[index], *_flags("--peer", peers), *extra, *life]
            return [sys.executable, "-c", _BOOTSTRAP, str(script), *args]
        names = [f"raft{i + 1}" for i in range(len(ports))]
        peers = [f"{names[i]}={a}" for i, a in enumerate(addresses) if i != index]
        args = ["--name", names[index], "--listen", addresses[index], *_flags("--peer", peers)]
        args += ["--storage", self.storage, "--data-dir", str(data / names[index]), *life]
        args += self.flags
        return [sys.executable, "-c", _BOOTSTRAP, str(_HERE / "_tcp_node.py"), *args]


def _flags(flag: str, values: Sequence[str]) -> list[str]:
    return [part for value in values for part in (flag, value)]


TRIORAFT_MEMORY = _System("memory", "trioraft, MemoryStorage", storage="memory")
TRIORAFT_DISK = _System("disk", "trioraft, DiskStorage", storage="disk")
TRIORAFT_SUBMIT = _System(
    "memory_submit", "trioraft, MemoryStorage, submit()", storage="memory", api="submit"
)
#: The clusters of the reads (MemoryStorage): ReadIndex on the leader and follower reads;
#: leases (and follower reads, which a lease answers at once on the leader).
TRIORAFT_READS = _System(
    "follower_reads", "trioraft, follower_reads", storage="memory", flags=("--follower-reads",)
)
TRIORAFT_LEASE_READS = _System(
    "lease_reads",
    "trioraft, lease_reads + follower_reads",
    storage="memory",
    flags=("--lease-reads", "--follower-reads"),
)
PYSYNCOBJ_NO_BATCH = _System("batching_off", "PySyncObj, batching off", batch=False)
PYSYNCOBJ_BATCH = _System("batching_on", "PySyncObj, batching on (default)", batch=True)


class _ProcessRun:
    """Every process this measurement starts, its files, and its bounds."""

    def __init__(
        self,
        lifetime: float,
        profile_dir: Path | None,
        election_timeout: tuple[float, float] | None = None,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="trioraft-bench-tcp-"))
        self.lifetime = lifetime
        self.profile_dir = profile_dir
        #: The trioraft servers' (min, max) election timeout (``None``: the defaults).
        self.election_timeout = election_timeout
        self.children: list[_Child] = []
        self.clusters = 0
        self.env = dict(os.environ)
        self.env["TRIORAFT_BENCH_SECRET"] = os.urandom(16).hex()
        here = str(Path(trioraft.__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        # Servers load compiled modules, as an installed package does (compiling at
        # every start would add its transient memory to the peak RSS): bytecode goes
        # to a directory of this run, written by warm_up(), never into the source tree.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache")

    def warm_up(self, modules: Sequence[str]) -> None:
        """Import ``modules`` once in a child, writing their bytecode for the servers."""
        code = f"import {', '.join(modules)}"
        subprocess.run(
            [sys.executable, "-c", code], env=self.env, timeout=120, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def spawn(self, system: _System, cluster: int, index: int, ports: Sequence[int]) -> _Child:
        """Start server ``index`` of the ``cluster``-th cluster (not waiting for it)."""
        data = self.root / f"{system.key}-{cluster}"
        data.mkdir(exist_ok=True)
        cmd = system.command(index, ports, data, self.lifetime)
        label = f"{system.key}-{cluster}/{index}"
        if self.profile_dir is not None and system.storage is not None:
            cmd += ["--profile", str(self.profile_dir / f"{system.key}-{cluster}-{index}.prof")]
        if self.election_timeout is not None and system.storage is not None:
            cmd += ["--election-timeout", ",".join(map(str, self.election_timeout))]
        log = self.root / f"{system.key}-{cluster}-{index}.log"
        child = _Child(label, cmd, log, {**self.env, **dict(system.env)})
        self.children.append(child)
        return child

    @contextlib.contextmanager
    def cluster(self, system: _System) -> Iterator[_ProcessCluster]:
        """A new :class:`_ProcessCluster` of ``system``, stopped when the block ends."""
        cluster = _ProcessCluster(self, system)
        try:
            yield cluster
        finally:
            cluster.close()

    def close(self, keep_files: bool) -> None:
        """Kill every process still running (reaping it); remove the files unless kept."""
        for child in self.children:
            child.close(graceful=False)
        if not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def recorded(where: str, errors: list[str], progress: Callable[[str], None]) -> Iterator[None]:
    """Record a :class:`NodeError` that ends the block in ``errors`` (and tell
    ``progress``): the measurement goes on with its next part."""
    try:
        yield
    except NodeError as exc:
        errors.append(f"{where}: {exc}")
        progress(f"tcp: {where}: FAILED: {exc}")


class _ProcessCluster:
    """Three server processes of one system, forming one cluster."""

    def __init__(self, run: _ProcessRun, system: _System) -> None:
        self.run = run
        self.system = system
        self.number = run.clusters
        run.clusters += 1
        self.ports = free_tcp_ports(3)
        self.nodes = [run.spawn(system, self.number, i, self.ports) for i in range(3)]
        for node in self.nodes:
            node.await_hello(STARTUP_TIMEOUT)
        if run.election_timeout is not None and system.storage is not None:
            # Long election timeouts (the tests' choice; see measure_tcp): a new
            # cluster's first election is not measured, so one server calls it at once
            # rather than every cluster waiting 1-2 s for a timeout.
            answer = self.nodes[0].call("campaign")
            if answer.get("campaigning") is not True:
                raise NodeError(f"{self.nodes[0].label}: campaign: {answer}")

    def restart(self, index: int) -> None:
        """Start server ``index`` again, on the same port and data."""
        self.nodes[index].close(graceful=False)
        self.nodes[index] = self.run.spawn(self.system, self.number, index, self.ports)
        self.nodes[index].await_hello(STARTUP_TIMEOUT)

    def statuses(self) -> list[dict[str, Any]]:
        """The status of every server."""
        return [node.call("status") for node in self.nodes]

    def wait_stable(self, timeout: float = STABLE_TIMEOUT) -> tuple[_Child, float]:
        """Wait until every server names the same leader, the leader knows it leads and,
        where the system can tell (PySyncObj), every connection is up; return the
        leader's process and the seconds waited."""
        started = time.monotonic()
        sts: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout:
            sts = self.statuses()
            leaders = {st["leader"] for st in sts}
            settled = all(st["mesh"] is not False and st.get("ready", True) for st in sts)
            if settled and len(leaders) == 1 and None not in leaders:
                for node, st in zip(self.nodes, sts, strict=True):
                    if st["is_leader"]:
                        return node, time.monotonic() - started
            time.sleep(SETTLE_POLL)
        seen = "; ".join(
            f"{st['name']}: {st['role']} term {st['term']} leader {st['leader']} "
            f"connections {st['connections']} applied {st['applied']}"
            for st in sts
        )
        raise NodeError(f"no stable leader within {timeout:g} s (last seen: {seen})")

    def wait_converged(self, timeout: float = COMMAND_TIMEOUT) -> list[int]:
        """Wait until the three counters agree (or ``timeout``); return them."""
        deadline = time.monotonic() + timeout
        while True:
            values = [int(st["value"]) for st in self.statuses()]
            if len(set(values)) == 1 or time.monotonic() > deadline:
                return values
            time.sleep(SETTLE_POLL)

    def close(self) -> None:
        """Stop the three servers (politely, then SIGKILL)."""
        for node in self.nodes:
            node.close()
