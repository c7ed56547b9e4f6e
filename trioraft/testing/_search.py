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

* **A neutral operation is placed at once, alone.** When a candidate of known outcome
  returns its recorded output and leaves the state equal (a read), the configuration
  with it placed has a linearization exactly when the configuration without it has one:
  move it to the front of any linearization (no operation left returned before its call,
  and it changes nothing). So it is the only alternative tried there, and a memoized
  configuration after it fails the one before it too. Reads then never multiply the
  configurations, as they do in Porcupine's search (each place a read could take is a
  configuration of its own there).
* **Operations of unknown outcome** may take effect at any point after their call, or
  never: placing one is tried only after every candidate of known outcome failed at a
  configuration, latest call first, and never when it would leave the state equal
  (the configuration without it dominates: it has the same state and more choices).
* Every configuration's candidates are stepped once: its alternatives are kept on the
  search's stack, not found again by walking the list after each backtrack.

The search runs in slices (:meth:`_Search.run` with a budget of configurations), so
that the checker can take the parts of a history in turns with growing budgets, and
stop at the first part that fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._models import _REFUSED, _Steps
from ._operation import Operation

__all__: list[str] = []

#: What :meth:`_Search.run` returns.
PAUSED, LINEARIZABLE, NOT_LINEARIZABLE = 0, 1, 2

# A frame of the stack: one configuration and the alternatives tried from it.
_ALTS, _NEXT, _STATE, _LINEARIZED, _LEFT, _ENTRY, _OP, _UNKNOWNS = range(8)


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
    """The search over one part's operations ``ops``, with one transition per operation
    (see ``_models``) from the state ``initial``.

    The entries (calls and known returns) are numbered 1..m in time order; those of
    operations of known outcome form the doubly-linked list ``nxt``/``prv`` (0 is its
    head, m + 1 its tail). The operations of unknown outcome stay apart, in call order in
    ``unknowns``; ``unknown_before[e]`` of them are called before entry ``e``.

    :meth:`run` searches on for a number of configurations. The results: ``path`` (the
    order of the operations placed: a linearization once :data:`LINEARIZABLE`), and
    from the deepest configuration where no operation of known outcome fitted (in
    operations of known outcome placed), ``best``: the order placed until there, the
    state there, and the candidates (indices in ``ops``).
    """

    def __init__(self, ops: Sequence[Operation], steps: _Steps):
        keyed = entries(ops)
        m = len(keyed)
        self.tail = tail = m + 1
        self.nxt = nxt = [tail] * (m + 2)
        self.prv = prv = [0] * (m + 2)
        self.entry_op = entry_op = [-1] * (m + 2)
        self.is_call = is_call = [False] * (m + 2)
        self.ret_entry = ret_entry = [0] * len(ops)
        self.unknowns: list[int] = []
        self.unknown_before = unknown_before = [0] * (m + 2)
        last = 0
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
                nxt[last], prv[e], last = e, last, e
        nxt[last], prv[tail] = tail, last
        unknown_before[tail] = len(self.unknowns)
        self.known = len(ops) - len(self.unknowns)
        self.transitions = steps.transitions
        self.read_only = steps.read_only
        self.bits = [1 << i for i in range(len(ops))]
        self.placed = bytearray(len(ops))  # operations of unknown outcome placed
        self.memo: set[tuple[int, Any]] = set()
        self.stack: list[list[Any]] = []
        self.path: list[int] = []
        self.best_depth = -1
        self.best: tuple[list[int], Any, list[int]] = ([], steps.initial, [])
        # The configuration to expand next.
        self.state, self.linearized, self.left = steps.initial, 0, self.known

    def run(self, budget: int) -> int:
        """Expand up to ``budget`` more configurations; return :data:`LINEARIZABLE`,
        :data:`NOT_LINEARIZABLE` or :data:`PAUSED` (call again to go on)."""
        nxt, prv, ret_entry = self.nxt, self.prv, self.ret_entry
        bits, memo, stack, path, placed = self.bits, self.memo, self.stack, self.path, self.placed
        expand = self._expand
        s, linearized, left = self.state, self.linearized, self.left
        while left:
            if budget <= 0:
                self.state, self.linearized, self.left = s, linearized, left
                return PAUSED
            budget -= 1
            stack.append(expand(s, linearized, left))
            while True:  # the next alternative, from the innermost frame that has one
                if not stack:
                    return NOT_LINEARIZABLE
                frame = stack[-1]
                s, linearized, left = frame[_STATE], frame[_LINEARIZED], frame[_LEFT]
                i = frame[_OP]
                if i >= 0:  # take back the alternative tried last
                    e = frame[_ENTRY]
                    if e:
                        r = ret_entry[i]
                        nxt[prv[r]] = prv[nxt[r]] = r
                        nxt[prv[e]] = prv[nxt[e]] = e
                    else:
                        placed[i] = 0
                    path.pop()
                    frame[_OP] = -1
                alternatives, k = frame[_ALTS], frame[_NEXT]
                if k == len(alternatives):
                    if frame[_UNKNOWNS]:
                        alternatives += self._unknowns(s, left, frame[_UNKNOWNS], not k)
                        frame[_UNKNOWNS] = 0
                        continue
                    stack.pop()
                    continue
                frame[_NEXT] = k + 1
                e, i, new = alternatives[k]
                config = (linearized | bits[i], new)
                if config in memo:
                    continue
                memo.add(config)
                if e:
                    nxt[prv[e]], prv[nxt[e]] = nxt[e], prv[e]
                    r = ret_entry[i]
                    nxt[prv[r]], prv[nxt[r]] = nxt[r], prv[r]
                    left -= 1
                else:
                    placed[i] = 1
                frame[_ENTRY], frame[_OP] = e, i
                path.append(i)
                s, linearized = new, config[0]
                break
        self.state, self.linearized, self.left = s, linearized, left
        return LINEARIZABLE

    def _expand(self, s: Any, linearized: int, left: int) -> list[Any]:
        """The frame of a new configuration: step every candidate of known outcome, and
        keep those that fit as its alternatives: only the first read-only one if any,
        else those that leave the state equal first, in call order."""
        nxt, is_call, entry_op = self.nxt, self.is_call, self.entry_op
        transitions, read_only = self.transitions, self.read_only
        alternatives: list[tuple[int, int, Any]] = []
        neutral = 0  # how many at the front leave the state equal
        e = nxt[0]
        while is_call[e]:
            i = entry_op[e]
            new = transitions[i](s)
            if new is not _REFUSED:
                if read_only[i]:
                    return [[(e, i, s)], 0, s, linearized, left, 0, -1, 0]
                if new is s or new == s:
                    alternatives.insert(neutral, (e, i, new))
                    neutral += 1
                else:
                    alternatives.append((e, i, new))
            e = nxt[e]
        if not self.unknowns:
            if not alternatives:
                self._dead_end(s, left, e)
            return [alternatives, 0, s, linearized, left, 0, -1, 0]
        # Alternatives of unknown outcome come once these are tried.
        return [alternatives, 0, s, linearized, left, 0, -1, e]

    def _unknowns(
        self, s: Any, left: int, first_return: int, stuck: bool
    ) -> list[tuple[int, int, Any]]:
        """The alternatives of unknown outcome at state ``s``, the first return left
        being ``first_return``: those called before it and not placed yet, latest call
        first, that would change the state. ``stuck``: no operation of known outcome
        fits there, so that none of them either makes it a dead end."""
        unknowns, placed, transitions = self.unknowns, self.placed, self.transitions
        alternatives = []
        for k in range(self.unknown_before[first_return] - 1, -1, -1):
            i = unknowns[k]
            if not placed[i]:
                new = transitions[i](s)
                if new is not _REFUSED and not (new is s or new == s):
                    alternatives.append((0, i, new))
        if stuck and not alternatives:
            self._dead_end(s, left, first_return)
        return alternatives

    def _dead_end(self, s: Any, left: int, first_return: int) -> None:
        """No operation fits at state ``s``: remember the deepest such configuration (in
        operations of known outcome placed; the first of equals), for the report."""
        depth = self.known - left
        if depth > self.best_depth:
            self.best_depth = depth
            nxt, entry_op = self.nxt, self.entry_op
            candidates = []
            e = nxt[0]
            while e != first_return:
                candidates.append(entry_op[e])
                e = nxt[e]
            self.best = (self.path.copy(), s, candidates)
