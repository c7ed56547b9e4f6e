"""Structured traces of a cluster run: role and term changes, commits, applies, messages
sent, delivered and dropped, crashes, restarts and network faults, as JSON lines.

A :class:`TraceRecorder` collects the events of one run. Message events are by far the
most numerous, so recording one is a tuple append; events become dictionaries (and JSON
lines) only when they are read, written or printed.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

import trio

from .._core.messages import (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    Message,
    RequestVote,
    VoteResponse,
)
from .._server import TraceEvent

__all__ = [
    "TraceRecorder",
    "dump_trace",
    "format_event",
    "load_trace",
    "parse_trace",
    "print_tail_on_failure",
]

#: Event kinds reported by servers and by :class:`~trioraft.testing.Cluster`.
SERVER_KINDS = ("role", "commit", "propose", "apply", "crash", "restart", "clock")
#: Event kinds of messages (``src`` and ``dst`` instead of ``server``).
MESSAGE_KINDS = ("send", "deliver", "drop")

# The network's observer events, and the trace kinds they become.
_MESSAGE_KIND = {"sent": "send", "delivered": "deliver", "dropped": "drop"}
_SERVER = "S"  # record tag of a server event
_FAULT = "F"  # record tag of a network fault
_RESERVED = frozenset({"t", "kind", "server"})
_SKIP_TAIL = (trio.Cancelled, KeyboardInterrupt, SystemExit, GeneratorExit)

# A record is (time, tag, payload): tag is _SERVER (payload a TraceEvent), _FAULT (payload
# (kind, details)) or the network's own event name (payload the Message).
_Record = tuple[float, str, Any]
PathLike = str | os.PathLike[str]


def _jsonable(value: Any) -> Any:
    """``value`` made of JSON types only (enums by value, sets sorted, the rest by repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _append_entries(m: Any, out: dict[str, Any]) -> None:
    out["prev"] = m.prev_log_index
    out["prev_term"] = m.prev_log_term
    out["entries"] = len(m.entries)
    out["commit"] = m.leader_commit


def _append_response(m: Any, out: dict[str, Any]) -> None:
    out["success"] = m.success
    if m.success:
        out["match"] = m.match_index
    else:
        out["reject"] = m.reject_index
        out["conflict"] = m.conflict_index


def _request_vote(m: Any, out: dict[str, Any]) -> None:
    out["pre_vote"] = m.pre_vote
    out["last_index"] = m.last_log_index
    out["last_term"] = m.last_log_term
    if m.force:
        out["force"] = True


def _vote_response(m: Any, out: dict[str, Any]) -> None:
    out["granted"] = m.granted
    out["pre_vote"] = m.pre_vote


def _heartbeat(m: Any, out: dict[str, Any]) -> None:
    out["commit"] = m.commit


_SUMMARIES: dict[type[Any], Callable[[Any, dict[str, Any]], None]] = {
    AppendEntries: _append_entries,
    AppendResponse: _append_response,
    RequestVote: _request_vote,
    VoteResponse: _vote_response,
    Heartbeat: _heartbeat,
}


def _message_dict(t: float, kind: str, message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "t": t,
        "kind": kind,
        "src": message.src,
        "dst": message.dst,
        "type": type(message).__name__,
        "term": message.term,
    }
    summary = _SUMMARIES.get(type(message))
    if summary is not None:
        summary(message, out)
    return out


def _server_dict(event: TraceEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(event.time, 6), "kind": event.kind, "server": event.server}
    for key, value in event.data.items():
        if key == "kind":
            key = "entry"  # an apply's entry kind: "command", "noop" or "config"
        elif key in _RESERVED:
            key = f"data_{key}"
        out[key] = _jsonable(value)
    return out


def _record_dict(record: _Record) -> dict[str, Any]:
    t, tag, payload = record
    if tag == _SERVER:
        return _server_dict(payload)
    if tag == _FAULT:
        kind, details = payload
        return {"t": round(t, 6), "kind": "fault", "fault": kind, "details": details}
    return _message_dict(round(t, 6), _MESSAGE_KIND.get(tag, tag), payload)


def _dumps(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def format_event(event: Mapping[str, Any]) -> str:
    """One trace event (a dictionary, as in :attr:`TraceRecorder.events` or
    :func:`load_trace`) as one human-readable line.

    For example ``'    1.234500  s1        role     leader term=3 leader=s1'`` or
    ``'    1.250000  s1->s2    send     AppendEntries term=3 prev=4 ...'``.
    """
    kind = str(event.get("kind", "?"))
    t = event.get("t", 0.0)
    if "src" in event:
        who = f"{event['src']}->{event.get('dst')}"
    elif "server" in event:
        who = str(event["server"])
    else:
        who = "network" if kind == "fault" else "-"
    parts: list[str] = []
    if kind == "role":
        parts.append(str(event.get("role")))
    elif kind in MESSAGE_KINDS:
        parts.append(str(event.get("type")))
    elif kind == "fault":
        parts.append(str(event.get("fault")))
        details = event.get("details") or {}
        if isinstance(details, Mapping):
            parts.extend(f"{k}={_value(v)}" for k, v in details.items())
    skip = {"t", "kind", "src", "dst", "server", "role", "type", "fault", "details"}
    parts.extend(f"{k}={_value(v)}" for k, v in event.items() if k not in skip)
    time = f"{t:12.6f}" if isinstance(t, (int, float)) else f"{t!s:>12}"
    return f"{time}  {who:<9} {kind:<8} {' '.join(parts)}".rstrip()


class TraceRecorder:
    """Collects every event of a cluster run, as JSON-able dictionaries.

    Attach it to a :class:`~trioraft.testing.Cluster` with :meth:`attach`, or feed it
    piecewise: :meth:`on_server_event` is a server ``tracer``, :meth:`on_message` a
    :meth:`MemoryNetwork.add_observer <trioraft.MemoryNetwork.add_observer>` observer
    and :meth:`on_fault` a fault observer.

    Each event is a dictionary with ``t`` (the Trio clock, a float: virtual seconds
    under :func:`~trioraft.testing.run`) and ``kind``:

    * ``"role"`` (``server``, ``role``, ``term``, ``leader``), ``"commit"`` (``server``,
      ``index``), ``"propose"`` (``server``, ``index``, ``term``: a leader appended a
      client's write), ``"apply"`` (``server``, ``index``, ``term``, ``entry``: the
      entry's kind), ``"crash"`` and ``"restart"`` (``server``), ``"clock"`` (``server``,
      and ``rate`` or ``jump``: :meth:`Cluster.set_clock_rate
      <trioraft.testing.Cluster.set_clock_rate>`, :meth:`~trioraft.testing.Cluster.jump_clock`),
      ``"outcome"`` (``server``, the leader it was asked of; ``call``, the fault's kind;
      ``what``; ``outcome``: what a membership change or transfer of a fault schedule
      came to, :meth:`Cluster.record_outcome
      <trioraft.testing.Cluster.record_outcome>`).
      The role events :meth:`attach` makes of the servers' state at that moment also
      carry ``"initial": true``.
    * ``"send"``, ``"deliver"``, ``"drop"``: a message, with ``src``, ``dst``, ``type``
      (the class name), ``term`` and a summary: for ``AppendEntries`` ``prev``,
      ``prev_term``, ``entries`` (how many) and ``commit``; for ``AppendResponse``
      ``success`` and ``match`` (or ``reject`` and ``conflict``); for ``RequestVote``
      ``pre_vote``, ``last_index``, ``last_term`` (and ``force``); for ``VoteResponse``
      ``granted`` and ``pre_vote``; for ``Heartbeat`` ``commit``.
    * ``"fault"``: ``fault`` (``partition``, ``isolate``, ``heal``, ``loss``, ``delay``,
      ``duplication``) and ``details``, the network's dictionary (``groups``, ``name``,
      ``rate``, ``low`` and ``high``).

    :param path: if given, every event is also written to this file as one JSON line.
        Lines are written in batches; :meth:`close` (or leaving the ``with`` block: the
        recorder is a context manager) writes the rest and closes the file.
    :param keep: how many of the most recent events to keep in memory (for
        :attr:`events`, :meth:`tail`, :meth:`dump`); ``None`` keeps them all. A busy
        cluster records thousands of events a second: for a whole long run, write to
        ``path`` (or pass ``keep=None``).
    :param messages: whether to record message events (they are by far the most
        numerous); :meth:`attach` does not observe messages at all when ``False``.
    """

    #: Events formatted and written to ``path`` at a time.
    batch = 1024

    def __init__(
        self,
        path: PathLike | None = None,
        *,
        keep: int | None = 10_000,
        messages: bool = True,
    ) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
            raise ValueError(f"keep must be an integer >= 0 or None, got {keep!r}")
        self.path = os.fspath(path) if path is not None else None
        self.keep = keep
        self.messages = messages
        #: How many events were recorded in all (including those no longer kept).
        self.count = 0
        self._recent: collections.deque[_Record] = collections.deque(maxlen=keep)
        self._file: IO[str] | None = None
        self._pending: list[_Record] | None = None
        if self.path is not None:
            self._file = open(self.path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            self._pending = []
        self._detachers: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        target = f" path={self.path!r}" if self.path is not None else ""
        return f"<TraceRecorder events={self.count} kept={len(self._recent)}{target}>"

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ recording
    def _add(self, record: _Record) -> None:
        self._recent.append(record)
        self.count += 1
        pending = self._pending
        if pending is not None:
            pending.append(record)
            if len(pending) >= self.batch:
                self._write_pending()

    def on_server_event(self, event: TraceEvent) -> None:
        """Record a server's :class:`~trioraft.TraceEvent` (give this as a ``tracer``)."""
        self._add((event.time, _SERVER, event))

    def on_message(self, event: str, message: Message) -> None:
        """Record a message event of the network (``"sent"``, ``"delivered"`` or
        ``"dropped"``; they become kinds ``send``, ``deliver`` and ``drop``). Does
        nothing when the recorder was made with ``messages=False``."""
        if self.messages:
            self._add((trio.current_time(), event, message))

    def on_fault(self, kind: str, details: Mapping[str, Any]) -> None:
        """Record a network fault (a fault observer); the time is ``trio.current_time()``."""
        self._add((trio.current_time(), _FAULT, (kind, _jsonable(details))))

    def attach(self, cluster: Any) -> None:
        """Record everything ``cluster`` (a :class:`~trioraft.testing.Cluster`) does from
        now on: its servers' events (:meth:`Cluster.add_tracer
        <trioraft.testing.Cluster.add_tracer>`), its network's messages and faults.

        The role, term and leader each running server has now are recorded first, as
        ``"role"`` events marked ``"initial": true``, so a trace started after the
        cluster begins still tells every server's state. Call from inside ``trio.run``.
        """
        active = [True]

        def tracer(event: TraceEvent) -> None:
            if active[0]:
                self._add((event.time, _SERVER, event))

        def stop_tracer() -> None:
            active[0] = False
            with contextlib.suppress(ValueError):
                cluster.remove_tracer(tracer)

        now = trio.current_time()
        for name in sorted(cluster.servers):
            status = cluster.servers[name].status()
            self.on_server_event(
                TraceEvent(
                    now,
                    name,
                    "role",
                    {
                        "role": status.role,
                        "term": status.term,
                        "leader": status.leader,
                        "initial": True,
                    },
                )
            )
        cluster.add_tracer(tracer)
        self._detachers.append(stop_tracer)
        network = cluster.network
        network.add_fault_observer(self.on_fault)
        self._detachers.append(lambda: network.remove_fault_observer(self.on_fault))
        if self.messages:
            network.add_observer(self.on_message)
            self._detachers.append(lambda: network.remove_observer(self.on_message))

    def detach(self) -> None:
        """Stop recording from every cluster :meth:`attach` attached to."""
        detachers, self._detachers = self._detachers, []
        for detach in reversed(detachers):
            with contextlib.suppress(ValueError):
                detach()

    # -------------------------------------------------------------- output
    def _write_pending(self) -> None:
        pending, file = self._pending, self._file
        if pending is None or file is None:
            return
        if pending:
            file.write("".join(_dumps(_record_dict(r)) + "\n" for r in pending))
            pending.clear()

    def flush(self) -> None:
        """Write the events not written yet to ``path`` and flush the file."""
        self._write_pending()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Detach, write what is left to ``path`` and close it. Events recorded later are
        still kept in memory but no longer written. Calling it again does nothing."""
        self.detach()
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
            self._pending = None

    @property
    def events(self) -> list[dict[str, Any]]:
        """The kept events (the ``keep`` most recent), oldest first, as dictionaries."""
        return [_record_dict(r) for r in self._recent]

    def tail(self, n: int = 50) -> list[str]:
        """The last ``n`` kept events as human-readable lines (see :func:`format_event`)."""
        if n <= 0:
            return []
        start = max(0, len(self._recent) - n)
        return [format_event(_record_dict(r)) for r in itertools.islice(self._recent, start, None)]

    def print_tail(self, n: int = 50, *, file: IO[str] | None = None) -> None:
        """Print :meth:`tail` with a header to ``file`` (default: ``sys.stderr``)."""
        out = file if file is not None else sys.stderr
        lines = self.tail(n)
        print(f"----- trioraft trace: last {len(lines)} of {self.count} events -----", file=out)
        for line in lines:
            print(line, file=out)
        print("----- end of trace -----", file=out, flush=True)

    def dump(self, path: PathLike) -> None:
        """Write the kept events to ``path`` as JSON lines (one object per line)."""
        with open(path, "w", encoding="utf-8", newline="\n") as file:
            for record in self._recent:
                file.write(_dumps(_record_dict(record)) + "\n")


def dump_trace(events: Iterable[Mapping[str, Any]], path: PathLike) -> None:
    """Write trace events (dictionaries) to ``path`` as JSON lines."""
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        for event in events:
            file.write(_dumps(event) + "\n")


def load_trace(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSON lines trace (as :class:`TraceRecorder` writes) into a list of
    dictionaries, in file order. Blank lines are skipped; a line that is not a JSON
    object with ``t`` and ``kind`` raises :class:`ValueError` naming the line."""
    with open(path, encoding="utf-8") as file:
        return parse_trace(file, os.fspath(path))


def parse_trace(lines: Iterable[str], source: str = "<trace>") -> list[dict[str, Any]]:
    """Like :func:`load_trace`, from lines of text; ``source`` names them in errors."""
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}:{number}: not JSON: {exc}") from None
        if not isinstance(event, dict) or "t" not in event or "kind" not in event:
            raise ValueError(
                f"{source}:{number}: not a trace event (a JSON object with 't' and "
                f"'kind'): {line[:80]}"
            )
        events.append(event)
    return events


@contextlib.contextmanager
def print_tail_on_failure(
    recorder: TraceRecorder, n: int = 50, *, file: IO[str] | None = None
) -> Iterator[TraceRecorder]:
    """Print the recorder's last ``n`` events to ``file`` (default: ``sys.stderr``) if
    the ``with`` block raises, then let the exception go on. Cancellation,
    ``KeyboardInterrupt`` and ``SystemExit`` print nothing. Works in async code too::

        async with open_cluster(Counter, 3, seed=1) as cluster:
            recorder.attach(cluster)
            with print_tail_on_failure(recorder, 30):
                ...  # a failure here shows what the cluster did just before
    """
    try:
        yield recorder
    except BaseException as exc:
        if not isinstance(exc, _SKIP_TAIL):
            recorder.print_tail(n, file=file)
        raise
