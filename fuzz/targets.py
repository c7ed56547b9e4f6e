"""The fuzz targets: each takes arbitrary bytes and asserts the decoders' promises.

Whatever bytes arrive, the wire decoder raises :class:`trioraft.MalformedMessage` and the
handshake :class:`~trioraft._network.handshake.HandshakeError`, and nothing else; a
message that decodes re-encodes to a frame that decodes to the same message;
``decode_gradually`` agrees with ``decode``; the record layer gives back exactly the
frames a reference reading of the same bytes finds; a listener fed any bytes by a
dialler ends its connection cleanly (counters back to zero, nothing logged but a
refusal or a malformed frame) once those bytes end.

A target is a function of ``bytes`` (some are async: :func:`run` runs them in a fresh
Trio run with a virtual clock). The same targets serve atheris (``atheris_main.py``),
HypoFuzz (``test_hypofuzz.py``) and the corpus replay of the normal test suite
(``tests/network/test_fuzz_corpus.py``); the memory promise is checked by the replay.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from trioraft import MalformedMessage
from trioraft._network import handshake, limits, tcp, wire
from trioraft._network.frames import (
    HEADER,
    TAG,
    FrameStream,
    OversizedFrame,
    RecordOpener,
    RecordSealer,
    split_frames,
)
from trioraft._network.handshake import HandshakeError, Intro
from trioraft._protocol import ClientRequest

__all__ = ["MAX_LEN", "TARGETS", "run"]

#: The longest input the fuzzers make (the handshake's frame limit).
MAX_LEN = handshake.MAX_HANDSHAKE_FRAME
_U16 = struct.Struct(">H")
_NONCE_S = bytes(range(32))
_SECRET = b"fuzzing secret, 32 bytes long.."
_OTHER_SECRET = b"another secret, 32 bytes long.."
_KEY, _IV = bytes(range(32, 64)), bytes(range(64, 76))


# ------------------------------------------------------------------- wire
def wire_decode(data: bytes) -> None:
    """``wire.decode`` raises only MalformedMessage; what decodes round-trips."""
    try:
        message = wire.decode(data)
    except MalformedMessage:
        return
    frame = wire.encode(message)  # whatever was accepted can be sent on
    assert wire.frame_length(frame[:HEADER]) == len(frame) - HEADER
    again = wire.decode(frame[HEADER:])
    assert type(again) is type(message)
    assert again == message or repr(again) == repr(message), (again, message)  # NaN != NaN
    assert wire.encode(again) == frame


async def wire_gradually(data: bytes) -> None:
    """``wire.decode_gradually`` agrees with ``wire.decode``."""
    try:
        expected: Any = wire.decode(data)
    except MalformedMessage as exc:
        expected = exc
    try:
        got: Any = await wire.decode_gradually(data)
    except MalformedMessage as exc:
        got = exc
    if isinstance(expected, MalformedMessage) or isinstance(got, MalformedMessage):
        assert type(expected) is type(got), (expected, got)
    else:
        assert got == expected or repr(got) == repr(expected), (got, expected)


# -------------------------------------------------------------- handshake
_INTRO = Intro("peer", "b", "a", "127.0.0.1:2", bytes(32), b"")


def handshake_parse(data: bytes) -> None:
    """Every parser of a control frame raises only HandshakeError, whatever the frame."""
    try:
        fields = handshake.parse_control(data)
    except HandshakeError:
        return
    assert isinstance(fields, dict)
    try:
        nonce = handshake.parse_hello(fields)
        assert type(nonce) is bytes and len(nonce) == handshake.NONCE
    except HandshakeError:
        pass
    try:
        intro = handshake.parse_intro(fields)
    except HandshakeError:
        pass
    else:
        assert intro.role in ("peer", "client") and intro.name
        assert all(len(text) <= 255 for text in (intro.name, intro.to, intro.listen))
        for secrets in ((None,), (_SECRET,), (_OTHER_SECRET, _SECRET)):
            with contextlib.suppress(HandshakeError):
                handshake.check_intro(intro, _NONCE_S, secrets)
    for secret in (None, _SECRET):
        with contextlib.suppress(HandshakeError):
            handshake.parse_answer(fields, secret, _NONCE_S, _INTRO)


class _NoSocket:
    def setsockopt(self, *args: object) -> None:
        raise OSError("not a socket")


class ScriptedStream(trio.abc.Stream):
    """A connection whose other end sends ``chunks`` (one per read), then closes; what
    is sent to it is kept in ``sent``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [c for c in chunks if c]
        self.chunks.reverse()
        self.sent = bytearray()
        self.socket = _NoSocket()  # what tcp's keep-alive setting touches

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop()
        if max_bytes is not None and len(chunk) > max_bytes:
            self.chunks.append(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        return chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sent += data

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut in pieces of ``size`` bytes (1 to 256), as reads would get them."""
    size = size + 1
    return [data[i : i + size] for i in range(0, len(data), size)]


def _records(data: bytes) -> list[bytes]:
    """Pieces of ``data``, each announced by a 2-byte length (the last takes the rest)."""
    pieces = []
    while len(data) >= 2:
        (length,) = _U16.unpack_from(data)
        pieces.append(data[2 : 2 + length])
        data = data[2 + length :]
    return pieces


class _Log(logging.Handler):
    """What the TCP transport logs, kept to be checked."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


#: What may end a connection before or after authentication (tcp's _CONNECTION_ERRORS).
_EXPECTED = (HandshakeError, MalformedMessage, trio.TooSlowError, trio.BrokenResourceError)


def _intro_frame(body: bytes) -> tuple[bytes, Intro | None]:
    """The dialler's intro: ``body`` as a control frame, its MAC put right (under
    ``_SECRET``, for the fixed hello nonce) if it is an intro."""
    try:
        intro = handshake.parse_intro(handshake.parse_control(body))
    except HandshakeError:
        return len(body).to_bytes(4, "big") + body, None
    mac = handshake._mac(_SECRET, intro.role, handshake._intro_transcript(_NONCE_S, intro))
    fields = {"role": intro.role, "name": intro.name, "to": intro.to, "listen": intro.listen}
    return handshake.control_frame({**fields, "nonce": intro.nonce, "mac": mac}), intro


def _dialler_bytes(mode: int, data: bytes) -> bytes:
    """What the dialler sends: ``data`` as it is (modes 0 and 1); or (mode 2) an intro
    whose MAC checks, then records sealed under the keys it leads to."""
    if mode != 2 or len(data) < 2:
        return data
    (length,) = _U16.unpack_from(data)
    intro_bytes, intro = _intro_frame(data[2 : 2 + length])
    if intro is None:
        return intro_bytes + data[2 + length :]
    keys = handshake.traffic_keys(_SECRET, _NONCE_S, intro, "a", dialler=True)
    sealer = RecordSealer(keys.outbound_key, keys.outbound_iv)
    return intro_bytes + b"".join(sealer.seal(p) for p in _records(data[2 + length :]))


async def handshake_listener(data: bytes) -> None:
    """A listener (server ``a``) whose dialler sends ``data[2:]``: without a secret
    (``data[0] % 3 == 0``), with one (1), or with one and an intro whose MAC the harness
    puts right, then sealed records (2). The connection must end once the bytes do,
    with nothing but a refusal or a malformed frame logged."""
    if not data:
        return
    mode, size = data[0] % 3, data[1] if len(data) > 1 else 255
    stream = ScriptedStream(_chunks(_dialler_bytes(mode, data[2:]), size))
    secret = None if mode == 0 else _SECRET
    network = tcp.TcpNetwork(
        "127.0.0.1:0", {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}, secret, None, 1 << 20
    )
    network.register("a")
    log, logger = _Log(), logging.getLogger("trioraft.tcp")
    logger.addHandler(log)
    level, logger.level = logger.level, logging.DEBUG
    propagate, logger.propagate = logger.propagate, False
    hello, handshake.make_hello = handshake.make_hello, _fixed_hello
    try:
        with trio.move_on_after(limits.HANDSHAKE_TIMEOUT + 1) as scope:
            network._unauthenticated += 1  # as the accept loop does, before _handle
            await network._handle(stream)  # type: ignore[arg-type]
    finally:
        handshake.make_hello = hello
        logger.removeHandler(log)
        logger.level, logger.propagate = level, propagate
    assert not scope.cancelled_caught, "the connection outlived its bytes"
    assert network._unauthenticated == 0 and network._counts["connections"] == 0
    for record in log.records:
        error = record.args[0] if isinstance(record.args, tuple) and record.args else None
        assert record.exc_info is None, record.getMessage()
        if isinstance(error, BaseException):
            assert isinstance(error, _EXPECTED), error
    while True:
        try:
            message = network._inbox.receive_nowait()
        except trio.WouldBlock:
            break
        assert message.src and message.src != "a", message
        assert message.dst == "a" or isinstance(message, ClientRequest), message


async def handshake_dialler(data: bytes) -> None:
    """The dialler's side (``client_handshake``) fed ``data[2:]`` as the listener's
    bytes, without a secret (``data[0]`` even) or with one: it ends in success or in a
    HandshakeError or MalformedMessage, and sends nothing but its intro."""
    if not data:
        return
    secret = None if data[0] % 2 == 0 else _SECRET
    size = data[1] if len(data) > 1 else 255
    stream = ScriptedStream(_chunks(data[2:], size))
    framed = FrameStream(stream, 1 << 20)
    try:
        server = await tcp.client_handshake(framed, secret, "peer", "b", "127.0.0.1:2", to="a")
    except (HandshakeError, MalformedMessage):
        pass
    else:
        assert server == "a"
        assert (framed.sealer is not None) == (secret is not None)
    assert len(stream.sent) <= handshake.MAX_HANDSHAKE_FRAME


def _fixed_hello() -> tuple[bytes, bytes]:
    return _NONCE_S, handshake.control_frame({"hello": "trioraft", "version": 2, "nonce": _NONCE_S})


# ----------------------------------------------------------- record layer
def _max_frame(byte: int) -> int:
    return 1 + 16 * byte


def _reference_frames(payload: bytes, max_frame: int) -> tuple[list[bytes], type | None]:
    """The frame bodies a correct reading of ``payload`` finds, and the error it ends
    with (None: a clean end)."""
    bodies, at = [], 0
    while at < len(payload):
        if len(payload) - at < HEADER:
            return bodies, MalformedMessage
        length = int.from_bytes(payload[at : at + HEADER], "big")
        if length > max_frame:
            return bodies, OversizedFrame
        if len(payload) - at - HEADER < length:
            return bodies, MalformedMessage
        bodies.append(payload[at + HEADER : at + HEADER + length])
        at += HEADER + length
    return bodies, None


def records_split(data: bytes) -> None:
    """``split_frames`` finds the frames a reference reading finds, or raises only
    MalformedMessage (OversizedFrame for a frame over the limit)."""
    if not data:
        return
    max_frame, payload = _max_frame(data[0]), data[1:]
    expected, error = _reference_frames(payload, max_frame)
    try:
        bodies = split_frames(payload, max_frame)
    except MalformedMessage as exc:
        assert error is not None and type(exc) is error, (exc, error)
        return
    assert error is None and bodies == expected


async def frame_stream(data: bytes) -> None:
    """``FrameStream.receive`` over a connection sending ``data[3:]``: as plain frames
    (``data[0] % 4 == 0``), cut into records sealed with the opener's key (1), the same
    with one byte altered (2), or as it is to a stream that expects records (3)."""
    if len(data) < 3:
        return
    mode, max_frame, size, rest = data[0] % 4, _max_frame(data[1]), data[2], data[3:]
    expected: list[bytes] = []
    error: type | None = None
    if mode == 0:
        wire_bytes = rest
        expected, error = _reference_frames(rest, max_frame)
    else:
        sealer = RecordSealer(_KEY, _IV)
        pieces = _records(rest) if mode != 3 else []
        wire_bytes = b"".join(sealer.seal(p) for p in pieces) if mode != 3 else rest
        for piece in pieces:
            if len(piece) + TAG > max_frame + HEADER + TAG:
                error = OversizedFrame
                break
            bodies, error = _reference_frames(piece, max_frame)
            if error is not None:
                break  # a record whose frames do not split gives none of them
            expected += bodies
        if mode == 2 and wire_bytes:
            at = int.from_bytes(rest[:2] or b"\0", "big") % len(wire_bytes)
            wire_bytes = wire_bytes[:at] + bytes([wire_bytes[at] ^ 1]) + wire_bytes[at + 1 :]
    stream = ScriptedStream(_chunks(wire_bytes, size))
    framed = FrameStream(stream, max_frame)
    if mode != 0:
        framed.secure(RecordSealer(_KEY, _IV), RecordOpener(_KEY, _IV))
    got: list[bytes] = []
    try:
        while (body := await framed.receive()) is not None:
            assert len(body) <= max_frame
            got.append(body)
    except MalformedMessage as exc:
        ended: type | None = type(exc)
    else:
        ended = None
    if mode in (0, 1):
        assert (got, ended) == (expected, error), (got, ended, expected, error)
    else:
        assert got == expected[: len(got)]


# ---------------------------------------------------------------- running
Target = Callable[[bytes], "Awaitable[None] | None"]

#: Each target by the name of its corpus folder.
TARGETS: dict[str, Target] = {
    "wire_decode": wire_decode,
    "wire_gradually": wire_gradually,
    "handshake_parse": handshake_parse,
    "handshake_listener": handshake_listener,
    "handshake_dialler": handshake_dialler,
    "records_split": records_split,
    "frame_stream": frame_stream,
}


def run(target: Target, data: bytes) -> None:
    """Run ``target`` on ``data`` (an async one in a Trio run of its own, with a virtual
    clock: a deadline passes at once when every task waits)."""
    result = target(data)
    if result is not None:

        async def wait() -> None:
            await result  # type: ignore[misc]

        trio.run(wait, clock=trio.testing.MockClock(autojump_threshold=0))


def signature(exc: BaseException) -> str:
    """A finding's name: the exception's type and where, in trioraft (or in a target),
    it was raised."""
    import traceback

    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if "trioraft" in frame.filename or "fuzz" in frame.filename:
            where = f"{Path(frame.filename).name}:{frame.lineno}"
    return f"{type(exc).__name__}@{where}"


def run_recording(name: str, data: bytes, folder: str | None) -> None:
    """:func:`run` the target ``name`` on ``data``; with a ``folder``, a failure is not
    raised but kept there (``folder/name/signature``, the first input of each), so that
    fuzzing goes on past it."""
    if folder is None:
        run(TARGETS[name], data)
        return
    try:
        run(TARGETS[name], data)
    except Exception as exc:
        where = Path(folder, name)
        where.mkdir(parents=True, exist_ok=True)
        path = where / signature(exc).replace("/", "_")
        if not path.exists():
            path.write_bytes(data)
