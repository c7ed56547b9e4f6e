"""Linearizability checking of client histories.

:func:`check_linearizability` decides whether some sequential execution of a
:class:`~trioraft.testing.Model` explains a :class:`~trioraft.testing.History`: every
operation takes effect at one instant between its call and its return, in an order that
produces exactly the outputs the clients saw.

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

When the model names independent parts of its state (:meth:`Model.partition_key
<trioraft.testing.Model.partition_key>`, as :func:`~trioraft.testing.kv_model` does, or
a state machine model given ``partition_key``), each part's operations are searched on
their own, and the parts' orders are merged into one.

Cost: histories of a thousand operations from ten clients are typically decided in well
under a second, and so are histories over many keys of a partitioned model (a thousand
operations from fifty clients over a thousand keys of a state machine's dict). The
search is exponential in the worst case, though: when many operations of unknown outcome
have effects that others cannot tell apart (writes of the same small increments to a
counter, say), or when a rejection must rule out every order of many of them. Make
effects distinguishable (unique values, large random increments), as Jepsen's tests do,
and bound the check with ``max_seconds``.
"""

from __future__ import annotations

import heapq
import math
import time as _time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import attrs

from ._history import History, Operation
from ._machine_model import _StateMachineModel
from ._models import Model, _FunctionModel, outputs_match

__all__ = ["LinearizabilityResult", "check_linearizability"]


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
    and ``timed_out=True`` (checked every 1024 steps of the search, so it may overrun
    a little). The search is exponential in the worst case (many concurrent
    operations whose outputs do not tell their order apart); a history from ten clients
    is usually decided quickly.
    """
    started = _time.perf_counter()
    deadline = None if max_seconds is None else started + max_seconds
    ops = sorted(history.operations if isinstance(history, History) else history, key=_op_id)
    n = len(ops)
    if len({op.id for op in ops}) != n:
        raise ValueError("operations must have distinct ids")
    parts = _parts(ops, model)
    explored = 0
    orders: list[list[Operation]] = []
    initial = model.init()  # states are values: every part starts from this one
    for key, part in parts.items():
        search = _Search(part, model, initial, deadline)
        explored += search.explored
        if not search.ok:
            context = _Context(key, part, model, explored, _time.perf_counter() - started, n)
            if search.timed_out:
                return _undecided(search, context, max_seconds)
            return _rejected(search, context)
        orders.append(search.linearization)
    return _accepted(orders, n, explored, _time.perf_counter() - started)


def _parts(ops: list[Operation], model: Model) -> dict[Hashable, list[Operation]]:
    """The operations of each key of the model (:meth:`Model.partition_key`), or all of
    them under ``None`` when one has no key."""
    parts: dict[Hashable, list[Operation]] = {}
    for op in ops:
        key = model.partition_key(op.kind, op.input)
        if key is None:
            return {None: ops}
        parts.setdefault(key, []).append(op)
    return parts or {None: ops}


@attrs.frozen
class _Context:
    """Where a search that did not accept its part stands, for the result."""

    key: Hashable
    part: list[Operation]
    model: Model
    explored: int
    seconds: float
    operations: int


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


def _unfinished(
    search: _Search, context: _Context, reason: str, **fields: Any
) -> LinearizabilityResult:
    """The result of a search that ended without a linearization (undecided or
    rejected): what it found, where it stopped, and why."""
    described = search.prefix is not None
    return LinearizabilityResult(
        linearization=None,
        longest_prefix=search.prefix,
        unordered=search.unordered,
        state=search.state,
        reason=reason,
        explored=context.explored,
        seconds=context.seconds,
        operations=context.operations,
        state_description=context.model.describe_state(search.state) if described else "",
        partition=context.key,
        **fields,
    )


def _undecided(
    search: _Search, context: _Context, max_seconds: float | None
) -> LinearizabilityResult:
    part, key = context.part, context.key
    where = "" if key is None else f" on the {len(part)} operations on {key!r}"
    reason = f"undecided: gave up after {context.seconds:.3f} s (max_seconds={max_seconds}){where}"
    if search.prefix is not None:
        reason += (
            f"; the longest linearizable prefix found so far has "
            f"{len(search.prefix)} of {len(part)} operations"
        )
    return _unfinished(search, context, reason, ok=None, expected={}, timed_out=True)


def _rejected(search: _Search, context: _Context) -> LinearizabilityResult:
    assert search.prefix is not None  # a failed search reached a dead end
    part, key = context.part, context.key
    ids = ", ".join(f"#{op.id}" for op in search.unordered)
    where = "" if key is None else f"the {len(part)} operations on {key!r}: "
    reason = (
        f"not linearizable: {where}after the longest linearizable prefix found "
        f"({len(search.prefix)} of {len(part)} operations), no operation could be "
        f"ordered next: {ids or 'none'} could not be placed"
    )
    return _unfinished(search, context, reason, ok=False, expected=search.expected)


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


# ------------------------------------------------------------------------------- search
_DONE = math.inf  # the budget of a configuration explored completely


def _entries(ops: list[Operation]) -> list[tuple[float, int, int, int, int]]:
    """The calls and the known returns of ``ops`` in time order, as ``(time, rank, seq,
    is_return, index in ops)``. Ties: by the recorded sequence numbers when both events
    have one, else calls first (the lenient reading: the two operations overlap)."""
    keyed: list[tuple[float, int, int, int, int]] = []
    for i, op in enumerate(ops):
        cs = op.call_seq
        keyed.append((op.call, 0 if cs is None else 1, cs or 0, 0, i))
        if op.ret is not None:
            rs = op.ret_seq
            keyed.append((op.ret, 2 if rs is None else 1, rs or 0, 1, i))
    keyed.sort()
    return keyed


class _Timeline:
    """The entries (calls and known returns) of one history, numbered 1..m in time order.

    Those of the operations of known outcome form a doubly-linked list (0 is its head,
    m + 1 its tail), from which the search lifts the operations it linearizes. The calls
    of operations of unknown outcome stay apart, in time order in ``unknowns``;
    ``unknown_before[e]`` of them are called before entry e.
    """

    __slots__ = (
        "entry_op",
        "head",
        "is_call",
        "nxt",
        "prv",
        "ret_entry",
        "tail",
        "unknown_before",
        "unknowns",
    )

    def __init__(self, ops: list[Operation]) -> None:
        keyed = _entries(ops)
        m = len(keyed)
        self.head, self.tail = head, tail = 0, m + 1
        self.nxt = nxt = [tail] * (m + 2)
        self.prv = prv = [head] * (m + 2)
        self.entry_op = entry_op = [-1] * (m + 2)
        self.is_call = is_call = [False] * (m + 2)
        self.ret_entry = ret_entry = [-1] * len(ops)
        self.unknowns: list[int] = []
        self.unknown_before = unknown_before = [0] * (m + 2)
        last = head
        for e, (_t, _r, _s, is_ret, i) in enumerate(keyed, start=1):
            entry_op[e] = i
            unknown_before[e] = len(self.unknowns)
            if is_ret:
                ret_entry[i] = e
            else:
                is_call[e] = True
            if ops[i].unknown:
                self.unknowns.append(i)
            else:
                nxt[last] = e
                prv[e] = last
                last = e
        nxt[last] = tail
        prv[tail] = last
        unknown_before[tail] = len(self.unknowns)

    def lift(self, e: int, i: int) -> None:
        """Unlink operation ``i``'s call (entry ``e``) and its return."""
        nxt, prv = self.nxt, self.prv
        nxt[prv[e]] = nxt[e]
        prv[nxt[e]] = prv[e]
        r = self.ret_entry[i]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def unlift(self, e: int, i: int) -> None:
        """Undo :meth:`lift` (the last one not undone yet): relink in reverse order."""
        nxt, prv = self.nxt, self.prv
        r = self.ret_entry[i]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[e]] = e
        prv[nxt[e]] = e

    def first(self) -> int:
        """The first entry left."""
        return self.nxt[self.head]

    def first_return(self) -> int:
        """The first return left."""
        nxt, is_call = self.nxt, self.is_call
        c = nxt[self.head]
        while is_call[c]:
            c = nxt[c]
        return c

    def calls_before_first_return(self) -> list[int]:
        """The operations whose calls come before the first return left."""
        nxt, is_call = self.nxt, self.is_call
        calls = []
        c = nxt[self.head]
        while is_call[c]:
            calls.append(self.entry_op[c])
            c = nxt[c]
        return calls


def _model_step(model: Model) -> Callable[[Any, str, Any], tuple[Any, Any]]:
    if isinstance(model, _FunctionModel) and type(model).step is _FunctionModel.step:
        return model._step  # skip a call
    return model.step


def _model_match(model: Model) -> Callable[[Any, Any], bool]:
    if type(model).outputs_match is Model.outputs_match:
        return outputs_match
    return model.outputs_match


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

    The candidates are tried in three phases: operations of known outcome that leave the
    state as it is (phase 0: placing one early never hurts), then those that change it
    (phase 1), both in time order, and only when none of those fits, operations of
    unknown outcome, latest call first (phase 2: when operations of unknown outcome took
    effect, it was usually the latest ones).

    The memo maps a configuration to the *budget* it was explored with: how many more
    unknown operations in a row it could still place (``_DONE``: any number). A
    configuration that failed with budget ``b`` fails with any budget up to ``b``.

    The results: ``ok``, and ``linearization`` when it is; otherwise, from the deepest
    dead end (in operations of known outcome), ``prefix``, ``state``, ``unordered`` and,
    unless ``timed_out``, ``expected``. ``explored`` counts the memo's configurations.
    """

    def __init__(
        self, ops: list[Operation], model: Model, initial: Any, deadline: float | None
    ) -> None:
        self.ok = False
        self.timed_out = False
        self.linearization: list[Operation] = []
        self.prefix: list[Operation] | None = None  # the deepest dead end's
        self.unordered: list[Operation] = []
        self.expected: dict[int, Any] = {}
        self.state: Any = None
        self.explored = 0
        self._ops = ops
        self._line = line = _Timeline(ops)
        self._kinds = [op.kind for op in ops]
        self._inputs = [op.input for op in ops]
        self._outputs = [op.output for op in ops]
        self._step = _model_step(model)
        self._match = _model_match(model)
        # States whose equality costs more than comparing outputs: compare outputs first.
        self._outputs_first = isinstance(model, _StateMachineModel)
        self._placed = bytearray(len(ops))  # for operations of unknown outcome
        self._n_known = len(ops) - len(line.unknowns)
        # The configuration: the model's state, and which operations are linearized.
        self._current: Any = initial
        self._linearized = 0  # bit i set: ops[i] is linearized
        self._remaining = self._n_known  # operations of known outcome not linearized
        # The context: unknown operations placed since it began, how many it allows in a
        # row for now, and whether that limit stopped it short.
        self._run, self._limit, self._cut = 0, 1, False
        self._memo: dict[tuple[int, Any], float] = {}
        # For each operation placed: where it was (its call entry, or its index in
        # `unknowns`); state, run, limit and cut before it; the phase that placed it.
        self._stack: list[tuple[int, Any, int, int, bool, int]] = []
        self._best_depth = -1
        self._best: tuple[list[int], Any, list[int]] = ([], None, [])
        # The cursor: the phase, and the entry (phases 0, 1) or the index in `unknowns`
        # (phase 2) to try next.
        self._phase, self._e, self._j = 0, line.first(), -1
        self._deadline = deadline
        self._steps = 0
        self._check_at = 1024.0 if deadline is not None else math.inf
        self._search()
        self._report()

    def _search(self) -> None:
        """Place operations one by one until every operation of known outcome is, by
        trying the candidates, deepening a context, or taking one back."""
        while self._remaining and not self.timed_out:
            self._steps += 1
            if self._steps >= self._check_at and self._out_of_time(self._steps):
                return
            if self._phase < 2:
                if self._place_known() or self._begin_unknowns():
                    continue
            elif self._place_unknown():
                continue
            # No operation fits next here (within the limit).
            if self._deepen():
                continue
            self._note_dead_end()
            if not self._backtrack():
                return

    def _out_of_time(self, steps: int) -> bool:
        """Whether the deadline passed (checked every 1024 steps of the search)."""
        self._steps = steps
        self._check_at = steps + 1024
        if self._deadline is not None and _time.perf_counter() >= self._deadline:
            self.timed_out = True
        return self.timed_out

    def _place_known(self) -> bool:
        """Phases 0 and 1, from the cursor: try each call before the first return left,
        and place operations of known outcome as long as one fits (each time starting
        over from the first entry, in phase 0). Return ``False`` when none fits: the
        cursor is then at that return, in phase 1; ``True`` when every one is placed,
        or time is up."""
        line = self._line
        nxt, is_call, entry_op = line.nxt, line.is_call, line.entry_op
        kinds, inputs, outputs = self._kinds, self._inputs, self._outputs
        step, match, memo, outputs_first = self._step, self._match, self._memo, self._outputs_first
        state, phase, e = self._current, self._phase, self._e
        steps, check_at = self._steps, self._check_at
        while True:
            if is_call[e]:
                steps += 1
                if steps >= check_at:
                    if self._out_of_time(steps):
                        return True
                    check_at = self._check_at
                i = entry_op[e]
                new_state, output = step(state, kinds[i], inputs[i])
                if outputs_first:
                    fits = match(output, outputs[i]) and (new_state == state) is (phase == 0)
                else:
                    fits = (new_state == state) is (phase == 0) and match(output, outputs[i])
                if fits:
                    config = (self._linearized | (1 << i), new_state)
                    if memo.get(config, -1) != _DONE:
                        memo[config] = 1
                        self._place_known_op(e, i, phase, new_state, config[0])
                        if not self._remaining:
                            self._steps = steps
                            return True
                        state, phase, e = new_state, 0, line.first()
                        continue
                e = nxt[e]
            elif phase == 0:
                phase, e = 1, line.first()
            else:
                # A return: its operation should have been linearized by now.
                self._phase, self._e, self._steps = 1, e, steps
                return False

    def _place_known_op(self, e: int, i: int, phase: int, new_state: Any, linearized: int) -> None:
        """Place ``ops[i]`` (called at entry ``e``): a new context begins."""
        self._push(e, phase, new_state, linearized)
        self._line.lift(e, i)
        self._remaining -= 1
        self._run, self._limit, self._cut = 0, 1, False
        self._phase, self._e = 0, self._line.first()

    def _begin_unknowns(self) -> bool:
        """At the first return left, in phase 1: go on with phase 2 if the context allows
        one more operation of unknown outcome, else note whether that stopped it short."""
        line = self._line
        if not line.unknowns:
            return False
        before = line.unknown_before[self._e]
        if self._run < self._limit:
            self._phase, self._j = 2, before - 1
            return True
        if not self._cut:
            placed, unknowns = self._placed, line.unknowns
            self._cut = any(not placed[unknowns[k]] for k in range(before))
        return False

    def _place_unknown(self) -> bool:
        """Phase 2, from the cursor down: try each operation of unknown outcome called
        before the first return left, latest first. Place the first that fits and return
        ``True`` (also when time is up), or ``False`` when none does."""
        unknowns, placed = self._line.unknowns, self._placed
        kinds, inputs, step, memo = self._kinds, self._inputs, self._step, self._memo
        state, j = self._current, self._j
        budget = self._limit - self._run - 1
        while j >= 0:
            i = unknowns[j]
            if not placed[i]:
                self._steps += 1
                if self._steps >= self._check_at and self._out_of_time(self._steps):
                    return True
                new_state, _ = step(state, kinds[i], inputs[i])
                # Placing an unknown operation that leaves the state as it is cannot
                # help: the configuration without it dominates.
                if new_state != state:
                    config = (self._linearized | (1 << i), new_state)
                    if memo.get(config, -1) < budget:
                        memo[config] = budget
                        self._push(j, 2, new_state, config[0])
                        placed[i] = 1
                        self._run += 1
                        self._phase, self._e = 0, self._line.first()
                        return True
            j -= 1
        self._j = j
        return False

    def _push(self, where: int, phase: int, new_state: Any, linearized: int) -> None:
        """Record the configuration before placing an operation, and move to the next."""
        self._stack.append((where, self._current, self._run, self._limit, self._cut, phase))
        self._current = new_state
        self._linearized = linearized

    def _deepen(self) -> bool:
        """At a dead end at the start of a context that the limit stopped short: allow
        twice as many operations of unknown outcome in a row, and try them again."""
        if self._run or not self._cut:
            return False
        self._limit *= 2
        self._cut = False
        if self._stack:
            self._memo[(self._linearized, self._current)] = self._limit
        self._phase = 2
        self._j = self._line.unknown_before[self._line.first_return()] - 1
        return True

    def _note_dead_end(self) -> None:
        """Mark the start of a context explored completely, and remember the deepest dead
        end (in operations of known outcome)."""
        if self._run == 0 and self._stack:
            self._memo[(self._linearized, self._current)] = _DONE
        depth = self._n_known - self._remaining
        if depth > self._best_depth:
            self._best_depth = depth
            candidates = self._line.calls_before_first_return()
            self._best = (self._placed_order(), self._current, candidates)

    def _backtrack(self) -> bool:
        """Take back the last operation placed and resume the search just after it, in
        its phase; ``False`` when nothing is placed."""
        if not self._stack:
            return False
        x, self._current, self._run, limit, cut, phase = self._stack.pop()
        self._phase = phase
        line = self._line
        if phase < 2:
            # Unlift it, and go back to the enclosing context.
            i = line.entry_op[x]
            line.unlift(x, i)
            self._remaining += 1
            self._limit, self._cut = limit, cut
            self._e = line.nxt[x]
        else:
            i = line.unknowns[x]
            self._placed[i] = 0
            self._j = x - 1
        self._linearized ^= 1 << i
        return True

    def _placed_order(self) -> list[int]:
        """The operations placed, in order (indices in ``ops``)."""
        line = self._line
        return [line.entry_op[x] if ph < 2 else line.unknowns[x] for x, *_, ph in self._stack]

    def _report(self) -> None:
        """Fill in the results."""
        ops = self._ops
        self.explored = len(self._memo)
        if not self.timed_out and not self._remaining:
            self.ok = True
            self.linearization = [ops[i] for i in self._placed_order()]
            return
        if self._best_depth < 0:
            return
        prefix, state, candidates = self._best
        self.prefix = [ops[i] for i in prefix]
        self.state = state
        self.unordered = sorted((ops[i] for i in candidates), key=_op_id)
        if not self.timed_out:
            for op in self.unordered:
                self.expected[op.id] = self._step(state, op.kind, op.input)[1]
