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
from typing import Any

import attrs
import trio

from .._errors import NotLeader, OutcomeUnknown, ServerStopped
from ._checker import LinearizabilityResult, check_linearizability
from ._models import Model
from ._operation import Operation

__all__ = ["History", "Operation", "PendingOperation"]


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
