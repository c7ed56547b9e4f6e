"""Porcupine's test histories, checked by trioraft's checker, beside Porcupine's times.

``python -m trioraft.bench.porcupine PORCUPINE_DIR [--go-bench FILE] [--repeat N]``

Porcupine (Anish Athalye's linearizability checker, in Go) keeps its test histories in
its repository: ``test_data/jepsen/etcd_NNN.log`` (Jepsen's logs of an etcd register:
read, write and compare-and-set, with crashed operations) and ``test_data/kv/*.txt``
(a key-value store: get, put and append over ten keys, from 1, 10 and 50 clients).
Point ``PORCUPINE_DIR`` at a checkout of it: this module reads those files there (it
holds no copy of them) and the verdict Porcupine's tests expect of each
(``porcupine_test.go``'s ``checkJepsen(t, N, true|false)``; the kv files say it in
their names, ``-ok`` or ``-bad``).

Each history becomes operations the way Porcupine's tests read it: time is the event's
position in the log, an operation of a log that never returns (a crash, ``:info``)
returns at the end with an output nothing is compared with (so it is of unknown outcome
here: it may take effect at any point after its call, or never), and a timed-out read
likewise. Porcupine's models compare only the outputs of reads and compare-and-sets,
so a write's output is its own value here (what :func:`~trioraft.testing.kv_model`
returns); an empty string read back (Porcupine's value of a key never written) is
``None`` here (``kv_model``'s). The etcd register is ``kv_model``'s key ``"x"``.

Each history is checked ``--repeat`` times with
:func:`~trioraft.testing.check_linearizability` and the fastest wall time kept. With
``--go-bench FILE``, the output of Porcupine's own benchmarks (``go test -bench 'Kv[0-9]|Etcd'``
in its directory, run on the same machine just before or after; with ``-count``, the
fastest of each is kept) is read and each time is set beside ours, with their ratio.

What each time includes. Porcupine's benchmark (``benchJepsen``, ``benchKv`` in
``porcupine_test.go``) parses the log before ``b.ResetTimer()``, then times
``CheckEvents(model, events)``: from the parsed events (in the log's order), its
partitioning, the making of its entries and linked list, the search (one goroutine a
part, on every core), and the verdict (a ``bool``; nothing is described), averaged
over ``b.N`` runs, Go's garbage collection included. Ours
likewise leaves out the reading of the log (:func:`parse_jepsen_log`,
:func:`parse_kv_log`, done once by :func:`load_cases`) and times
``check_linearizability(operations, kv_model())`` from the parsed
:class:`~trioraft.testing.Operation` objects: their checks and partitioning, the
model's transitions, the entries and their sort, the search, and the whole
:class:`~trioraft.testing.LinearizabilityResult` (a rejection's longest prefix, the
operations that could not come next and what the model expected of them, and its
reason), Python's garbage collection included; the fastest of ``--repeat`` runs, each a
fresh check (nothing is kept from one check to the next).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..testing import Operation, check_linearizability, kv_model

__all__ = [
    "PorcupineCase",
    "check_case",
    "load_cases",
    "main",
    "parse_go_bench",
    "parse_jepsen_log",
    "parse_kv_log",
]

_KV = re.compile(
    r'\{:process (\d+), :type :(invoke|ok), :f :(get|put|append), :key "(.*)", '
    r':value (nil|"(.*)")\}'
)
_JEPSEN = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail)\s+:(read|write|cas)\s+(.*)$"
)
_KV_NAMES = {
    "c01-ok": "Kv1ClientOk",
    "c01-bad": "Kv1ClientBad",
    "c10-ok": "Kv10ClientsOk",
    "c10-bad": "Kv10ClientsBad",
    "c50-ok": "Kv50ClientsOk",
    "c50-bad": "Kv50ClientsBad",
}


class _Log:
    """Operations read from a log whose events are numbered in order: each call and
    return at its event's position (as ``call``/``ret`` and ``call_seq``/``ret_seq``)."""

    def __init__(self) -> None:
        self.events = 0
        self.calls: dict[int, tuple[int, int, str, Any]] = {}  # process -> its call
        self.ops: dict[int, Operation] = {}

    def call(self, process: int, kind: str, input: Any) -> None:
        if process in self.calls:
            raise ValueError(f"process {process} calls again before its call returned")
        self.calls[process] = (len(self.calls) + len(self.ops), self.events, kind, input)
        self.events += 1

    def value(self, process: int) -> Any:
        """The value the pending call of ``process`` writes."""
        return self.calls[process][3][2]

    def ret(self, process: int, output: Any, *, unknown: bool = False) -> None:
        if process not in self.calls:
            raise ValueError(f"process {process} returns without a call")
        i, at, kind, input = self.calls.pop(process)
        if unknown:
            self.ops[i] = Operation(i, process, kind, input, None, at, None, call_seq=at)
        else:
            end = self.events
            self.ops[i] = Operation(
                i, process, kind, input, output, at, end, call_seq=at, ret_seq=end
            )
        self.events += 1

    def operations(self, *, pending_reads_return: bool = False) -> list[Operation]:
        """The operations; those still pending return at the end of the log with an
        output nothing is compared with (of unknown outcome here), except reads when
        ``pending_reads_return``: they return ``None`` at the end."""
        for process, (_, _, kind, _) in list(self.calls.items()):
            read = kind == "read"
            self.ret(process, None, unknown=not (read and pending_reads_return))
        return [self.ops[i] for i in sorted(self.ops)]


def parse_kv_log(text: str) -> list[Operation]:
    """The operations of one of Porcupine's kv histories (``test_data/kv/*.txt``), for
    :func:`~trioraft.testing.kv_model`: inputs ``("get", key)``, ``("put", key,
    value)`` and ``("append", key, value)``; a get's output is its value (``None`` for
    Porcupine's ``""``), a put's and an append's their own value. Lines of any other
    form are skipped, as Porcupine's parser does. As in Porcupine's tests, a get that
    never returns returns ``""`` at the end, and a put or an append that never returns
    may take effect at any point after its call (at the end: or never)."""
    log = _Log()
    for line in text.splitlines():
        match = _KV.search(line)
        if match is None:
            continue
        process, event, verb, key, value = int(match[1]), match[2], match[3], match[4], match[6]
        if event == "invoke":
            input = ("get", key) if verb == "get" else (verb, key, value)
            log.call(process, "read" if verb == "get" else "write", input)
        elif verb == "get":
            log.ret(process, value or None)
        else:
            log.ret(process, log.value(process))
    return log.operations(pending_reads_return=True)


def parse_jepsen_log(text: str) -> list[Operation]:
    """The operations of one of Porcupine's Jepsen etcd logs (``test_data/jepsen/``),
    for :func:`~trioraft.testing.kv_model` on key ``"x"``: ``read`` is ``("get", "x")``
    (its value, ``None`` for ``nil``), ``write`` is ``("put", "x", value)`` and ``cas``
    is ``("cas", "x", old, new)`` (``True`` when ``:ok``, ``False`` when ``:fail``). A
    read that timed out, and any operation that never returns (``:info``: the process
    crashed), is of unknown outcome."""
    log = _Log()
    for line in text.splitlines():
        match = _JEPSEN.match(line.rstrip())
        if match is None:
            continue
        process, event, verb, argument = int(match[1]), match[2], match[3], match[4].strip()
        if event == "invoke":
            log.call(process, verb, _jepsen_input(verb, argument))
        elif process not in log.calls:
            continue
        elif verb == "read":
            if event == "fail":
                log.ret(process, None, unknown=True)  # :fail :read :timed-out
            else:
                log.ret(process, None if argument == "nil" else int(argument))
        elif verb == "write" and event == "ok":
            log.ret(process, log.value(process))
        elif verb == "cas":
            log.ret(process, event == "ok")
    return log.operations()


def _jepsen_input(verb: str, argument: str) -> tuple[Any, ...]:
    if verb == "read":
        return ("get", "x")
    if verb == "write":
        return ("put", "x", int(argument))
    old, new = argument.strip("[]").split()
    return ("cas", "x", int(old), int(new))


@attrs.frozen
class PorcupineCase:
    """One of Porcupine's histories: its benchmark's name in Porcupine
    (``EtcdJepsen000``, ``Kv50ClientsBad``...), its operations, and the verdict
    Porcupine's tests expect (``None`` when not known)."""

    name: str
    ops: list[Operation]
    expected: bool | None


def load_cases(porcupine: Path) -> list[PorcupineCase]:
    """The histories of Porcupine's ``test_data`` under the checkout ``porcupine``:
    the etcd logs Porcupine tests, then the kv histories."""
    data = porcupine / "test_data"
    if not data.is_dir():
        raise FileNotFoundError(f"{porcupine} has no test_data directory: is it Porcupine's?")
    tests = porcupine / "porcupine_test.go"
    source = tests.read_text() if tests.is_file() else ""
    expected = {
        int(n): verdict == "true"
        for n, verdict in re.findall(r"checkJepsen\(t, (\d+), (true|false)\)", source)
    }
    cases = []
    for path in sorted((data / "jepsen").glob("etcd_*.log")):
        n = int(path.stem.split("_")[1])
        if source and n not in expected:
            continue  # a log Porcupine's tests leave out
        ops = parse_jepsen_log(path.read_text())
        cases.append(PorcupineCase(f"EtcdJepsen{n:03d}", ops, expected.get(n)))
    for stem, name in _KV_NAMES.items():
        path = data / "kv" / f"{stem}.txt"
        if path.is_file():
            cases.append(PorcupineCase(name, parse_kv_log(path.read_text()), stem.endswith("-ok")))
    return cases


def check_case(case: PorcupineCase, repeat: int = 3) -> tuple[bool | None, float]:
    """Check a history ``repeat`` times: the verdict and the fastest wall time (s)."""
    model = kv_model()
    best = float("inf")
    verdict: bool | None = None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        verdict = check_linearizability(case.ops, model).ok
        best = min(best, time.perf_counter() - started)
    return verdict, best


def parse_go_bench(text: str) -> dict[str, float]:
    """The fastest time (s) of each benchmark in ``go test -bench`` output, by name
    without ``Benchmark`` and the ``-N`` suffix."""
    times: dict[str, float] = {}
    for match in re.finditer(r"^Benchmark(\w+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op", text, re.M):
        seconds = float(match[2]) / 1e9
        times[match[1]] = min(seconds, times.get(match[1], seconds))
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns 1 if a verdict differs from the one expected."""
    parser = argparse.ArgumentParser(prog="python -m trioraft.bench.porcupine")
    parser.add_argument("porcupine", type=Path, help="a checkout of Porcupine's repository")
    parser.add_argument("--go-bench", type=Path, help="the output of Porcupine's go test -bench")
    parser.add_argument("--repeat", type=int, default=3, help="checks of each history")
    args = parser.parse_args(argv)
    go = parse_go_bench(args.go_bench.read_text()) if args.go_bench else {}
    wrong = 0
    print(
        f"{'history':16} {'ops':>5} {'expected':>8} {'ours':>5} {'ours ms':>9} "
        f"{'go ms':>9} {'ratio':>6}"
    )
    for case in load_cases(args.porcupine):
        verdict, seconds = check_case(case, args.repeat)
        wrong += case.expected is not None and verdict is not case.expected
        theirs = go.get(case.name)
        ratio = f"{seconds / theirs:6.2f}" if theirs else "     -"
        go_ms = f"{theirs * 1e3:9.3f}" if theirs else "        -"
        print(
            f"{case.name:16} {len(case.ops):5} {case.expected!s:>8} {verdict!s:>5} "
            f"{seconds * 1e3:9.3f} {go_ms} {ratio}"
            + ("  WRONG" if case.expected is not None and verdict is not case.expected else "")
        )
    print(f"{wrong} verdicts differ from Porcupine's expected ones")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
