"""The connection handshake, without I/O: what each side sends, and the checks of what it
receives.

Three control frames open every TCP connection (see docs/network.rst, "Threat model"):

1. the listening side's **hello**: a fresh 32-byte nonce ``Ns``;
2. the dialler's **intro**: its role (``peer`` or ``client``), its name, the name of the
   server it means to reach (``to``; ``""`` for a client that does not know it), the
   address it listens on (peers), a fresh nonce ``Nc``, and, with a secret, an
   HMAC-SHA256 over all of these and ``Ns``;
3. the listener's **answer**: its name and, with a secret, an HMAC-SHA256 over the whole
   transcript, that name included.

Each side checks the other's MAC under a key derived from the secret of the dialler's
role (RFC 5869 HKDF), so a relayed, reflected or replayed handshake fails: the intro
names the server it was meant for, both nonces are fresh, and the two MACs are bound to
their direction. The secret never crosses the wire. Once both MACs check, each direction
gets its own AES-256-GCM key and IV (HKDF over the secret, both nonces and a hash of the
transcript) for :class:`~trioraft._network.frames.RecordSealer`.

Every field of a control frame is checked for its type and size: whatever the other end
sends, a handshake ends in a :class:`HandshakeError` or in success, never in another
exception.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import attrs

from .._codec import decode_value, describe, encode_value

__all__ = [
    "MAX_HANDSHAKE_FRAME",
    "NONCE",
    "PROTOCOL",
    "Answer",
    "HandshakeError",
    "Intro",
    "TrafficKeys",
    "control_frame",
    "make_answer",
    "make_hello",
    "make_intro",
    "parse_answer",
    "parse_control",
    "parse_hello",
    "parse_intro",
    "traffic_keys",
]

#: The protocol's name and version, bound into every MAC and key.
PROTOCOL = "trioraft/2"
#: Bytes of each side's nonce.
NONCE = 32
#: The largest control frame read before authentication (its body, in bytes).
MAX_HANDSHAKE_FRAME = 4096
#: Bytes of a handshake MAC (HMAC-SHA256).
_MAC = 32
#: The longest name or address a handshake may carry.
_MAX_TEXT = 255
_ROLES = ("peer", "client")
#: The version byte of a control frame (the same as a message frame's).
_VERSION = 1


class HandshakeError(Exception):
    """A connection's handshake failed (wrong secret, bad hello, ...); ``refused``: the
    other end does not share our secret (it refused ours, or failed to prove its own)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@attrs.frozen
class Intro:
    """What the dialler says of itself (checked; see :func:`parse_intro`)."""

    role: str
    name: str
    to: str
    listen: str
    nonce: bytes
    mac: bytes


@attrs.frozen
class Answer:
    """The listener's answer: its name and its proof, or a refusal."""

    ok: bool
    name: str
    mac: bytes
    error: str


@attrs.frozen
class TrafficKeys:
    """Each direction's AES-256-GCM key and IV (dialler to listener, and back)."""

    outbound_key: bytes
    outbound_iv: bytes
    inbound_key: bytes
    inbound_iv: bytes


# ---------------------------------------------------------------- frames
def control_frame(fields: dict[str, Any]) -> bytes:
    """A control frame (length prefix included) holding ``fields``."""
    body = bytes((_VERSION,)) + encode_value(fields)
    return len(body).to_bytes(4, "big") + body


def parse_control(body: bytes | None) -> dict[str, Any]:
    """The fields of a control frame's ``body``; :class:`HandshakeError` if it is not one."""
    if not body or body[0] != _VERSION:
        raise HandshakeError("no handshake")
    try:
        fields = decode_value(body[1:])
    except ValueError as exc:
        raise HandshakeError(f"bad handshake: {exc}") from None
    if not isinstance(fields, dict):
        raise HandshakeError("bad handshake: not a map")
    return fields


def _text(fields: dict[str, Any], key: str, *, empty: bool = True) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str) or len(value) > _MAX_TEXT or (not value and not empty):
        raise HandshakeError(f"bad handshake: field {key!r}")
    if any(c < " " for c in value):
        raise HandshakeError(f"bad handshake: control characters in {key!r}")
    return value


def _bytes(fields: dict[str, Any], key: str, sizes: tuple[int, ...]) -> bytes:
    value = fields.get(key)
    if not isinstance(value, bytes) or len(value) not in sizes:
        raise HandshakeError(f"bad handshake: field {key!r}")
    return value


# ------------------------------------------------------------------ keys
def _hkdf(secret: bytes, length: int, salt: bytes, info: bytes) -> bytes:
    # RFC 5869, from a maintained library (imported when a secret is first used).
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def _mac(secret: bytes | None, role: str, transcript: list[Any]) -> bytes:
    if secret is None:
        return b""
    key = _hkdf(secret, 32, b"", f"{PROTOCOL} handshake {role}".encode())
    return hmac.digest(key, encode_value([PROTOCOL, *transcript]), "sha256")


def _intro_transcript(nonce_s: bytes, intro: Intro) -> list[Any]:
    return ["intro", nonce_s, intro.nonce, intro.role, intro.name, intro.to, intro.listen]


def _answer_transcript(nonce_s: bytes, intro: Intro, server: str) -> list[Any]:
    return ["answer", *_intro_transcript(nonce_s, intro)[1:], server]


def traffic_keys(
    secret: bytes, nonce_s: bytes, intro: Intro, server: str, *, dialler: bool
) -> TrafficKeys:
    """The connection's record keys, as the dialler (``dialler=True``) or the listener
    sees them: each direction its own key and IV, bound to both nonces and the whole
    transcript."""
    transcript = hashlib.sha256(encode_value(_answer_transcript(nonce_s, intro, server)))
    okm = _hkdf(
        secret, 88, nonce_s + intro.nonce, f"{PROTOCOL} traffic ".encode() + transcript.digest()
    )
    to_listener, to_dialler = (okm[:32], okm[32:44]), (okm[44:76], okm[76:88])
    out, back = (to_listener, to_dialler) if dialler else (to_dialler, to_listener)
    return TrafficKeys(out[0], out[1], back[0], back[1])


# ----------------------------------------------------------- the listener
def make_hello() -> tuple[bytes, bytes]:
    """The listener's nonce, and its hello frame."""
    nonce = os.urandom(NONCE)
    return nonce, control_frame({"hello": "trioraft", "version": 2, "nonce": nonce})


def parse_intro(fields: dict[str, Any]) -> Intro:
    """The dialler's intro, every field checked (not its MAC: see :func:`check_intro`)."""
    role = fields.get("role")
    if role not in _ROLES:
        raise HandshakeError(f"bad handshake: role {describe(role)}")
    listen = _text(fields, "listen")
    return Intro(
        role=str(role),
        name=_text(fields, "name", empty=False),
        to=_text(fields, "to"),
        listen=listen,
        nonce=_bytes(fields, "nonce", (NONCE,)),
        mac=_bytes(fields, "mac", (0, _MAC)),
    )


def check_intro(intro: Intro, nonce_s: bytes, secrets: tuple[bytes | None, ...]) -> bytes | None:
    """The secret (of ``secrets``, those the intro's role may use) under which the intro's
    MAC checks; :class:`HandshakeError` if none does. ``(None,)``: no authentication."""
    for secret in secrets:
        if secret is None:
            return None
        expected = _mac(secret, intro.role, _intro_transcript(nonce_s, intro))
        if hmac.compare_digest(expected, intro.mac):
            return secret
    raise HandshakeError(f"{intro.role} {intro.name!r} failed authentication", refused=True)


def make_answer(secret: bytes | None, nonce_s: bytes, intro: Intro, server: str) -> bytes:
    """The listener's answer to an intro it accepted."""
    mac = _mac(secret, intro.role, _answer_transcript(nonce_s, intro, server))
    return control_frame({"ok": True, "name": server, "mac": mac})


def refusal(error: str) -> bytes:
    """The listener's answer to an intro it refuses."""
    return control_frame({"ok": False, "error": error})


# ------------------------------------------------------------ the dialler
def parse_hello(fields: dict[str, Any]) -> bytes:
    """The listener's nonce from its hello."""
    if fields.get("hello") != "trioraft":
        raise HandshakeError("not a trioraft server")
    if fields.get("version") != 2:
        version = describe(fields.get("version"))
        raise HandshakeError(f"a trioraft server of another version ({version})")
    return _bytes(fields, "nonce", (NONCE,))


def make_intro(
    secret: bytes | None, nonce_s: bytes, role: str, name: str, to: str, listen: str
) -> tuple[Intro, bytes]:
    """The dialler's intro (and its frame), answering the hello of nonce ``nonce_s``."""
    intro = Intro(role, name, to, listen, os.urandom(NONCE), b"")
    intro = attrs.evolve(intro, mac=_mac(secret, role, _intro_transcript(nonce_s, intro)))
    fields = {"role": role, "name": name, "to": to, "listen": listen, "nonce": intro.nonce}
    return intro, control_frame({**fields, "mac": intro.mac})


def parse_answer(fields: dict[str, Any], secret: bytes | None, nonce_s: bytes, intro: Intro) -> str:
    """The listener's name from its answer, once its MAC checks and, if the intro named
    a server (``to``), once it is that server."""
    if fields.get("ok") is not True:
        error = fields.get("error")
        error = error if isinstance(error, str) else "no reason given"
        raise HandshakeError(f"refused: {error[:200]}", refused=error == "authentication failed")
    server = _text(fields, "name", empty=False)
    mac = _bytes(fields, "mac", (0, _MAC))
    expected = _mac(secret, intro.role, _answer_transcript(nonce_s, intro, server))
    if not hmac.compare_digest(expected, mac):
        raise HandshakeError("the server does not know the shared secret", refused=True)
    if intro.to and server != intro.to:
        raise HandshakeError(f"reached {server!r}, not {intro.to!r}")
    return server
