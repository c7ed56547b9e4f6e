"""The transport interface a server runs on."""

from __future__ import annotations

from typing import Protocol

from .._core.messages import Message

__all__ = ["Endpoint", "Transport"]


class Endpoint(Protocol):
    """One server's attachment to a transport."""

    @property
    def name(self) -> str:
        """The name the server registered under."""
        ...

    def send(self, message: Message) -> None:
        """Send without blocking; the transport may drop or delay the message."""
        ...

    async def receive_batch(self) -> list[Message]:
        """Wait for messages addressed to this server; return all that have arrived.

        Raises ``trio.ClosedResourceError`` once the endpoint is closed.
        """
        ...

    def close(self) -> None:
        """Leave the transport: pending and future messages to this name are dropped."""
        ...


class Transport(Protocol):
    """Something servers register on to talk to each other."""

    def register(self, name: str) -> Endpoint:
        """Attach a server; raises :class:`~trioraft.NameInUse` if ``name`` is taken."""
        ...
