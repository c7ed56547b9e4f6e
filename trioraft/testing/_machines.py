"""The testing toolkit's own state machine: a counter that remembers what it applied."""

from __future__ import annotations

from typing import Any

from ..recipes.counter import Counter as _Counter

__all__ = ["Counter"]


class Counter(_Counter):
    """:class:`trioraft.recipes.Counter` that also remembers every command it applied
    (so tests can compare what each replica applied, and in which order).

    Adds each command (a number) to a total and remembers every command it applied.

    ``write(n)`` returns the new total; ``write("boom")`` raises :class:`ValueError`
    (identically on every replica). ``read(None)`` returns the total and
    ``read("applied")`` the commands applied so far, in order. Snapshots hold both.
    """

    def __init__(self, start: int = 0) -> None:
        super().__init__(start)
        self.applied: list[Any] = []

    def write(self, command: Any) -> Any:
        """Add ``command`` to the total and return the new total."""
        self.applied.append(command)
        if command == "boom":
            raise ValueError("boom is not a number")
        self.value += command
        return self.value

    def read(self, query: Any) -> Any:
        """The total, or with ``"applied"`` the list of commands applied."""
        if query == "applied":
            return list(self.applied)
        return self.value

    def snapshot(self) -> Any:
        """The total and the commands applied."""
        return (self.value, list(self.applied))

    def restore(self, snapshot: Any) -> None:
        """Replace the state with a :meth:`snapshot`."""
        self.value, applied = snapshot
        self.applied = list(applied)
