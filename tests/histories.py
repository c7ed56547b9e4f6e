"""Helpers shared by the checker's tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from trioraft.testing import UNKNOWN, Model, Operation

__all__ = ["brute_force"]


def brute_force(ops: Sequence[Operation], model: Model) -> bool:
    """Whether some order of all the known operations and some of the unknown ones
    respects real time and explains every output (by enumeration)."""
    known = [o for o in ops if not o.unknown]
    unknown = [o for o in ops if o.unknown]
    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            for order in itertools.permutations(known + list(chosen)):
                if any(
                    b.ret is not None and b.ret < a.call
                    for i, a in enumerate(order)
                    for b in order[i + 1 :]
                ):
                    continue
                state = model.init()
                for o in order:
                    output = UNKNOWN if o.unknown else o.output
                    ok, state = model.step_with_output(state, o.kind, o.input, output)
                    if not ok:
                        break
                else:
                    return True
    return False
