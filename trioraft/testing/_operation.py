"""One client operation of a history (:class:`Operation`): what the caller called,
when, and what it got back. :class:`~trioraft.testing.History` records them; the checker
(:func:`~trioraft.testing.check_linearizability`) reads them."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs

__all__ = ["Operation"]

_STATUSES = ("ok", "unknown")


# --------------------------------------------------------------------------- operations
def _default_status(self: Operation) -> str:
    return "ok" if self.ret is not None else "unknown"


@attrs.frozen
class Operation:
    """One client operation of a history: its call, and its return if it is known.

    ``id`` numbers operations in the order they were invoked (the ids of operations that
    failed, and were dropped, are missing). ``client`` is whatever identifies the caller
    (a name, a number). ``kind`` and ``input`` are handed to the :class:`Model`, which
    decides what they mean; ``output`` is what the caller received.

    ``call`` is the time of the invocation and ``ret`` the time of the return. An
    operation with ``ret=None`` has status ``"unknown"``: the caller does not know whether
    it took effect (its ``output`` is ``None``); it may have taken effect at any point
    after ``call``, or never. ``status`` is ``"ok"`` or ``"unknown"`` and defaults from
    ``ret``.

    ``call_seq`` and ``ret_seq`` are the positions of the call and of the return among
    all the events a :class:`History` recorded. When two events have the same time (Trio's
    virtual clock often stands still while many things happen), the one recorded first
    happened first. Without them (operations made by hand), an equal call and return
    time counts as overlapping, which is the lenient reading.
    """

    id: int
    client: Hashable
    kind: str
    input: Any
    output: Any
    call: float
    ret: float | None
    status: str = attrs.field(default=attrs.Factory(_default_status, takes_self=True))
    call_seq: int | None = attrs.field(default=None, kw_only=True)
    ret_seq: int | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be 'ok' or 'unknown', got {self.status!r}")
        if (self.status == "unknown") != (self.ret is None):
            raise ValueError(
                f"operation {self.id}: status {self.status!r} needs ret "
                + ("None" if self.status == "unknown" else "to be a time")
            )
        if self.status == "unknown" and self.output is not None:
            raise ValueError(f"operation {self.id}: an unknown outcome has output None")
        if self.ret is not None and self.ret < self.call:
            raise ValueError(
                f"operation {self.id} returns ({self.ret}) before it is called ({self.call})"
            )
        if self.call_seq is not None and self.ret_seq is not None and self.ret_seq <= self.call_seq:
            raise ValueError(f"operation {self.id}: ret_seq must come after call_seq")

    @property
    def unknown(self) -> bool:
        """Whether the outcome is unknown (``status == "unknown"``)."""
        return self.status == "unknown"

    def describe(self) -> str:
        """One line for people: id, client, ``kind(input) -> output`` and the interval."""
        output = "?" if self.unknown else repr(self.output)
        ret = "never returned (outcome unknown)" if self.ret is None else f"{self.ret:.6f}"
        return (
            f"#{self.id} client {self.client!r}: {self.kind}({self.input!r}) -> {output}"
            f"  [{self.call:.6f}, {ret}]"
        )

    def to_json(self) -> dict[str, Any]:
        """This operation as a dict of JSON-able fields (if ``input``/``output`` are)."""
        return {
            "id": self.id,
            "client": self.client,
            "kind": self.kind,
            "input": self.input,
            "output": self.output,
            "call": self.call,
            "ret": self.ret,
            "status": self.status,
            "call_seq": self.call_seq,
            "ret_seq": self.ret_seq,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        """The inverse of :meth:`to_json` (``status``, ``call_seq`` and ``ret_seq`` may be
        missing). JSON turns tuples into lists; :func:`outputs_match` and the ready models
        treat the two alike."""
        return cls(
            id=int(data["id"]),
            client=data["client"],
            kind=data["kind"],
            input=data.get("input"),
            output=data.get("output"),
            call=float(data["call"]),
            ret=None if data.get("ret") is None else float(data["ret"]),
            status=data.get("status", "ok" if data.get("ret") is not None else "unknown"),
            call_seq=data.get("call_seq"),
            ret_seq=data.get("ret_seq"),
        )
