"""Linearizability checking of client histories.

:func:`check_linearizability` decides whether some sequential execution of a
:class:`~trioraft.testing.Model` explains a :class:`~trioraft.testing.History`: every
operation takes effect at one instant between its call and its return, in an order that
produces exactly the outputs the clients saw.

It decides what Porcupine (Athalye's checker, which Jepsen's users know) decides: the
search is Wing & Gong's with Lowe's memoization, and P-compositionality when the model
is partitioned (``_search`` describes the search and what it adds).

An operation whose outcome is unknown (a write that raised
:class:`~trioraft.OutcomeUnknown`, a call that was cancelled) is treated as returning at
+infinity with an output the checker does not compare: it may have taken effect at any
point after its call, or never (Porcupine's histories say the same with a return at the
end of the history).

When the model names independent parts of its state (:meth:`Model.partition_key
<trioraft.testing.Model.partition_key>`, as :func:`~trioraft.testing.kv_model` does, or
a model given ``partition_key``), each part's operations are searched on their own, in
turns with growing budgets: every part undecided gets a budget of configurations, then
twice as much, and so on, and the check stops at the first part that fails. One part
whose search explodes cannot hide another's violation (Porcupine runs the parts at once
on every core, and stops at the first failure too). The parts' orders are merged into
one linearization.

Cost: the search is exponential in the worst case: when many operations of unknown
outcome have effects that others cannot tell apart (writes of the same small increments
to a counter, say), or when a rejection must rule out every order of many concurrent
ones. Make effects distinguishable (unique values, large random increments), as Jepsen's
tests do, and bound the check with ``max_seconds``.
"""

from __future__ import annotations

import heapq
import time as _time
from collections.abc import Hashable, Iterable
from typing import Any

import attrs

from ._models import Model, Transition
from ._operation import Operation
from ._search import LINEARIZABLE, NOT_LINEARIZABLE, PAUSED, _Search

__all__ = ["LinearizabilityResult", "check_linearizability"]

#: The budget (configurations) of each part's first turn; each turn doubles it.
_FIRST_BUDGET = 1000
#: The most configurations searched between two looks at the clock.
_SLICE = 4000


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
    history: Iterable[Operation],
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
    (:meth:`Model.partition_key`), each part's operations are checked on their own, in
    turns with growing budgets, and a rejection reports the first part found to fail.

    ``max_seconds`` bounds the search's wall time: past it, the result has ``ok=None``
    and ``timed_out=True`` (the clock is read every few thousand configurations, so it
    may overrun a little). The search is exponential in the worst case (many concurrent
    operations whose outputs do not tell their order apart); a history from ten clients
    is usually decided quickly.
    """
    started = _time.perf_counter()
    deadline = None if max_seconds is None else started + max_seconds
    ops = _operations(history)
    n = len(ops)
    searches = []
    initial = model.init()  # states are values: every part starts from this one
    for key, part_ops in model._parts(ops).items():
        steps = model._steps(key, part_ops, initial)
        searches.append(_Part(key, part_ops, _Search(part_ops, steps), steps.public))
    outcome, part = _in_turns(searches, deadline)
    seconds = _time.perf_counter() - started
    explored = sum(p.search.expanded for p in searches)
    if outcome == LINEARIZABLE:
        orders = [[p.ops[i] for i in p.search.path] for p in searches]
        return _accepted(orders, n, explored, seconds)
    assert part is not None
    context = _Context(part, model, explored, seconds, n, len(searches))
    if outcome == PAUSED:
        return _undecided(context, max_seconds)
    return _rejected(context)


def _operations(history: Iterable[Operation]) -> list[Operation]:
    """The operations of ``history`` by id, checked."""
    try:
        ops = list(history)
    except TypeError:
        raise TypeError(
            f"a history is a History or an iterable of Operation, not {history!r}"
        ) from None
    for op in ops:
        if not isinstance(op, Operation):
            raise TypeError(f"a history holds Operation objects, not {op!r}")
    ops.sort(key=_op_id)
    if len({op.id for op in ops}) != len(ops):
        raise ValueError("operations must have distinct ids")
    return ops


@attrs.frozen
class _Part:
    """One part of a history (all of it, or one key's operations) and its search."""

    key: Hashable
    ops: list[Operation]
    search: _Search
    public: Transition  # a state of the search as a state of the model


def _in_turns(parts: list[_Part], deadline: float | None) -> tuple[int, _Part | None]:
    """Search the parts in turns, with growing budgets, until every one is
    linearizable (``LINEARIZABLE, None``), one is not (``NOT_LINEARIZABLE`` and it), or
    the deadline passes (``PAUSED`` and the part searched then)."""
    undecided, budget = parts, _FIRST_BUDGET
    while undecided:
        still = []
        for part in undecided:
            left = budget
            while True:
                outcome = part.search.run(min(left, _SLICE))
                left -= _SLICE
                if outcome == NOT_LINEARIZABLE:
                    return outcome, part
                late = deadline is not None and _time.perf_counter() >= deadline
                if late and outcome == PAUSED:
                    return outcome, part
                if outcome == LINEARIZABLE:
                    part.search.release()
                    break
                if left <= 0:
                    still.append(part)
                    break
        undecided, budget = still, budget * 2
    return LINEARIZABLE, None


@attrs.frozen
class _Context:
    """Where the check of a part that was not found linearizable stands."""

    part: _Part
    model: Model
    explored: int
    seconds: float
    operations: int
    parts: int


def _accepted(
    orders: list[list[Operation]], n: int, explored: int, seconds: float
) -> LinearizabilityResult:
    order = orders[0] if len(orders) == 1 else _merge(orders)
    skipped = n - len(order)
    reason = f"linearizable: {n} operations"
    if len(orders) > 1:
        reason += f" in {len(orders)} independent parts"
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
        seconds=seconds,
        operations=n,
    )


def _unfinished(context: _Context, reason: str, **fields: Any) -> LinearizabilityResult:
    """The result of a search that ended without a linearization (undecided or
    rejected): the deepest point it reached, and why it stopped."""
    part = context.part
    search = part.search
    described = search.stuck
    placed, state, candidates = search.best
    state = part.public(state)
    return LinearizabilityResult(
        linearization=None,
        longest_prefix=[part.ops[i] for i in placed] if described else None,
        unordered=sorted((part.ops[i] for i in candidates), key=_op_id),
        state=state if described else None,
        reason=reason,
        explored=context.explored,
        seconds=context.seconds,
        operations=context.operations,
        state_description=context.model.describe_state(state) if described else "",
        partition=part.key,
        **fields,
    )


def _undecided(context: _Context, max_seconds: float | None) -> LinearizabilityResult:
    part = context.part
    where = "" if part.key is None else f" on the {len(part.ops)} operations on {part.key!r}"
    if context.parts > 1:
        where += f" (one of the parts still undecided among {context.parts})"
    reason = f"undecided: gave up after {context.seconds:.3f} s (max_seconds={max_seconds}){where}"
    if part.search.stuck:
        reason += (
            f"; the longest linearizable prefix found so far has "
            f"{len(part.search.best[0])} of {len(part.ops)} operations"
        )
    return _unfinished(context, reason, ok=None, expected={}, timed_out=True)


def _rejected(context: _Context) -> LinearizabilityResult:
    part = context.part
    result = _unfinished(context, "", ok=False, expected={})
    assert result.longest_prefix is not None  # a failed search reached a dead end
    expected = _expected(context.model, result.state, result.unordered)
    ids = ", ".join(f"#{op.id}" for op in result.unordered)
    where = "" if part.key is None else f"the {len(part.ops)} operations on {part.key!r}: "
    reason = (
        f"not linearizable: {where}after the longest linearizable prefix found "
        f"({len(result.longest_prefix)} of {len(part.ops)} operations), no operation could "
        f"be ordered next: {ids or 'none'} could not be placed"
    )
    return attrs.evolve(result, reason=reason, expected=expected)


def _expected(model: Model, state: Any, ops: list[Operation]) -> dict[int, Any]:
    """What the model would have returned for each of ``ops`` at ``state`` (nothing for
    a model whose step must see the output)."""
    expected = {}
    for op in ops:
        try:
            expected[op.id] = model.step(state, op.kind, op.input)[1]
        except NotImplementedError:
            return {}
    return expected


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
