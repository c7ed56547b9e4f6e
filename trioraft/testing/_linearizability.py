"""Linearizability checking of client histories.

Record what clients did with a :class:`History` (the call and the return of every
operation, in Trio's virtual time by default), then decide with
:func:`check_linearizability` whether some sequential execution of a :class:`Model`
explains it: every operation takes effect at one instant between its call and its
return, in an order that produces exactly the outputs the clients saw.

The checker is Wing & Gong's search with Lowe's memoization ("Testing for
linearizability", Lowe 2017): the calls and returns sit in one time-ordered,
doubly-linked list; the search repeatedly picks an operation whose call comes before the
first remaining return, applies it to the model, and backtracks when the model's output
differs from the one recorded. A memo of the configurations ``(set of linearized
operations, model state)`` already explored cuts off every path that reaches one again.
Among the candidates, operations that leave the state as it is (reads) are tried before
those that change it, which spares most backtracking.

An operation whose outcome is unknown (a write that raised
:class:`~trioraft.OutcomeUnknown`, a call that was cancelled) is treated as returning at
+infinity with an output the checker does not compare: it may have taken effect at any
point after its call, or never. The search places one only where no operation of known
outcome fits, trying runs of one, then two, four... of them in a row, so that the
ones that never took effect cost little.

Cost: histories of a thousand operations from ten clients are typically decided in well
under a second. The search is exponential in the worst case, though: when many
operations of unknown outcome have effects that others cannot tell apart (writes of the
same small increments to a counter, say), or when a rejection must rule out every order
of many of them. Make effects distinguishable (unique values, large random increments),
as Jepsen's tests do, and bound the check with ``max_seconds``.
"""

from __future__ import annotations

import copy
import heapq
import json
import math
import pickle
import time as _time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import attrs
import trio

from .._errors import NotLeader, OutcomeUnknown, ServerStopped

__all__ = [
    "History",
    "LinearizabilityResult",
    "Model",
    "Operation",
    "PendingOperation",
    "check_linearizability",
    "counter_model",
    "kv_model",
    "outputs_match",
]

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


class PendingOperation:
    """An operation that was invoked and has not returned yet (from
    :meth:`History.invoke`).

    Finish it exactly once: :meth:`ok` with what the caller received, :meth:`unknown`
    when the caller cannot know whether it took effect, or :meth:`fail` when it certainly
    did not take effect (it then leaves the history). Until then it counts as unknown.
    ``output`` is a scratch attribute: :meth:`History.operation` records it on success.
    """

    def __init__(
        self,
        history: History,
        id: int,
        client: Hashable,
        kind: str,
        input: Any,
        call: float,
        call_seq: int,
    ) -> None:
        self.history = history
        self.id = id
        self.client = client
        self.kind = kind
        self.input = input
        self.call = call
        self.call_seq = call_seq
        #: What the caller received; :meth:`History.operation` passes it to :meth:`ok`.
        self.output: Any = None
        #: ``"pending"``, then ``"ok"``, ``"unknown"`` or ``"failed"``.
        self.state = "pending"

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


# ------------------------------------------------------------------------------- models
def _loose(value: Any) -> Any:
    """Lists as tuples, recursively: what a JSON round trip does not preserve."""
    if isinstance(value, (list, tuple)):
        return tuple(_loose(v) for v in value)
    return value


def outputs_match(expected: Any, observed: Any) -> bool:
    """Whether an observed output is the one the model gives: equal values, lists and
    tuples alike (JSON turns one into the other), and two exceptions when they have the
    same type and the same ``args``."""
    try:
        if expected == observed:
            return True
    except Exception:
        return False
    if isinstance(expected, BaseException) or isinstance(observed, BaseException):
        return (
            isinstance(expected, BaseException)
            and type(expected) is type(observed)
            and outputs_match(expected.args, observed.args)
        )
    if isinstance(expected, (list, tuple)) and isinstance(observed, (list, tuple)):
        return len(expected) == len(observed) and all(
            outputs_match(a, b) for a, b in zip(expected, observed, strict=True)
        )
    return False


class Model:
    """A sequential specification: what one operation does to a state, and what it
    returns.

    Subclass it and override :meth:`init` and :meth:`step`, or build one from a function
    (:meth:`from_function`) or from your :class:`~trioraft.StateMachine`
    (:meth:`from_state_machine`). Ready models: :func:`counter_model`, :func:`kv_model`.

    **States must be hashable, and equal only when they behave the same**: the checker
    memoizes ``(operations linearized, state)`` pairs, and it never places an operation
    of unknown outcome that leaves the state equal (nothing could observe it). Use
    immutable values: numbers, strings, tuples, frozensets. A state must never be mutated
    in place: :meth:`step` returns a new one.
    """

    #: A name for messages.
    name = "model"

    def init(self) -> Any:
        """The initial state (hashable)."""
        raise NotImplementedError(f"{type(self).__name__} must implement init()")

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        """Apply operation ``kind(input)`` to ``state``: return ``(new_state, output)``.

        Must be deterministic and must not change ``state``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def outputs_match(self, expected: Any, observed: Any) -> bool:
        """Whether ``observed`` (recorded) is the ``expected`` output (the model's).
        By default :func:`outputs_match`."""
        return outputs_match(expected, observed)

    def describe_state(self, state: Any) -> str:
        """The state, for messages. By default its ``repr``."""
        return repr(state)

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        """The independent part of the state that operation ``kind(input)`` uses, if the
        model has such parts (P-compositionality).

        When every operation of a history has a key other than ``None``, the checker
        checks the operations of each key as a history of its own, which is much faster
        and equivalent when the model's state is a product of independent parts, one per
        key, that operations of other keys neither change nor observe (as the keys of
        :func:`kv_model`). By default ``None``: the history is checked as a whole.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @staticmethod
    def from_function(
        step: Callable[[Any, str, Any], tuple[Any, Any]],
        init: Any,
        *,
        name: str | None = None,
    ) -> Model:
        """A model from a plain function ``step(state, kind, input) -> (new_state,
        output)``.

        ``init`` is the initial state (a hashable value), or a callable taking no
        arguments that returns it.
        """
        return _FunctionModel(step, init, name or str(getattr(step, "__name__", "function")))

    @staticmethod
    def from_state_machine(
        machine: Callable[..., Any],
        *args: Any,
        key: Callable[[Any], Hashable] | None = None,
        name: str | None = None,
    ) -> Model:
        """A model from your :class:`~trioraft.StateMachine` class (or factory):
        ``machine(*args)`` makes the initial machine.

        Kind ``"write"`` calls the machine's ``write(input)`` and kind ``"read"`` calls
        ``read(input)`` (which must not change the state). An exception either raises is
        the output, and matches an observed exception of the same type with the same
        ``args`` (see :func:`outputs_match`).

        The state is captured with the machine's ``snapshot()`` (a deep copy of it) and
        put back with ``restore()`` (of a deep copy), so the machine must implement both.
        The memoization key of a snapshot is, in this order:

        1. ``key(snapshot)`` when ``key`` is given;
        2. the snapshot itself when it is hashable;
        3. the snapshot with its lists turned into tuples, dicts into frozensets of
           items and sets into frozensets (marked so that a list and a tuple stay
           different), when every leaf is hashable. Dict insertion order is ignored: if
           your machine's behaviour depends on it, return a snapshot that encodes it;
        4. the snapshot's :func:`pickle` bytes (two equal states may then differ, which
           only costs memoization);
        5. its ``repr``, as a last resort (two different states must not share one).

        The model holds one machine instance: do not use it from two checks at once.
        """
        return _StateMachineModel(machine, args, key, name)


class _FunctionModel(Model):
    def __init__(
        self, step: Callable[[Any, str, Any], tuple[Any, Any]], init: Any, name: str
    ) -> None:
        self._step = step
        self._init = init
        self.name = name

    def init(self) -> Any:
        return self._init() if callable(self._init) else self._init

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        return self._step(state, kind, input)


class _Tag:
    """Marks frozen containers in snapshot keys so that a list and a tuple differ."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_LIST, _DICT, _SET, _PICKLED, _REPR = (
    _Tag("list"),
    _Tag("dict"),
    _Tag("set"),
    _Tag("pickled"),
    _Tag("repr"),
)


def _freeze(value: Any) -> Any:
    if isinstance(value, (str, bytes, int, float, complex, type(None))):
        return value
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, list):
        return (_LIST, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return (_DICT, frozenset((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (_SET, frozenset(_freeze(v) for v in value))
    hash(value)  # TypeError for any other unhashable value
    return value


def _snapshot_key(snapshot: Any) -> Hashable:
    try:
        hash(snapshot)
        return snapshot  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return _freeze(snapshot)  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return (_PICKLED, pickle.dumps(snapshot))
    except Exception:
        return (_REPR, repr(snapshot))


class _MachineState:
    """A state of a :class:`~trioraft.StateMachine` model: a snapshot and its key."""

    __slots__ = ("_hash", "key", "snapshot")

    def __init__(self, snapshot: Any, key: Hashable) -> None:
        self.snapshot = snapshot
        self.key = key
        self._hash = hash(key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _MachineState) and (
            self is other or (self._hash == other._hash and self.key == other.key)
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return repr(self.snapshot)


class _StateMachineModel(Model):
    def __init__(
        self,
        machine: Callable[..., Any],
        args: tuple[Any, ...],
        key: Callable[[Any], Hashable] | None,
        name: str | None,
    ) -> None:
        self._factory = machine
        self._args = args
        self._key = key if key is not None else _snapshot_key
        self.name = name or str(getattr(machine, "__name__", "state machine"))
        self._machine: Any = None
        self._loaded: _MachineState | None = None
        self.init()  # fail now if the machine cannot snapshot

    def _capture(self) -> _MachineState:
        try:
            snapshot = self._machine.snapshot()
        except NotImplementedError as exc:
            raise TypeError(
                f"{self.name} must implement snapshot() and restore() to serve as a model"
            ) from exc
        snapshot = copy.deepcopy(snapshot)
        state = _MachineState(snapshot, self._key(snapshot))
        self._loaded = state
        return state

    def init(self) -> Any:
        self._machine = self._factory(*self._args)
        return self._capture()

    def step(self, state: Any, kind: str, input: Any) -> tuple[Any, Any]:
        if kind not in ("write", "read"):
            raise ValueError(f"a state machine model knows kinds 'write' and 'read', not {kind!r}")
        if self._loaded is not state:
            self._machine.restore(copy.deepcopy(state.snapshot))
            self._loaded = state
        method = self._machine.write if kind == "write" else self._machine.read
        try:
            output = method(input)
        except Exception as exc:
            output = exc
        if kind == "read":
            return state, output
        return self._capture(), output


def _counter_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    if kind == "write":
        total = state + input
        return total, total
    if kind == "read":
        return state, state
    raise ValueError(f"the counter model knows kinds 'write' and 'read', not {kind!r}")


def counter_model(start: int = 0) -> Model:
    """A counter, as ``tests/machines.py``'s ``Counter`` and the API's example: kind
    ``"write"`` adds its input to the total and returns the new total; kind ``"read"``
    returns the total (its input is ignored). The state is the total."""
    return _FunctionModel(_counter_step, start, "counter")


def _kv_step(state: Any, kind: str, input: Any) -> tuple[Any, Any]:
    op = input[0]
    if op == "get":
        key = _loose(input[1])
        for k, v in state:
            if k == key:
                return state, v
        return state, None
    items = dict(state)
    if op == "put":
        _, key, value = input
        items[_loose(key)] = _loose(value)
        return frozenset(items.items()), value
    if op == "cas":
        _, key, old, new = input
        key = _loose(key)
        if outputs_match(items.get(key), old):
            items[key] = _loose(new)
            return frozenset(items.items()), True
        return state, False
    raise ValueError(f"the key-value model knows 'put', 'get' and 'cas', not {op!r}")


class _KVModel(_FunctionModel):
    def describe_state(self, state: Any) -> str:
        items = sorted(state, key=repr)
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"

    def partition_key(self, kind: str, input: Any) -> Hashable | None:
        return _loose(input[1])  # type: ignore[no-any-return]


def kv_model() -> Model:
    """A key-value store. The input says what to do (the kind is not used):

    * ``("put", key, value)`` stores ``value`` and returns it;
    * ``("get", key)`` returns the value, or ``None`` when there is none;
    * ``("cas", key, old, new)`` stores ``new`` if the value is ``old`` (``None``: no
      value) and returns ``True``, else returns ``False``.

    The state is a frozenset of ``(key, value)`` items, so keys and values must be
    hashable (lists, as JSON returns tuples, are stored as tuples). Every operation uses
    one key, so the checker checks each key's operations separately
    (:meth:`Model.partition_key`).
    """
    return _KVModel(_kv_step, frozenset(), "key-value")


# ------------------------------------------------------------------------------ results
@attrs.frozen
class LinearizabilityResult:
    """What :func:`check_linearizability` decided, and why.

    ``ok`` is ``True`` (linearizable), ``False`` (not) or ``None`` when the check gave up
    after ``max_seconds`` (then ``timed_out`` is ``True``, and ``longest_prefix``,
    ``unordered`` and ``state`` describe the deepest point reached so far, as for a
    rejection but without ``expected``). ``bool(result)`` is ``result.ok is True``.
    ``str(result)`` explains the verdict to a person.

    When ``ok``: ``linearization`` is a witness, an order of the operations in which the
    model gives every recorded output. Operations of unknown outcome that it leaves out
    did not take effect (or took effect after everything else, which no one observed).

    When not ``ok``: ``longest_prefix`` is the longest sequence of operations the search
    could linearize, ``state`` the model's state after it, and ``unordered`` the
    operations that could have come next and could not be placed there, because the
    model's output (in ``expected``, by operation id) differs from the recorded one. One
    of them is wrong, or the prefix already went astray: look at them first.
    ``reason`` says it in words.

    When the model splits the history into independent parts
    (:meth:`Model.partition_key`), a rejection is about the first part that fails:
    ``partition`` is its key, and ``longest_prefix``, ``state`` and ``unordered`` are
    about its operations only. ``linearization`` always orders every operation kept.

    ``explored`` counts the configurations (operations linearized, model state) the
    search visited; ``seconds`` is the wall time it took; ``operations`` is how many the
    history had. ``state_description`` is the model's description of ``state``.
    """

    ok: bool | None
    linearization: list[Operation] | None
    longest_prefix: list[Operation] | None
    unordered: list[Operation]
    expected: dict[int, Any]
    state: Any
    reason: str
    explored: int
    seconds: float
    timed_out: bool = False
    operations: int = 0
    state_description: str = ""
    partition: Hashable | None = None

    def __bool__(self) -> bool:
        return self.ok is True

    def __str__(self) -> str:
        lines = [self.reason]
        if self.ok is not True and self.longest_prefix is not None:
            if self.ok is None:
                lines.append("At the deepest point reached so far:")
            lines.append(f"Model state after that prefix: {self.state_description}")
            lines.append("These operations could not be placed next:")
            for op in self.unordered:
                times = f"called at {op.call:.6f}"
                if op.call_seq is not None:
                    times += f" (event {op.call_seq})"
                times += f", returned at {op.ret:.6f}"
                if op.ret_seq is not None:
                    times += f" (event {op.ret_seq})"
                returned = f"returned {op.output!r}"
                if op.id in self.expected:
                    returned += f", but the model would return {self.expected[op.id]!r}"
                lines.append(
                    f"  #{op.id} client {op.client!r}: {op.kind}({op.input!r}) {returned}; {times}"
                )
            tail = self.longest_prefix[-10:]
            if tail:
                skipped = len(self.longest_prefix) - len(tail)
                lines.append(
                    f"The last {len(tail)} operations of that prefix:"
                    if skipped
                    else "That prefix:"
                )
                lines.extend("  " + op.describe() for op in tail)
        lines.append(f"({self.explored} configurations explored in {self.seconds:.3f} s)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ checker
def check_linearizability(
    history: History | Iterable[Operation],
    model: Model,
    *,
    max_seconds: float | None = None,
) -> LinearizabilityResult:
    """Decide whether ``history`` (a :class:`History` or operations) is linearizable with
    respect to ``model``.

    Wing & Gong's search with Lowe's memoization, see the module documentation.
    Operations of unknown outcome may take effect at any point after their call, or
    never, and their output is not compared. Real-time order comes from the call and
    return times, ties broken by the events' sequence numbers when the history recorded
    them (see :class:`Operation`). When the model names independent parts of its state
    (:meth:`Model.partition_key`), each part's operations are checked on their own, and
    a rejection reports the first part that fails.

    ``max_seconds`` bounds the search's wall time: past it, the result has ``ok=None``
    and ``timed_out=True`` (checked every 1024 steps, so it may overrun a little). The
    search is exponential in the worst case (many concurrent operations whose outputs do
    not tell their order apart); a history from ten clients is usually decided quickly.
    """
    started = _time.perf_counter()
    deadline = None if max_seconds is None else started + max_seconds
    ops = sorted(history.operations if isinstance(history, History) else history, key=_op_id)
    n = len(ops)
    if len({op.id for op in ops}) != n:
        raise ValueError("operations must have distinct ids")
    parts: dict[Hashable, list[Operation]] = {}
    for op in ops:
        key = model.partition_key(op.kind, op.input)
        if key is None:
            parts = {None: ops}
            break
        parts.setdefault(key, []).append(op)
    if not parts:
        parts = {None: ops}

    explored = 0
    orders: list[list[Operation]] = []
    for key, part in parts.items():
        search = _Search(part, model, deadline)
        explored += search.explored
        seconds = _time.perf_counter() - started
        if search.timed_out:
            where = "" if key is None else f" on the {len(part)} operations on {key!r}"
            reason = f"undecided: gave up after {seconds:.3f} s (max_seconds={max_seconds}){where}"
            if search.prefix is not None:
                reason += (
                    f"; the longest linearizable prefix found so far has "
                    f"{len(search.prefix)} of {len(part)} operations"
                )
            return LinearizabilityResult(
                ok=None,
                linearization=None,
                longest_prefix=search.prefix,
                unordered=search.unordered,
                expected={},
                state=search.state,
                reason=reason,
                explored=explored,
                seconds=seconds,
                timed_out=True,
                operations=n,
                state_description=(
                    model.describe_state(search.state) if search.prefix is not None else ""
                ),
                partition=key,
            )
        if search.ok:
            orders.append(search.linearization)
            continue
        assert search.prefix is not None  # a failed search reached a dead end
        unordered = search.unordered
        ids = ", ".join(f"#{op.id}" for op in unordered)
        where = "" if key is None else f"the {len(part)} operations on {key!r}: "
        reason = (
            f"not linearizable: {where}after the longest linearizable prefix found "
            f"({len(search.prefix)} of {len(part)} operations), no operation could be "
            f"ordered next: {ids or 'none'} could not be placed"
        )
        return LinearizabilityResult(
            ok=False,
            linearization=None,
            longest_prefix=search.prefix,
            unordered=unordered,
            expected=search.expected,
            state=search.state,
            reason=reason,
            explored=explored,
            seconds=seconds,
            operations=n,
            state_description=model.describe_state(search.state),
            partition=key,
        )

    order = orders[0] if len(orders) == 1 else _merge(orders)
    skipped = n - len(order)
    reason = f"linearizable: {n} operations"
    if len(parts) > 1:
        reason += f" in {len(parts)} independent parts"
    if skipped:
        reason += f" ({skipped} of unknown outcome left out: they need not take effect)"
    return LinearizabilityResult(
        ok=True,
        linearization=order,
        longest_prefix=None,
        unordered=[],
        expected={},
        state=None,
        reason=reason,
        explored=explored,
        seconds=_time.perf_counter() - started,
        operations=n,
    )


def _op_id(op: Operation) -> int:
    return op.id


def _call_key(op: Operation) -> tuple[float, int, int]:
    # The position of the call among all entries, as the search orders them.
    return (op.call, 0 if op.call_seq is None else 1, op.call_seq or 0)


def _merge(orders: list[list[Operation]]) -> list[Operation]:
    """One order of all the operations from linearizations of independent parts.

    Linearizability is local (Herlihy & Wing): the parts' orders together with the
    real-time order have no cycle. Of the parts' next operations, the one called first
    has no operation left that returned before its call, if any of them has none."""
    heads = [(_call_key(order[0]), k, 0) for k, order in enumerate(orders) if order]
    heapq.heapify(heads)
    merged: list[Operation] = []
    while heads:
        _, k, pos = heapq.heappop(heads)
        merged.append(orders[k][pos])
        if pos + 1 < len(orders[k]):
            heapq.heappush(heads, (_call_key(orders[k][pos + 1]), k, pos + 1))
    return merged


_DONE = math.inf  # the budget of a configuration explored completely


class _Search:
    """Wing & Gong's search over one history, with Lowe's memoization.

    Operations of unknown outcome may take effect anywhere after their call, so every one
    that never took effect stays a candidate for ever, and trying every subset of them at
    every step would be exponential. The search therefore places one only when no
    operation of known outcome fits next, and deepens locally: from the configuration
    where that happened (a *context*, begun by the last operation of known outcome), it
    first tries every single unknown operation followed by a known one, then runs of up to
    two, four, and so on, until a run works or no run was cut short by the bound. Each
    context is so explored completely, and the search as a whole stays complete.

    The memo maps a configuration to the *budget* it was explored with: how many more
    unknown operations in a row it could still place (``_DONE``: any number). A
    configuration that failed with budget ``b`` fails with any budget up to ``b``.
    """

    def __init__(self, ops: list[Operation], model: Model, deadline: float | None) -> None:
        self.ok = False
        self.timed_out = False
        self.linearization: list[Operation] = []
        self.prefix: list[Operation] | None = None  # the deepest dead end's
        self.unordered: list[Operation] = []
        self.expected: dict[int, Any] = {}
        self.state: Any = None
        self.explored = 0
        self._run(ops, model, deadline)

    def _run(self, ops: list[Operation], model: Model, deadline: float | None) -> None:
        n = len(ops)
        known = [not op.unknown for op in ops]
        # The entries, in time order: one per call, one per known return. Ties: by the
        # recorded sequence numbers when both events have one, else calls first (the
        # lenient reading: the two operations overlap).
        keyed: list[tuple[float, int, int, int, int]] = []
        for i, op in enumerate(ops):
            cs = op.call_seq
            keyed.append((op.call, 0 if cs is None else 1, cs or 0, 0, i))
            if op.ret is not None:
                rs = op.ret_seq
                keyed.append((op.ret, 2 if rs is None else 1, rs or 0, 1, i))
        keyed.sort()
        m = len(keyed)
        # Entries are numbered 1..m in time order. Those of the operations of known
        # outcome form a doubly-linked list (0 is its head, m + 1 its tail). The calls of
        # operations of unknown outcome stay apart, in time order in `unknowns`;
        # `unknown_before[e]` of them are called before entry e.
        head, tail = 0, m + 1
        nxt = [tail] * (m + 2)
        prv = [head] * (m + 2)
        entry_op = [-1] * (m + 2)
        is_call = [False] * (m + 2)
        ret_entry = [-1] * n
        unknowns: list[int] = []
        unknown_before = [0] * (m + 2)
        last = head
        for e, (_t, _r, _s, is_ret, i) in enumerate(keyed, start=1):
            entry_op[e] = i
            unknown_before[e] = len(unknowns)
            if is_ret:
                ret_entry[i] = e
            else:
                is_call[e] = True
            if known[i]:
                nxt[last] = e
                prv[e] = last
                last = e
            else:
                unknowns.append(i)
        nxt[last] = tail
        prv[tail] = last
        unknown_before[tail] = len(unknowns)
        placed = bytearray(n)  # for operations of unknown outcome
        n_known = n - len(unknowns)
        kinds = [op.kind for op in ops]
        inputs = [op.input for op in ops]
        outputs = [op.output for op in ops]
        step: Callable[[Any, str, Any], tuple[Any, Any]] = model.step
        if isinstance(model, _FunctionModel) and type(model).step is _FunctionModel.step:
            step = model._step  # skip a call
        match = model.outputs_match
        if type(model).outputs_match is Model.outputs_match:
            match = outputs_match
        clock = _time.perf_counter

        remaining = n_known  # operations of known outcome not linearized yet
        state = model.init()
        linearized = 0  # bit i set: ops[i] is linearized
        run = 0  # unknown operations placed since the context began
        limit = 1  # how many the context allows in a row, for now
        cut = False  # whether the limit stopped the context short
        memo: dict[tuple[int, Any], float] = {}
        # For each operation placed: where it was (its call entry, or its index in
        # `unknowns`); state, run, limit and cut before it; the phase that placed it.
        stack: list[tuple[int, Any, int, int, bool, int]] = []
        best_depth = -1
        best_prefix: list[int] = []
        best_state: Any = None
        best_candidates: list[int] = []
        steps = 0
        # The candidates are tried in three phases: operations of known outcome that
        # leave the state as it is (phase 0: placing one early never hurts), then those
        # that change it (phase 1), both in time order, and only when none of those fits,
        # operations of unknown outcome, latest call first (phase 2: when operations of
        # unknown outcome took effect, it was usually the latest ones).
        phase = 0
        e = nxt[head]
        j = -1  # phase 2: the index in `unknowns` to try next
        while remaining:
            steps += 1
            if deadline is not None and not steps & 1023 and clock() >= deadline:
                self.timed_out = True
                break
            if phase < 2:
                if is_call[e]:
                    i = entry_op[e]
                    new_state, output = step(state, kinds[i], inputs[i])
                    if (new_state == state) is (phase == 0) and match(output, outputs[i]):
                        config = (linearized | (1 << i), new_state)
                        if memo.get(config, -1) != _DONE:
                            # A new context begins.
                            memo[config] = 1
                            stack.append((e, state, run, limit, cut, phase))
                            state = new_state
                            linearized = config[0]
                            run, limit, cut = 0, 1, False
                            # Lift the operation: unlink its call and its return.
                            nxt[prv[e]] = nxt[e]
                            prv[nxt[e]] = prv[e]
                            r = ret_entry[i]
                            nxt[prv[r]] = nxt[r]
                            prv[nxt[r]] = prv[r]
                            remaining -= 1
                            phase = 0
                            e = nxt[head]
                            continue
                    e = nxt[e]
                    continue
                # A return: its operation should have been linearized by now.
                if phase == 0:
                    phase = 1
                    e = nxt[head]
                    continue
                if unknowns:
                    if run < limit:
                        phase = 2
                        j = unknown_before[e] - 1
                        continue
                    if not cut:
                        for k in range(unknown_before[e]):
                            if not placed[unknowns[k]]:
                                cut = True
                                break
            elif j >= 0:
                i = unknowns[j]
                if not placed[i]:
                    new_state, output = step(state, kinds[i], inputs[i])
                    # Placing an unknown operation that leaves the state as it is cannot
                    # help: the configuration without it dominates.
                    if new_state != state:
                        config = (linearized | (1 << i), new_state)
                        budget = limit - run - 1
                        if memo.get(config, -1) < budget:
                            memo[config] = budget
                            stack.append((j, state, run, limit, cut, 2))
                            state = new_state
                            linearized = config[0]
                            placed[i] = 1
                            run += 1
                            phase = 0
                            e = nxt[head]
                            continue
                j -= 1
                continue
            # No operation fits next here (within the limit).
            if run == 0 and cut:
                # The start of the context: allow twice as many in a row.
                limit *= 2
                cut = False
                if stack:
                    memo[(linearized, state)] = limit
                c = nxt[head]
                while is_call[c]:
                    c = nxt[c]
                phase = 2
                j = unknown_before[c] - 1
                continue
            if run == 0 and stack:
                memo[(linearized, state)] = _DONE
            # A dead end. Remember the deepest (in operations of known outcome).
            if n_known - remaining > best_depth:
                best_depth = n_known - remaining
                best_prefix = [
                    entry_op[x] if ph < 2 else unknowns[x] for x, _, _, _, _, ph in stack
                ]
                best_state = state
                best_candidates = []
                c = nxt[head]
                while is_call[c]:
                    best_candidates.append(entry_op[c])
                    c = nxt[c]
            if not stack:
                break
            x, state, run, prev_limit, prev_cut, phase = stack.pop()
            if phase < 2:
                # Unlift it, in the reverse order, and go back to the enclosing context.
                i = entry_op[x]
                r = ret_entry[i]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                nxt[prv[x]] = x
                prv[nxt[x]] = x
                remaining += 1
                limit, cut = prev_limit, prev_cut
                e = nxt[x]
            else:
                i = unknowns[x]
                placed[i] = 0
                j = x - 1
            linearized ^= 1 << i

        self.explored = len(memo)
        if self.timed_out:
            pass
        elif not remaining:
            self.ok = True
            self.linearization = [
                ops[entry_op[x] if ph < 2 else unknowns[x]] for x, _, _, _, _, ph in stack
            ]
            return
        if best_depth >= 0:
            self.prefix = [ops[i] for i in best_prefix]
            self.state = best_state
            self.unordered = sorted((ops[i] for i in best_candidates), key=_op_id)
            if not self.timed_out:
                for op in self.unordered:
                    self.expected[op.id] = step(best_state, op.kind, op.input)[1]
