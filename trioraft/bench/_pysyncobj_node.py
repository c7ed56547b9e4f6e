"""One PySyncObj server in a process of its own, obeying the ``tcp`` section's driver.

Not a public entry point. It speaks the same JSON-lines protocol as ``_tcp_node.py``
(``status``, ``bench``, ``sync``, ``watch``, ``mem``, ``quit``), so the driver measures
both libraries the same way. The driver runs this file by its path, and it imports only
the standard library and :mod:`pysyncobj` (not trioraft, nor trio), so that its peak
RSS is PySyncObj's own.

The server is a ``SyncObj`` holding a counter with one ``@replicated`` method,
``incr()``; ``--no-batch`` sets ``appendEntriesUseBatch=False``, everything else is
PySyncObj's default configuration. PySyncObj runs its own thread (``autoTick``); the
``bench`` command keeps C calls in flight with the callback API (each callback submits
the next), ``sync`` uses ``incr(sync=True)``. Callbacks run on PySyncObj's thread; the
counters they update are only read by the main thread (the GIL makes that safe).

The node exits by itself if its parent dies, if stdin closes, and after ``--lifetime``
seconds whatever happens.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:
    from . import _node_common as common
else:  # run by its path, its directory on sys.path (see _node_common)
    import _node_common as common

#: Seconds one synchronous write may take.
SYNC_TIMEOUT = 5.0


def make_counter(pso: Any, me: str, others: list[str], batch: bool) -> Any:
    """A started PySyncObj server at ``me`` holding a replicated counter."""
    conf = pso.SyncObjConf(appendEntriesUseBatch=batch)

    class Counter(pso.SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(me, others, conf)
            self.value = 0

        @pso.replicated  # type: ignore[untyped-decorator]
        def incr(self) -> int:
            self.value += 1
            return self.value

    return Counter()


class _PySyncObjLoad(common.Load):
    """C calls kept in flight with the callback API, and what they achieved."""

    def __init__(self, obj: Any, success: Any, concurrency: int) -> None:
        super().__init__("write")
        self.obj = obj
        self.success = success
        self.in_flight = concurrency
        self.drained = threading.Event()

    def submit(self) -> None:
        started = time.perf_counter()
        self.obj.incr(callback=lambda result, error: self.done(started, error))

    def done(self, started: float, error: Any) -> None:
        # On PySyncObj's thread.
        if error == self.success:
            self.succeeded(started)
        else:
            self.failed(str(error))
        if self.stop:
            self.in_flight -= 1
            if self.in_flight <= 0:
                self.drained.set()
        else:
            self.submit()


def run_load(
    obj: Any, success: Any, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The ``bench`` command: ``concurrency`` calls in flight on this server."""
    load = _PySyncObjLoad(obj, success, concurrency)
    before = obj.value
    for _ in range(concurrency):
        load.submit()
    time.sleep(warmup)
    for pause in load.window(seconds):
        time.sleep(pause)
    load.stop = True
    drained = load.drained.wait(common.DRAIN_TIMEOUT)
    return load.report(concurrency, drained=drained, counter_delta=obj.value - before)


def sync_writes(obj: Any, n: int, max_seconds: float) -> dict[str, Any]:
    """The ``sync`` command: ``n`` writes one at a time, each timed."""
    latencies: list[float] = []
    load = common.Load("write")
    perf = time.perf_counter
    deadline = perf() + max_seconds
    while len(latencies) < n and perf() < deadline:
        started = perf()
        try:
            obj.incr(sync=True, timeout=SYNC_TIMEOUT)
        except Exception as exc:
            load.failed(type(exc).__name__)
            continue
        latencies.append((perf() - started) * 1e3)
    return {"latencies_ms": latencies, "errors": load.errors}


class _PySyncObjNode(common.Node):
    """This process's server and the leader watch."""

    def __init__(self, obj: Any, success: Any) -> None:
        super().__init__()
        self.obj = obj
        self.success = success
        self._watch_stop = threading.Event()

    def leader(self) -> str | None:
        leader = self.obj._getLeader()
        return None if leader is None else str(leader)

    def op_status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for _ in range(10):  # getStatus iterates dicts PySyncObj's thread may change
            try:
                st = self.obj.getStatus()
                break
            except RuntimeError:
                time.sleep(0.001)
        else:
            return {"error": "getStatus kept failing"}
        links = [v for k, v in st.items() if k.startswith("partner_node_status_server_")]
        return {
            "name": str(st["self"]),
            "role": {0: "follower", 1: "candidate", 2: "leader"}.get(st["state"], st["state"]),
            "is_leader": bool(self.obj._isLeader()),
            "term": st["raft_term"],
            "leader": self.leader(),
            "ready": bool(self.obj.isReady()),
            "commit_index": st["commit_idx"],
            "applied": st["last_applied"],
            "value": self.obj.value,
            "connections": sum(1 for v in links if v == 2),
            "mesh": all(v == 2 for v in links),
            "watch": None if self.watch is None else self.watch.record,
        }

    def op_bench(self, cmd: dict[str, Any]) -> dict[str, Any]:
        c, seconds, warmup = int(cmd["concurrency"]), float(cmd["seconds"]), cmd["warmup"]
        return run_load(self.obj, self.success, c, seconds, float(warmup))

    def op_sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return sync_writes(self.obj, int(cmd["n"]), float(cmd["max_seconds"]))

    def op_watch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self._watch_stop.set()
        self._watch_stop = threading.Event()
        args = (self._watch_stop, self.watch_leader(cmd.get("old"), self.leader()))
        threading.Thread(target=self._watch_leader, args=args, daemon=True).start()
        return {"armed": True}

    def _watch_leader(self, stop: threading.Event, watch: common.LeaderWatch) -> None:
        while not stop.wait(common.WATCH_PERIOD):
            watch.see(self.leader())


def main(argv: Sequence[str] | None = None) -> None:
    """Run the node (see the module's documentation)."""
    parser = common.parser("a PySyncObj node of the tcp benchmark", peer="HOST:PORT")
    parser.add_argument("--no-batch", action="store_true", help="appendEntriesUseBatch=False")
    args = parser.parse_args(argv)
    common.guard_orphan(args.lifetime)
    pso = importlib.import_module("pysyncobj")
    obj = make_counter(pso, args.listen, list(args.peer), batch=not args.no_batch)
    node = _PySyncObjNode(obj, pso.FAIL_REASON.SUCCESS)
    common.reply({"hello": args.listen, "pid": os.getpid(), "listen": args.listen})
    for line in sys.stdin:
        answer = node.handle(line)
        if answer is common.QUIT:
            break
        if answer is not None:
            common.reply(answer)
    obj.destroy()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
