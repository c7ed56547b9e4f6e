"""The replicated counter: the one counter of the demo, the soak runner and the benchmark."""

from __future__ import annotations

from typing import Any

from .._state_machine import StateMachine

__all__ = ["Counter"]


class Counter(StateMachine):
    """A replicated counter: ``write(n)`` adds the integer ``n`` and returns the total;
    ``read(anything)`` returns the total. It snapshots (its state is one number), so its
    servers compact their logs.

    ``python -m trioraft serve --machine trioraft.recipes:Counter`` serves it.
    """

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def write(self, command: Any) -> Any:
        """Add ``command`` (an integer) to the total; return the new total."""
        if isinstance(command, bool) or not isinstance(command, int):
            raise TypeError(f"the counter adds integers, not {command!r}")
        self.value += command
        return self.value

    def read(self, query: Any) -> Any:
        """The total."""
        return self.value

    def snapshot(self) -> Any:
        """The total."""
        return self.value

    def restore(self, snapshot: Any) -> None:
        """Set the total."""
        self.value = snapshot
