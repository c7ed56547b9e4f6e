"""Who may connect, and as what: addresses, secrets, the dialler's side of the handshake,
TLS contexts and what a peer's certificate must name, the rule that off loopback someone
must authenticate every connection, and the lingering close of a refused one.

Owns no state of a network. May not touch: links, connections being served.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from contextlib import suppress
from typing import Any

import trio

from . import handshake, limits
from .frames import FrameStream, RecordOpener, RecordSealer
from .handshake import MAX_HANDSHAKE_FRAME

__all__ = ["check_secret", "client_handshake", "parse_address"]

logger = logging.getLogger("trioraft.tcp")


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``; ``ValueError`` if not."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"expected a 'host:port' address, got {address!r}")
    host, _, port_text = address.rpartition(":")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"bad port in address {address!r}")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address in {address!r}") from None
    elif "[" in host or "]" in host:
        raise ValueError(f"bad address {address!r}: unbalanced brackets")
    elif ":" in host:
        raise ValueError(
            f"bad address {address!r}: an IPv6 address goes in brackets, as '[{host}]:{port}'"
        )
    if not host or any(c.isspace() for c in host) or not 0 <= port < 65536:
        raise ValueError(f"bad address {address!r}")
    return host, port


def check_secret(secret: object, name: str = "secret") -> None:
    """``ValueError`` unless ``secret`` is ``None`` or non-empty bytes."""
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise ValueError(f"{name} must be non-empty bytes, got {type(secret).__qualname__}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _max_unauthenticated() -> int:
    try:
        import resource  # POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - no such limit here
        return limits.MAX_UNAUTHENTICATED
    if soft == resource.RLIM_INFINITY:
        return limits.MAX_UNAUTHENTICATED
    return max(4, min(limits.MAX_UNAUTHENTICATED, soft // 8))


async def client_handshake(
    frames: FrameStream,
    secret: bytes | None,
    role: str,
    name: str,
    listen: str = "",
    *,
    to: str = "",
    records: bool = True,
) -> str:
    """The connecting side's handshake: as ``role`` (``"peer"`` or ``"client"``) named
    ``name``, meaning to reach the server ``to`` (``""``: whichever answers), prove
    knowledge of ``secret`` and check that the other end knows it too (a peer also says
    where it listens). Then, with a secret, ``frames`` carries sealed records. Returns
    the other end's server name; raises :class:`HandshakeError`."""
    limit, frames.max_frame = frames.max_frame, MAX_HANDSHAKE_FRAME
    nonce_s = handshake.parse_hello(handshake.parse_control(await frames.receive()))
    intro, frame = handshake.make_intro(secret, nonce_s, role, name, to, listen)
    await frames.stream.send_all(frame)
    answer = handshake.parse_control(await frames.receive())
    server = handshake.parse_answer(answer, secret, nonce_s, intro)
    frames.max_frame = limit
    if secret is not None and records:
        _secure(frames, handshake.traffic_keys(secret, nonce_s, intro, server, dialler=True))
    return server


def _secure(frames: FrameStream, keys: handshake.TrafficKeys) -> None:
    frames.secure(
        RecordSealer(keys.outbound_key, keys.outbound_iv),
        RecordOpener(keys.inbound_key, keys.inbound_iv),
    )


def _certificate_names(stream: trio.abc.Stream) -> set[str] | None:
    """The names a TLS peer's verified certificate gives (subject alternative names and
    common name); ``None`` if it showed none."""
    if not isinstance(stream, trio.SSLStream):
        return None
    cert = stream.getpeercert()
    if not cert:
        return None
    names = {str(v) for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")}
    for rdn in cert.get("subject", ()):
        names.update(str(v) for k, v in rdn if k == "commonName")
    return names


def _secrets_by_role(
    secret: bytes | None, client_secret: bytes | None
) -> dict[str, tuple[bytes | None, ...]]:
    # A peer proves the cluster's secret; a client the client secret, or the cluster's
    # (a key that authenticates a peer may do anything a client may).
    clients = (secret,) if client_secret is None else (client_secret, secret)
    return {"peer": (secret,), "client": tuple(s for s in clients if s is not None) or (None,)}


def _check_protection(
    listen: str, host: str, secret: bytes | None, server_ssl: ssl.SSLContext | None
) -> None:
    """Off loopback, someone must authenticate every connection: a secret, or TLS that
    requires a certificate of every client."""
    if _is_loopback(host) or secret is not None:
        return
    if server_ssl is None:
        raise ValueError(
            f"listen address {listen!r} is not a loopback address: give a secret (or an "
            "ssl_context that requires client certificates) so that only the cluster's "
            "members and clients can talk to it"
        )
    if server_ssl.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError(
            f"listen address {listen!r} is not a loopback address and the ssl_context does "
            "not require client certificates (verify_mode is not ssl.CERT_REQUIRED): anyone "
            "could connect; require client certificates, or give a secret as well"
        )


def _contexts(ssl_context: Any) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if ssl_context is None:
        return None, None
    if isinstance(ssl_context, ssl.SSLContext):
        return ssl_context, ssl_context
    if (
        isinstance(ssl_context, tuple)
        and len(ssl_context) == 2
        and all(isinstance(c, ssl.SSLContext) for c in ssl_context)
    ):
        return ssl_context[0], ssl_context[1]
    raise ValueError(
        "ssl_context must be an ssl.SSLContext, or a (server context, client context) pair"
    )


async def _linger(stream: trio.abc.Stream, deadline: float) -> None:
    """Read and drop what a refused connection still sends, until it closes or the
    handshake's deadline passes (a "lingering close", as web servers do): closing with
    bytes unread would reset the connection and destroy the refusal sent to it. Nothing
    is kept, so this costs no memory."""
    with trio.move_on_at(deadline), suppress(*limits._CONNECTION_ERRORS):
        while await stream.receive_some(1 << 16):
            pass
