"""Frames over a byte stream, and the authenticated record layer beneath them.

A frame is a 4-byte big-endian length and that many bytes (see
:mod:`trioraft._network.wire`). Without a secret, frames travel as they are. With one,
once the handshake has given each direction its key (:mod:`.handshake`), frames travel
inside *records*, as in TLS 1.3 (RFC 8446 §5.2): a 4-byte length, then one or more whole
frames sealed with AES-256-GCM, the tag last. A record's nonce is its direction's IV
XORed with its sequence number (RFC 8446 §5.3), counted from 0 on each connection and
never sent, and its length prefix is the AEAD's associated data. So a forged, altered,
replayed, reordered, dropped-and-spliced or reflected record fails to open, and closes
the connection (:class:`~trioraft.MalformedMessage`). One record usually carries every
frame a send had queued: one seal per send, not per message or per entry.
"""

from __future__ import annotations

import struct

import trio

from .._errors import MalformedMessage

__all__ = [
    "HEADER",
    "TAG",
    "FrameStream",
    "OversizedFrame",
    "RecordOpener",
    "RecordSealer",
    "split_frames",
]

#: Bytes of a frame's (and a record's) length prefix.
HEADER = 4
#: Bytes of a record's authentication tag.
TAG = 16
_LENGTH = struct.Struct(">I")


class OversizedFrame(MalformedMessage):
    """A frame (or record) longer than the stream's limit."""


class _Direction:
    """One direction of a connection: its AEAD key, its IV, its next sequence number."""

    __slots__ = ("_aead", "_invalid", "_iv_high", "_iv_low", "_seq")

    def __init__(self, key: bytes, iv: bytes) -> None:
        # Imported when a secret is first used: a cluster without one never loads it.
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        self._invalid: type[Exception] = InvalidTag
        # The 64-bit sequence number is XORed into the IV's last 8 bytes (RFC 8446 §5.3).
        self._iv_high = iv[:4]
        self._iv_low = int.from_bytes(iv[4:], "big")
        self._seq = 0

    def _nonce(self) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        return self._iv_high + (self._iv_low ^ seq).to_bytes(8, "big")


class RecordSealer(_Direction):
    """Seals payloads (whole frames) into records, for one direction of a connection."""

    __slots__ = ()

    def seal(self, payload: bytes) -> bytes:
        """The record (length prefix included) carrying ``payload``."""
        header = _LENGTH.pack(len(payload) + TAG)
        return header + self._aead.encrypt(self._nonce(), payload, header)


class RecordOpener(_Direction):
    """Opens the records of one direction of a connection, in order."""

    __slots__ = ()

    def open(self, header: bytes, body: bytes) -> bytes:
        """The payload of the record ``header + body``; :class:`MalformedMessage` if it
        is not the next record this direction sealed."""
        seq = self._seq
        try:
            payload: bytes = self._aead.decrypt(self._nonce(), body, header)
        except (self._invalid, ValueError):
            self._seq = seq  # nothing consumed: the connection closes anyway
            raise MalformedMessage(
                "a record failed authentication (forged, altered, replayed or out of order)"
            ) from None
        return payload


def split_frames(payload: bytes, max_frame: int) -> list[bytes]:
    """The bodies of the whole frames that make up ``payload``;
    :class:`MalformedMessage` if it ends inside a frame, :class:`OversizedFrame` if a
    frame is over ``max_frame``."""
    bodies = []
    at, end = 0, len(payload)
    while at < end:
        if end - at < HEADER:
            raise MalformedMessage("a record ends inside a frame's header")
        (length,) = _LENGTH.unpack_from(payload, at)
        if length > max_frame:
            raise OversizedFrame(f"a frame of {length} bytes is over max_frame={max_frame}")
        at += HEADER
        if end - at < length:
            raise MalformedMessage("a record ends inside a frame")
        bodies.append(payload[at : at + length])
        at += length
    return bodies


class FrameStream:
    """Frames over a byte stream: ``send`` one or more, ``receive`` the next (``None`` at
    EOF). ``max_frame`` bounds what is read (a frame body, or a record's frames); after
    :meth:`secure`, frames travel in sealed records."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self._buffer = bytearray()
        #: Frame bodies opened from records, not yet received.
        self._opened: list[bytes] = []
        self.sealer: RecordSealer | None = None
        self._opener: RecordOpener | None = None

    def secure(self, sealer: RecordSealer, opener: RecordOpener) -> None:
        """From now on, frames travel in records sealed by ``sealer`` and opened by
        ``opener`` (both directions' keys from the handshake)."""
        self.sealer, self._opener = sealer, opener

    async def _fill(self, n: int) -> bool:
        """Read until at least ``n`` bytes are buffered; ``False`` at a clean end of
        stream (nothing buffered), :class:`MalformedMessage` at one inside a frame."""
        buffer = self._buffer
        while len(buffer) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(buffer)))
            if not chunk:
                if buffer:
                    raise MalformedMessage("the connection closed in the middle of a frame")
                return False
            buffer += chunk
        return True

    def has_frame(self) -> bool:
        """Whether a whole frame is already here (``receive`` returns it at once)."""
        if self._opened:
            return True
        buffer = self._buffer
        if len(buffer) < HEADER:
            return False
        length: int = _LENGTH.unpack_from(buffer)[0]
        return len(buffer) >= HEADER + length

    async def _read_unit(self) -> tuple[bytes, bytes] | None:
        """The next length-prefixed unit (a frame, or a record): header and body. Reads
        the stream only for what is not buffered yet (one read brings a whole record, or
        several, most of the time)."""
        buffer = self._buffer
        if len(buffer) < HEADER and not await self._fill(HEADER):
            return None
        (length,) = _LENGTH.unpack_from(buffer)
        limit = self.max_frame if self._opener is None else self.max_frame + HEADER + TAG
        if length > limit:
            what = "frame" if self._opener is None else "record"
            raise OversizedFrame(f"a {what} of {length} bytes is over max_frame={self.max_frame}")
        end = HEADER + length
        if len(buffer) < end:
            await self._fill(end)  # raises if the stream ends first: a frame was begun
        header, body = bytes(buffer[:HEADER]), bytes(buffer[HEADER:end])
        del buffer[:end]
        return header, body

    async def receive(self) -> bytes | None:
        """The next frame's body; ``None`` at a clean end of stream. Raises
        :class:`OversizedFrame` or :class:`~trioraft.MalformedMessage`."""
        while not self._opened:
            unit = await self._read_unit()
            if unit is None:
                return None
            if self._opener is None:
                return unit[1]
            self._opened = split_frames(self._opener.open(*unit), self.max_frame)
            self._opened.reverse()
        return self._opened.pop()

    def seal(self, frames: bytes) -> bytes:
        """``frames`` (whole frames, prefixes included) as they go on the wire: as they
        are, or in one record."""
        sealer = self.sealer
        return frames if sealer is None else sealer.seal(frames)

    def seal_batch(self, frames: list[bytes]) -> bytes:
        """Whole frames (prefixes included) as they go on the wire: joined as they are,
        or in as few records as keep each record's frames within ``max_frame``."""
        sealer = self.sealer
        if sealer is None:
            return b"".join(frames)
        records: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for frame in frames:
            if group and size + len(frame) > self.max_frame:
                records.append(sealer.seal(b"".join(group)))
                group, size = [], 0
            group.append(frame)
            size += len(frame)
        if size:
            records.append(sealer.seal(b"".join(group)))
        return b"".join(records)

    async def send(self, frames: bytes) -> None:
        """Send whole frames (length prefixes included)."""
        await self.stream.send_all(self.seal(frames))
