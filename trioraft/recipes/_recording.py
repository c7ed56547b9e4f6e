"""What the recipes send their client, recorded in a :class:`~trioraft.testing.History`
when one is given: a user's test of a recipe checks the recipe's own operations
(``Model.from_state_machine(DictMachine)``) without writing its commands by hand."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from .._client import Client

if TYPE_CHECKING:
    from ..testing import History

__all__ = ["Recorder"]


class Recorder:
    """A client's ``write`` and ``read``, each recorded in ``history`` (if given) as an
    operation of kind ``"write"`` or ``"read"`` with the state machine's command or
    query as its input and the machine's reply as its output, under the name
    ``client_id`` (by default the client's own name)."""

    def __init__(self, client: Client, history: History | None, name: Hashable | None) -> None:
        self.client = client
        self._history = history
        self._name = client.name if name is None else name

    async def write(self, command: Any) -> Any:
        """``client.write(command)``, recorded."""
        return await self._call("write", command)

    async def read(self, query: Any) -> Any:
        """``client.read(query)``, recorded."""
        return await self._call("read", query)

    async def _call(self, kind: str, value: Any) -> Any:
        call = self.client.write if kind == "write" else self.client.read
        if self._history is None:
            return await call(value)
        async with self._history.operation(self._name, kind, value) as op:
            op.output = await call(value)
        return op.output
