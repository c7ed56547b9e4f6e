"""``serve --metrics HOST:PORT``: Prometheus text at ``http://HOST:PORT/metrics``
(prometheus-client's own HTTP server, in a thread of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._network.tcp import parse_address
from .._runtime import Server
from ..metrics import collector, require_prometheus_client
from .common import CommandError, UsageError, listen_error

__all__ = ["register", "require", "serving"]


def require() -> None:
    """A one-line :class:`UsageError` if prometheus-client is not installed."""
    try:
        require_prometheus_client()
    except ImportError:
        raise UsageError(
            "--metrics needs prometheus-client: pip install 'trioraft[metrics]'"
        ) from None


@contextmanager
def serving(address: str | None) -> Iterator[Any]:
    """Serve a registry at ``address`` while the block runs (``None``, and nothing
    served, without an address): the block registers the server's collector on it once
    the server runs. The port is taken first, so that a port in use stops ``serve``
    before its server starts."""
    if address is None:
        yield None
        return
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    host, port = parse_address(address)
    try:
        httpd, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise CommandError(f"--metrics: {listen_error(address, exc)}") from None
    try:
        yield registry
    finally:
        httpd.shutdown()
        httpd.server_close()


def register(registry: Any, server: Server) -> None:
    """Export ``server``'s metrics on ``registry`` (nothing if ``None``)."""
    if registry is not None:
        registry.register(collector(server))
