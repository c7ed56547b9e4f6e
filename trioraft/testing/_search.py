"""The search of the linearizability checker, over the operations of one part of a
history (all of it, or one key's when the model is partitioned).

Wing & Gong's search with Lowe's memoization, as Porcupine runs it: the calls and the
returns of the operations of known outcome sit in one time-ordered, doubly-linked list;
the *candidates* at a configuration are the operations whose call comes before the first
return left, and the search places one of them (lifting its call and its return out of
the list), or backtracks when none fits. A memo of the configurations ``(operations
linearized, model state)`` already reached cuts off every path that reaches one again:
a configuration reached before and left is one from which no linearization exists.

What it adds to that, each a dominance argument that keeps the search complete:

* **A read-only operation is placed at once, alone.** When a candidate the model says
  is read-only (``Model.read_only``: it changes no state) returns its recorded output,
  the configuration with it placed has a linearization exactly when the configuration
  without it has one: move it to the front of any linearization (no operation left
  returned before its call, and it changes nothing). So it is the only alternative
  tried there, and a memoized configuration after it fails the one before it too.
  Reads then never multiply the configurations, as they do in Porcupine's search (each
  place a read could take is a configuration of its own there). An operation that
  merely leaves *this* state equal (writing the value already there) is not read-only:
  moved, it would change the states after it.
* **Operations of unknown outcome** may take effect at any point after their call, or
  never. Placing them is tried only once nothing of known outcome fits from a
  configuration, breadth first (one of them, then two...), never one that leaves the
  state equal, and never a set of them that contains a set already tried to reach the
  same state with the same operations of known outcome: with fewer of them placed, that
  configuration has every choice the other has, and more (see :class:`_Search`).

The candidates of a configuration are stepped lazily, in call order (the first that
fits is tried first, as in Porcupine), and each configuration keeps where it stopped;
reads that fit in one state only (``_Steps.needs``) are matched without a call.

The search runs in slices (:meth:`_Search.run` with a budget of configurations), so
that the checker can take the parts of a history in turns with growing budgets, and
stop at the first part that fails.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ._models import _ANY, _REFUSED, _Steps
from ._operation import Operation

__all__: list[str] = []

#: What :meth:`_Search.run` returns.
PAUSED, LINEARIZABLE, NOT_LINEARIZABLE = 0, 1, 2

# A frame of the stack: one configuration (state, known, unknown, left); the next entry
# to step from it; the alternative applied now (its entry and operation, to take back);
# for a context, whether it is one, then the first return (to start its closure), then
# its closure; the entry of a read that fits there (-1 once it was tried); and whether
# an operation of known outcome fitted there.
_CONFIG, _NEXT, _ENTRY, _OP, _CLOSURE, _FORCED, _FITTED = range(7)

#: A run of operations of unknown outcome: the bits of those placed, them, the state.
Run = tuple[int, tuple[int, ...], Any]


def entries(ops: Sequence[Operation]) -> list[tuple[float, int, int, int, int]]:
    """The calls of ``ops`` and their known returns in time order, as ``(time, rank,
    seq, is_return, index in ops)``. Ties: by the recorded sequence numbers when both
    events have one, else calls first (the lenient reading: the two operations
    overlap)."""
    keyed: list[tuple[float, int, int, int, int]] = []
    for i, op in enumerate(ops):
        cs = op.call_seq
        keyed.append((op.call, 0 if cs is None else 1, cs or 0, 0, i))
        if op.ret is not None:
            rs = op.ret_seq
            keyed.append((op.ret, 2 if rs is None else 1, rs or 0, 1, i))
    keyed.sort()
    return keyed


class _Search:
    """The search over one part's operations ``ops``, with their ``steps`` (see
    ``_models``).

    The entries (calls and known returns) are numbered 1..m in time order; those of
    operations of known outcome form the doubly-linked list ``nxt``/``prv`` (0 is its
    head, m + 1 its tail). The operations of unknown outcome stay apart, in call order in
    ``unknowns``; ``unknown_before[e]`` of them are called before entry ``e``.

    A configuration is ``(known, unknown, state)``: the bits of the operations of known
    outcome placed, those of unknown outcome placed, and the model's state. Placing
    operations of unknown outcome is tried only at a *context* (the initial
    configuration, or one just reached by placing an operation of known outcome), once
    every alternative of known outcome from it failed: the context's *closure* is then
    searched breadth first, lazily: every run of operations of unknown outcome (called
    before the context's first return) that changes the state, shortest runs first, and
    from each, the operations of known outcome that fit (each opening a context of its
    own). The memo keeps, for each ``(known, state)``, the sets of operations of unknown
    outcome it was reached with, and drops a configuration whose set contains one of
    them: with fewer of them placed, the same state has every choice the other has, and
    more. So a run that ends where a shorter run already ended is not searched again, and
    the search, breadth first, finds the runs that matter first.

    :meth:`run` searches on for a number of configurations. The results: ``path`` (the
    order of the operations placed: a linearization once :data:`LINEARIZABLE`), and
    from the deepest configuration where no operation fitted (most operations of known
    outcome placed, then most of unknown outcome), ``best``: the order placed until
    there, the state there, and the candidates of known outcome (indices in ``ops``).
    """

    def __init__(self, ops: Sequence[Operation], steps: _Steps):
        keyed = entries(ops)
        m = len(keyed)
        self.tail = tail = m + 1
        self.entry_op = [-1, *[item[4] for item in keyed], -1]
        self.is_call = [False, *[not item[3] for item in keyed], False]
        self.ret_entry = ret_entry = [0] * len(ops)
        for e, item in enumerate(keyed, start=1):
            if item[3]:
                ret_entry[item[4]] = e
        self.unknowns = [item[4] for item in keyed if not item[3] and ops[item[4]].ret is None]
        if not self.unknowns:  # every entry in the list, in order
            self.nxt = [*range(1, m + 2), tail]
            self.prv = [0, *range(m + 1)]
            self.unknown_before = [0] * (m + 2)
        else:
            self._link_known(ops, keyed)
        self.known = len(ops) - len(self.unknowns)
        self.transitions = steps.transitions
        self.read_only = steps.read_only
        self.needs = steps.needs
        self.placed = bytearray(len(ops))  # operations of unknown outcome placed
        #: (known, state) -> the unknown bits it was reached with (an int, or a list).
        self.memo: dict[tuple[int, Any], Any] = {(0, steps.initial): 0}
        self.expanded = 0  # configurations expanded
        self.stack: list[list[Any]] = []
        self.path: list[int] = []
        self.best_depth = (-1, -1)
        self.best: tuple[list[int], Any, list[int]] = ([], steps.initial, [])
        # The configuration to expand next, and whether it is a context.
        self.config = (steps.initial, 0, 0, self.known, True)

    def _link_known(self, ops: Sequence[Operation], keyed: list[Any]) -> None:
        """The list of the entries of the operations of known outcome, and how many
        operations of unknown outcome are called before each entry."""
        m = len(keyed)
        self.nxt = nxt = [m + 1] * (m + 2)
        self.prv = prv = [0] * (m + 2)
        self.unknown_before = unknown_before = [0] * (m + 2)
        last = unknown = 0
        for e, (_t, _r, _s, is_ret, i) in enumerate(keyed, start=1):
            unknown_before[e] = unknown
            if ops[i].ret is not None:
                nxt[last], prv[e], last = e, last, e
            elif not is_ret:
                unknown += 1
        nxt[last], prv[m + 1] = m + 1, last
        unknown_before[m + 1] = unknown

    def run(self, budget: int) -> int:
        """Expand up to ``budget`` more configurations; return :data:`LINEARIZABLE`,
        :data:`NOT_LINEARIZABLE` or :data:`PAUSED` (call again to go on)."""
        nxt, prv, ret_entry, memo = self.nxt, self.prv, self.ret_entry, self.memo
        stack, path, expand, step = self.stack, self.path, self._expand, self._next_known
        s, known, unknown, left, context = self.config
        self.expanded += budget
        while left:
            if budget <= 0:
                self.config = (s, known, unknown, left, context)
                return PAUSED
            budget -= 1
            stack.append(expand(s, known, unknown, left, context))
            while True:  # the next alternative, from the innermost frame that has one
                if not stack:
                    self.expanded -= budget
                    return NOT_LINEARIZABLE
                frame = stack[-1]
                s, known, unknown, left = frame[_CONFIG]
                i = frame[_OP]
                if i is not None:  # take back the alternative applied last
                    e = frame[_ENTRY]
                    if e:
                        r = ret_entry[i]
                        nxt[prv[r]] = prv[nxt[r]] = r
                        nxt[prv[e]] = prv[nxt[e]] = e
                        path.pop()
                    else:
                        self._take_back_run(i)
                    frame[_OP] = None
                found = step(frame, s)
                if found is not None:
                    e, i, s_new = found
                    config = (known | 1 << i, s_new)  # (e: an entry, i: an operation)
                    seen = memo.get(config)
                    if seen is None:
                        memo[config] = unknown
                    elif not self._new(config, unknown):
                        continue  # reached before with fewer of unknown outcome
                    nxt[prv[e]], prv[nxt[e]] = nxt[e], prv[e]
                    r = ret_entry[i]
                    nxt[prv[r]], prv[nxt[r]] = nxt[r], prv[r]
                    frame[_ENTRY], frame[_OP] = e, i
                    path.append(i)
                    s, known, left, context = s_new, config[0], left - 1, True
                    break
                if frame[_CLOSURE]:
                    run = self._next_run(frame)
                    if run is not None:
                        s, unknown, context = run[2], unknown | run[0], False
                        break
                stack.pop()
        self.expanded -= budget
        self.config = (s, known, unknown, left, context)
        return LINEARIZABLE

    def _new(self, config: tuple[int, Any], unknown: int) -> bool:
        """Whether ``config`` (known bits and state), reached with the ``unknown`` bits,
        is not dominated by the times it was reached before: then remember it."""
        seen = self.memo.get(config)
        if seen is None:
            self.memo[config] = unknown
            return True
        if seen.__class__ is int:
            if seen | unknown == unknown:
                return False
            self.memo[config] = [seen, unknown]
            return True
        for other in seen:
            if other | unknown == unknown:
                return False
        seen.append(unknown)
        return True

    def _next_run(self, frame: list[Any]) -> Run | None:
        """The next run of the closure of the frame's context, placed; ``None`` when
        there is none left."""
        closure = frame[_CLOSURE]
        if closure.__class__ is int:  # the first return of the context: start it
            s, known, unknown, _ = frame[_CONFIG]
            closure = frame[_CLOSURE] = self._closure(s, known, unknown, closure)
        found: Run | None = next(closure, None)
        if found is not None:
            ops = found[1]
            placed = self.placed
            for u in ops:
                placed[u] = 1
            self.path.extend(ops)
            frame[_ENTRY], frame[_OP] = 0, ops
        return found

    def _take_back_run(self, ops: tuple[int, ...]) -> None:
        """Take back a run of operations of unknown outcome."""
        placed = self.placed
        for u in ops:
            placed[u] = 0
        del self.path[-len(ops) :]

    def _expand(self, s: Any, known: int, unknown: int, left: int, context: bool) -> list[Any]:
        """The frame of a new configuration; if a read-only candidate fits there, the
        first is its only alternative (the others are found by :meth:`_next_known`)."""
        nxt, is_call, entry_op, needs = self.nxt, self.is_call, self.entry_op, self.needs
        read_only, transitions = self.read_only, self.transitions
        first = e = nxt[0]
        while is_call[e]:
            i = entry_op[e]
            if read_only[i]:
                need = needs[i]
                if need is _ANY:
                    if transitions[i](s) is not _REFUSED:
                        return [(s, known, unknown, left), 0, 0, None, 0, e, True]
                elif need == s:
                    return [(s, known, unknown, left), 0, 0, None, 0, e, True]
            e = nxt[e]
        return [(s, known, unknown, left), first, 0, None, context, 0, False]

    def _next_known(self, frame: list[Any], s: Any) -> tuple[int, int, Any] | None:
        """The next alternative of known outcome of the frame (at state ``s``): its
        read-only one, or the next candidate in call order that fits, and the state it
        leaves; ``None`` when there is none left."""
        forced = frame[_FORCED]
        if forced:
            if forced < 0:
                return None
            frame[_FORCED] = -1
            return forced, self.entry_op[forced], s
        nxt, is_call, entry_op = self.nxt, self.is_call, self.entry_op
        transitions, read_only = self.transitions, self.read_only
        e = frame[_NEXT]
        while is_call[e]:
            i = entry_op[e]
            if not read_only[i]:  # (_expand tried the others)
                s_new = transitions[i](s)
                if s_new is not _REFUSED:
                    frame[_FITTED] = True
                    frame[_NEXT] = nxt[e]  # where to go on from (the list is restored then)
                    return e, i, s_new
            e = nxt[e]
        if not frame[_FITTED]:
            self._dead_end(s, frame[_CONFIG][3], e)
        # A context with operations of unknown outcome called before its first return:
        # its closure, started now.
        frame[_CLOSURE] = e if frame[_CLOSURE] and self.unknown_before[e] else 0
        frame[_FORCED] = -1
        return None

    def _closure(self, s: Any, known: int, unknown: int, first_return: int) -> Iterator[Run]:
        """The runs of operations of unknown outcome from a context, breadth first (see
        the class documentation): those called before its first return, not placed yet,
        each changing the state, latest call first; none that the memo dominates."""
        transitions, new = self.transitions, self._new
        placed, count = self.placed, self.unknown_before[first_return]
        free = [i for i in reversed(self.unknowns[:count]) if not placed[i]]
        queue: deque[Run] = deque([(0, (), s)])
        while queue:
            mask, ops, state = queue.popleft()
            for i in free:
                bit = 1 << i
                if mask & bit:
                    continue
                s_new = transitions[i](state)
                if s_new is _REFUSED or s_new is state or s_new == state:
                    continue
                if new((known, s_new), unknown | mask | bit):
                    found = (mask | bit, (*ops, i), s_new)
                    queue.append(found)
                    yield found

    def release(self) -> None:
        """Drop what the search no longer needs once it found a linearization: every
        state it reached (a state machine's may be large)."""
        self.memo = {}
        self.stack = []
        self.transitions = []
        self.config = (None, 0, 0, 0, False)

    @property
    def stuck(self) -> bool:
        """Whether the search met a configuration where no operation fitted."""
        return self.best_depth[0] >= 0

    def _dead_end(self, s: Any, left: int, first_return: int) -> None:
        """No operation of known outcome fits at state ``s``: remember the deepest such
        configuration (most operations of known outcome placed, then most of unknown
        outcome; the first of equals), for the report."""
        placed = self.known - left
        depth = (placed, len(self.path) - placed)
        if depth > self.best_depth:
            self.best_depth = depth
            nxt, entry_op = self.nxt, self.entry_op
            candidates = []
            e = nxt[0]
            while e != first_return:
                candidates.append(entry_op[e])
                e = nxt[e]
            self.best = (self.path.copy(), s, candidates)
