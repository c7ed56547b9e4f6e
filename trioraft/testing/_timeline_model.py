"""The timeline's reading of a trace: each server's lane (its roles, terms and leaders
over time, crashes, commits, messages), and the network's faults over time. No drawing:
:mod:`trioraft.testing.timeline` draws what this reads."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._trace import MESSAGE_KINDS

__all__: list[str] = []

_UNKNOWN = "unknown"
_CRASHED = "crashed"
_FAULT_COLOURS = {
    "partition": "#8e44ad",
    "isolate": "#c0392b",
    "heal": "#2471a3",
    "loss": "#d35400",
    "delay": "#6e2c00",
}
_GROUP_TINTS = ("#8e44ad", "#16a085", "#2471a3", "#b9770e", "#7b7d7d")

#: The message types of the client protocol (a lane with these alone is a client's).
_CLIENT_TYPES = frozenset({"ClientRequest", "ClientResponse"})


def _natural_key(name: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.4g} ms"
    return f"{seconds:.4g} s"


def _fault_label(fault: str, details: Mapping[str, Any]) -> str:
    if fault == "partition":
        groups = details.get("groups") or []
        return "partition " + " | ".join(",".join(map(str, g)) for g in groups)
    if fault == "isolate":
        return f"isolate {details.get('name')}"
    if fault == "heal":
        return "heal"
    if fault == "loss":
        rate = float(details.get("rate") or 0)
        return f"loss {rate:.0%}" if rate else "loss off"
    if fault == "delay":
        low, high = float(details.get("low") or 0), float(details.get("high") or 0)
        if not high:
            return "delay off"
        return f"delay {_duration(low)}-{_duration(high)}"
    extra = " ".join(f"{k}={v}" for k, v in details.items())
    return f"{fault} {extra}".strip()


class _Lane:
    """What one server did, as spans and points in time."""

    def __init__(self, name: str, start: float) -> None:
        self.name = name
        # (start, end, state, term, leader); state is a role value, _UNKNOWN or _CRASHED.
        self.spans: list[tuple[float, float, str, int | None, str | None]] = []
        self._open: tuple[float, str, int | None, str | None] = (start, _UNKNOWN, None, None)
        self.terms: list[tuple[float, int]] = []
        self.commits: list[tuple[float, int]] = []
        self.sent: list[float] = []
        self.dropped: list[float] = []
        self.received = 0
        self.applies = 0
        self.crashed = False
        self.term: int | None = None
        self.last_commit: int | None = None
        #: It reported a server's events (a role, a commit...), not only messages.
        self.server = False
        #: The types of the messages it sent or received.
        self.types: set[str] = set()

    @property
    def client(self) -> bool:
        """A client's lane: messages of the client protocol alone, no server's events."""
        return not self.server and bool(self.types) and self.types <= _CLIENT_TYPES

    def switch(self, t: float, state: str, term: int | None, leader: str | None) -> None:
        start, old, old_term, old_leader = self._open
        if (state, term, leader) == (old, old_term, old_leader):
            return
        if t > start:
            self.spans.append((start, t, old, old_term, old_leader))
        self._open = (t, state, term, leader)

    def finish(self, t: float) -> None:
        start, state, term, leader = self._open
        if t > start or not self.spans:
            self.spans.append((start, max(t, start), state, term, leader))


class _Model:
    """A trace digested for drawing."""

    def __init__(self, events: Sequence[Mapping[str, Any]]) -> None:
        times = [float(e["t"]) for e in events if isinstance(e.get("t"), (int, float))]
        self.t_min = min(times, default=0.0)
        self.t_max = max(times, default=0.0)
        self.lanes: dict[str, _Lane] = {}
        self.faults: list[tuple[float, str, str, Mapping[str, Any]]] = []
        # Bands: (start, end, lane names, colour, tooltip).
        self.bands: list[tuple[float, float, tuple[str, ...], str, str]] = []
        self.loss: list[tuple[float, float, float]] = []
        self.delay: list[tuple[float, float, float, float]] = []
        self.leaders: dict[int, tuple[str, float]] = {}
        self.counts: dict[str, int] = {}
        self.by_type: dict[str, dict[str, int]] = {}
        self.crashes = 0
        self._build(events)

    def lane(self, name: Any) -> _Lane:
        name = str(name)
        lane = self.lanes.get(name)
        if lane is None:
            lane = self.lanes[name] = _Lane(name, self.t_min)
        return lane

    def _build(self, events: Sequence[Mapping[str, Any]]) -> None:
        faults = _FaultState(self)
        for event in sorted(events, key=lambda e: float(e.get("t", 0.0))):
            t = float(event.get("t", 0.0))
            kind = str(event.get("kind"))
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind in MESSAGE_KINDS:
                self._message(t, kind, event)
            elif kind == "fault":
                fault = str(event.get("fault"))
                details = event.get("details")
                if not isinstance(details, Mapping):
                    details = {}
                self.faults.append((t, fault, _fault_label(fault, details), details))
                faults.apply(t, fault, details)
            elif "server" in event:
                self._server(t, kind, event)
        faults.close(self.t_max)
        for lane in self.lanes.values():
            lane.finish(self.t_max)

    def _close_isolations(self, isolated: dict[str, float], end: float) -> None:
        for name, since in isolated.items():
            self.bands.append((since, end, (name,), _FAULT_COLOURS["isolate"], f"{name} isolated"))
        isolated.clear()

    def _partition_band(self, partition: tuple[float, list[list[str]]], end: float) -> None:
        start, groups = partition
        placed: set[str] = set()
        label = " | ".join(",".join(g) for g in groups)
        for i, group in enumerate(groups):
            colour = _GROUP_TINTS[i % len(_GROUP_TINTS)]
            tip = f"partition group {i + 1} of {len(groups)}: {','.join(group)}  ({label})"
            self.bands.append((start, end, tuple(group), colour, tip))
            placed.update(group)
        alone = tuple(n for n in self.lanes if n not in placed)
        if alone:
            tip = f"in no partition group: cut off  ({label})"
            self.bands.append((start, end, alone, _FAULT_COLOURS["isolate"], tip))

    def _message(self, t: float, kind: str, event: Mapping[str, Any]) -> None:
        src = self.lane(event.get("src"))
        dst = self.lane(event.get("dst"))
        src.types.add(str(event.get("type")))
        dst.types.add(str(event.get("type")))
        if kind == "send":
            src.sent.append(t)
        elif kind == "drop":
            src.dropped.append(t)
        else:
            self.lanes[str(event.get("dst"))].received += 1
        counts = self.by_type.setdefault(str(event.get("type")), {})
        counts[kind] = counts.get(kind, 0) + 1

    def _server(self, t: float, kind: str, event: Mapping[str, Any]) -> None:
        lane = self.lane(event["server"])
        lane.server = True
        if kind == "role":
            if lane.crashed:
                return
            role = str(event.get("role"))
            term = event.get("term")
            term = term if isinstance(term, int) else None
            leader = event.get("leader")
            leader = str(leader) if leader is not None else None
            if term is not None and term != lane.term:
                lane.terms.append((t, term))
                lane.term = term
            lane.switch(t, role, term, leader)
            if role == "leader" and term is not None:
                self.leaders.setdefault(term, (lane.name, t))
        elif kind == "crash":
            lane.crashed = True
            self.crashes += 1
            lane.switch(t, _CRASHED, lane.term, None)
        elif kind == "restart":
            lane.crashed = False
            lane.switch(t, _UNKNOWN, lane.term, None)
        elif kind == "commit":
            index = event.get("index")
            if isinstance(index, int):
                lane.commits.append((t, index))
                lane.last_commit = index
        elif kind == "apply":
            lane.applies += 1


class _FaultState:
    """The network's faults in force while a trace is read, turned into bands."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.partition: tuple[float, list[list[str]]] | None = None
        self.isolated: dict[str, float] = {}
        self.loss: tuple[float, float] | None = None
        self.delay: tuple[float, float, float] | None = None

    def apply(self, t: float, fault: str, details: Mapping[str, Any]) -> None:
        model = self.model
        if fault in ("partition", "heal"):
            if self.partition is not None:
                model._partition_band(self.partition, t)
                self.partition = None
            model._close_isolations(self.isolated, t)  # a partition sets the whole shape
        if fault == "partition":
            groups = [[str(n) for n in g] for g in details.get("groups") or []]
            for name in (n for g in groups for n in g):
                model.lane(name)
            self.partition = (t, groups)
        elif fault == "isolate":
            name = str(details.get("name"))
            model.lane(name)
            self.isolated.setdefault(name, t)
        elif fault == "loss":
            if self.loss is not None:
                model.loss.append((self.loss[0], t, self.loss[1]))
            rate = float(details.get("rate") or 0)
            self.loss = (t, rate) if rate else None
        elif fault == "delay":
            if self.delay is not None:
                model.delay.append((self.delay[0], t, self.delay[1], self.delay[2]))
            low, high = float(details.get("low") or 0), float(details.get("high") or 0)
            self.delay = (t, low, high) if high else None

    def close(self, end: float) -> None:
        model = self.model
        if self.partition is not None:
            model._partition_band(self.partition, end)
        model._close_isolations(self.isolated, end)
        if self.loss is not None:
            model.loss.append((self.loss[0], end, self.loss[1]))
        if self.delay is not None:
            model.delay.append((self.delay[0], end, self.delay[1], self.delay[2]))
