"""State machines shared by the tests."""

from __future__ import annotations

from typing import Any

import trioraft


class Counter(trioraft.StateMachine):
    """Adds each command to a total; remembers every command applied, in order."""

    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.applied: list[Any] = []

    def write(self, command: Any) -> Any:
        self.applied.append(command)
        if command == "boom":
            raise ValueError("boom is not a number")
        self.value += command
        return self.value

    def read(self, query: Any) -> Any:
        if query == "applied":
            return list(self.applied)
        return self.value

    def snapshot(self) -> Any:
        return (self.value, list(self.applied))

    def restore(self, snapshot: Any) -> None:
        self.value, applied = snapshot
        self.applied = list(applied)
