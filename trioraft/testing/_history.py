"""Histories of client operations: what each client called, when, and what it got back.

Record them with a :class:`History` (the call and the return of every operation, in
Trio's virtual time by default) and check them with
:func:`~trioraft.testing.check_linearizability`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._errors import NotLeader, OutcomeUnknown, ServerStopped

if TYPE_CHECKING:
    from ._checker import LinearizabilityResult
    from ._models import Model

__all__ = ["History", "Operation", "PendingOperation"]

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


@attrs.define(eq=False, repr=False)
class PendingOperation:
    """An operation that was invoked and has not returned yet (from
    :meth:`History.invoke`).

    Finish it exactly once: :meth:`ok` with what the caller received, :meth:`unknown`
    when the caller cannot know whether it took effect, or :meth:`fail` when it certainly
    did not take effect (it then leaves the history). Until then it counts as unknown.
    ``output`` is a scratch attribute: :meth:`History.operation` records it on success.
    """

    history: History
    id: int
    client: Hashable
    kind: str
    input: Any
    call: float
    call_seq: int
    #: What the caller received; :meth:`History.operation` passes it to :meth:`ok`.
    output: Any = None
    #: ``"pending"``, then ``"ok"``, ``"unknown"`` or ``"failed"``.
    state: str = "pending"

    def __repr__(self) -> str:
        return (
            f"<PendingOperation #{self.id} client {self.client!r} "
            f"{self.kind}({self.input!r}) {self.state}>"
        )

    def ok(self, output: Any, time: float | None = None) -> Operation:
        """It returned ``output`` (at ``time``, by default the history's clock now)."""
        return self._finish("ok", output, self.history._now(time))

    def unknown(self) -> Operation:
        """Its outcome is unknown: it may take effect at any point after its call, or
        never."""
        return self._finish("unknown", None, None)

    def fail(self) -> None:
        """It certainly did not take effect (for example ``NotLeader`` before the entry
        was appended): drop it from the history."""
        self._check_pending()
        self.state = "failed"
        self.history._pending.pop(self.id, None)

    def as_operation(self) -> Operation:
        """This operation as it stands: unknown while it is pending."""
        return Operation(
            self.id,
            self.client,
            self.kind,
            self.input,
            None,
            self.call,
            None,
            call_seq=self.call_seq,
        )

    def _check_pending(self) -> None:
        if self.state != "pending":
            raise RuntimeError(f"operation #{self.id} was already finished ({self.state})")

    def _finish(self, status: str, output: Any, ret: float | None) -> Operation:
        self._check_pending()
        history = self.history
        ret_seq = history._next_seq() if ret is not None else None
        op = Operation(
            self.id,
            self.client,
            self.kind,
            self.input,
            output,
            self.call,
            ret,
            status,
            call_seq=self.call_seq,
            ret_seq=ret_seq,
        )
        self.state = status
        history._pending.pop(self.id, None)
        history._done[self.id] = op
        return op


class _OperationScope(AbstractAsyncContextManager["PendingOperation"]):
    """The async context manager returned by :meth:`History.operation`."""

    def __init__(self, history: History, client: Hashable, kind: str, input: Any) -> None:
        self._history = history
        self._args = (client, kind, input)
        self._op: PendingOperation | None = None

    async def __aenter__(self) -> PendingOperation:
        self._op = self._history.invoke(*self._args)
        return self._op

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        op = self._op
        assert op is not None
        if op.state != "pending":
            return False  # finished by hand inside the block
        if exc is None:
            op.ok(op.output)
        elif isinstance(exc, NotLeader) or (
            isinstance(exc, ServerStopped) and not isinstance(exc, OutcomeUnknown)
        ):
            op.fail()
        else:
            op.unknown()
        return False


# ------------------------------------------------------------------------------ history
class History:
    """Client operations as they happen: calls, returns and unknown outcomes.

    Times come from ``clock`` (by default :func:`trio.current_time`, Trio's virtual time
    under :func:`~trioraft.testing.run` or ``autojump_clock``), or are given explicitly.
    Every call and return also gets a sequence number, so that events recorded at the same
    virtual time keep the order in which they happened.

    Record with :meth:`invoke` and the returned :class:`PendingOperation`, or with the
    :meth:`operation` context manager::

        history = History()
        async with history.operation("client-1", "write", 5) as op:
            op.output = await leader.write(5)
        result = check_linearizability(history, counter_model())

    ``operations`` (may be given) seeds the history with finished operations, as
    :meth:`from_json` does.
    """

    def __init__(
        self,
        operations: Iterable[Operation] = (),
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock if clock is not None else trio.current_time
        self._done: dict[int, Operation] = {}
        self._pending: dict[int, PendingOperation] = {}
        self._next_id = 0
        self._seq = 0
        for op in operations:
            if op.id in self._done:
                raise ValueError(f"two operations have id {op.id}")
            self._done[op.id] = op
            self._next_id = max(self._next_id, op.id + 1)
            for seq in (op.call_seq, op.ret_seq):
                if seq is not None:
                    self._seq = max(self._seq, seq + 1)

    def _now(self, time: float | None) -> float:
        return float(self._clock()) if time is None else float(time)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def invoke(
        self, client: Hashable, kind: str, input: Any, time: float | None = None
    ) -> PendingOperation:
        """Record the call of an operation (at ``time``, by default the clock now) and
        return it, pending. Finish it with :meth:`PendingOperation.ok`,
        :meth:`~PendingOperation.unknown` or :meth:`~PendingOperation.fail`."""
        call = self._now(time)
        op = PendingOperation(self, self._next_id, client, kind, input, call, self._next_seq())
        self._next_id += 1
        self._pending[op.id] = op
        return op

    def operation(
        self, client: Hashable, kind: str, input: Any
    ) -> AbstractAsyncContextManager[PendingOperation]:
        """An async context manager that records one operation around its block.

        It yields the :class:`PendingOperation`; set its ``output`` in the block::

            async with history.operation(name, "write", cmd) as op:
                op.output = await leader.write(cmd)

        On leaving the block the operation is marked:

        * ``ok(op.output)`` when the block ends normally;
        * failed (dropped: it certainly did not take effect) on
          :class:`~trioraft.NotLeader`, and on a :class:`~trioraft.ServerStopped` that is
          not an :class:`~trioraft.OutcomeUnknown` (the server refused the call, or a
          read never ran);
        * unknown on :class:`~trioraft.OutcomeUnknown` (including
          :class:`~trioraft.StoppedOutcomeUnknown`), on cancellation and on any other
          exception, such as one raised by the state machine's ``write``. To have such an
          error compared as an output, catch it in the block and store it in
          ``op.output``.

        The exception is always re-raised. If the block finished the operation itself
        (``op.ok(...)``, ``op.fail()``...), it is left as it is.
        """
        return _OperationScope(self, client, kind, input)

    @property
    def operations(self) -> list[Operation]:
        """Finished and unknown operations, in invocation order (failed ones are gone).
        Operations still pending count as unknown."""
        ops = list(self._done.values())
        ops.extend(p.as_operation() for p in self._pending.values())
        ops.sort(key=lambda op: op.id)
        return ops

    @property
    def pending(self) -> list[PendingOperation]:
        """The operations invoked and not finished yet, in invocation order."""
        return sorted(self._pending.values(), key=lambda p: p.id)

    def __len__(self) -> int:
        return len(self._done) + len(self._pending)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __repr__(self) -> str:
        ops = self.operations
        unknown = sum(op.unknown for op in ops)
        return f"<History {len(ops)} operations, {unknown} unknown>"

    def check(self, model: Model, *, max_seconds: float | None = None) -> LinearizabilityResult:
        """``check_linearizability(self, model, max_seconds=max_seconds)``."""
        from ._checker import check_linearizability  # the checker imports this module

        return check_linearizability(self, model, max_seconds=max_seconds)

    def to_json(self) -> list[dict[str, Any]]:
        """The operations (pending ones as unknown) as a list of dicts, for
        :func:`json.dumps` when every input and output is JSON-able."""
        return [op.to_json() for op in self.operations]

    @classmethod
    def from_json(
        cls, data: str | Sequence[dict[str, Any]], *, clock: Callable[[], float] | None = None
    ) -> History:
        """A history holding the operations of :meth:`to_json`'s list (or of its JSON
        text). Tuples in inputs and outputs come back as lists."""
        items = json.loads(data) if isinstance(data, str) else data
        return cls((Operation.from_json(item) for item in items), clock=clock)

    def describe(self, limit: int | None = None) -> str:
        """The operations, one per line in invocation order (the first ``limit`` of
        them if given)."""
        ops = self.operations
        lines = [repr(self)]
        shown = ops if limit is None else ops[:limit]
        lines.extend("  " + op.describe() for op in shown)
        if len(shown) < len(ops):
            lines.append(f"  ... and {len(ops) - len(shown)} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()
