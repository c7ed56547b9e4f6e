"""The wire format: messages as length-prefixed msgpack frames, decoded with checks.

A frame is a 4-byte big-endian length, then that many bytes: a version byte
(:data:`VERSION`) and a msgpack array ``[type code, field, field, ...]`` with the
message's fields in declaration order. Entries travel as ``[term, index, kind, data]``,
configurations as ``[voters, learners]``, user values (commands, replies, queries) as
:mod:`trioraft._codec` values (tuples stay tuples). No pickle anywhere.

Decoding checks every field against the message class's declared type: a frame that is
not exactly a well-formed message raises :class:`~trioraft.MalformedMessage`, and nothing
else (the fuzz test feeds it random and mutated bytes).
"""

from __future__ import annotations

import operator
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack
import trio

from .._codec import _NESTED, _ext_hook, describe, nested_too_deep, packer, unpack
from .._core import messages as m
from .._core.messages import Config, Entry, EntryKind, Message
from .._errors import MalformedMessage
from .._protocol import OPS, ClientRequest, ClientResponse

__all__ = ["HEADER", "VERSION", "decode", "decode_gradually", "encode", "frame_length"]

#: The version byte of every frame.
VERSION = 1
#: Bytes of the length prefix.
HEADER = 4
_LENGTH = struct.Struct(">I")

_TYPES: dict[int, type[Message]] = {
    1: m.RequestVote,
    2: m.VoteResponse,
    3: m.AppendEntries,
    4: m.AppendResponse,
    5: m.Heartbeat,
    6: m.HeartbeatResponse,
    7: m.TimeoutNow,
    8: m.ClusterMismatch,
    9: m.InstallSnapshot,
    10: m.InstallSnapshotResponse,
    11: m.ReadIndexRequest,
    12: m.ReadIndexResponse,
    20: ClientRequest,
    21: ClientResponse,
}
_CODES = {cls: code for code, cls in _TYPES.items()}
_KIND_CODES = {
    EntryKind.NOOP: 0,
    EntryKind.COMMAND: 1,
    EntryKind.CONFIG: 2,
    EntryKind.SESSION: 3,
    EntryKind.CLIENT: 4,
}
_KINDS = {v: k for k, v in _KIND_CODES.items()}
_COMMAND_CODE = _KIND_CODES[EntryKind.COMMAND]


class _Bad(Exception):
    pass


# ------------------------------------------------------------------ encoding
def _config_out(config: Config) -> list[Any]:
    return config.as_list()


def _entry_out(entry: Entry) -> list[Any]:
    data = entry.data
    if entry.kind is EntryKind.CONFIG:
        data = _config_out(data)
    return [entry.term, entry.index, _KIND_CODES[entry.kind], data]


def _entries_out(entries: tuple[Entry, ...]) -> list[Any]:
    # By the field, not by the value's looks: no entries is an empty list too (an empty
    # tuple would travel as msgpack's tuple extension, which the decoder refuses).
    return [_entry_out(e) for e in entries]


class _EntriesCache:
    """The packed bytes of the last batch of entries encoded. A leader sends the same
    batch to every follower, so the entries of one AppendEntries are encoded once, not
    once per follower. A batch is the same only if it holds the very same entry objects
    (log entries are immutable), so a hit can never send other entries. The batch and
    its bytes are kept as one tuple, read and replaced at once (threads of other Trio
    runs may encode too)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[tuple[Entry, ...], bytes] = ((), b"")

    def pack(self, entries: tuple[Entry, ...], p: msgpack.Packer) -> bytes:
        cached, packed = self.last
        if len(cached) == len(entries) and all(
            a is b for a, b in zip(cached, entries, strict=True)
        ):
            return packed
        command, code = EntryKind.COMMAND, _COMMAND_CODE  # the common kind, inline
        fresh: bytes = p.pack(
            [
                [e.term, e.index, code, e.data] if e.kind is command else _entry_out(e)
                for e in entries
            ]
        )
        self.last = (entries, fresh)
        return fresh


_ENTRIES = _EntriesCache()


def encode(message: Message) -> bytes:
    """The frame (length prefix included) of ``message``. Raises :class:`TypeError` if
    it carries a value that is not a msgpack value (naming its type)."""
    code = _CODES.get(type(message))
    if code is None:
        raise MalformedMessage(f"not a message that can be sent: {message!r}")
    p = packer()
    if type(message) is m.AppendEntries and message.entries:
        names = _FIELDS[m.AppendEntries]
        parts = [p.pack_array_header(len(names) + 1), p.pack(code)]
        for name in names:
            value = getattr(message, name)
            parts.append(_ENTRIES.pack(value, p) if name == "entries" else p.pack(value))
        body = b"".join(parts)
    else:
        fields = [code, *_GETTERS[type(message)](message)]
        for i, out in _CONVERTED[type(message)]:
            fields[i] = out(fields[i])
        body = p.pack(fields)
    return _LENGTH.pack(len(body) + 1) + bytes((VERSION,)) + body


def frame_length(header: bytes) -> int:
    """The length of the frame body announced by a 4-byte ``header``."""
    (length,) = _LENGTH.unpack(header)
    return int(length)


# ------------------------------------------------------------------ decoding
#: Integers on the wire (terms, indexes, ids, counts) are below 2**63 - 1: what a
#: signed 64-bit field holds, less one, so that a term or an index on the wire can
#: always be followed by another (a term of 2**63 - 1 would leave no next election).
_LIMIT = 2**63 - 1


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _LIMIT:
        raise _Bad(f"expected a non-negative integer, got {describe(value)}")
    return value


def _of_type(kind: type, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            raise _Bad(f"expected {what}, got a {type(value).__name__}")
        return value

    return check


_bool = _of_type(bool, "a boolean")
_str = _of_type(str, "a string")
_bytes = _of_type(bytes, "bytes")


def _any(value: Any) -> Any:
    # A user value: whatever msgpack (and the tuple extension) decoded, nested no deeper
    # than the codec encodes (see trioraft._codec.MAX_DEPTH).
    if isinstance(value, _NESTED) and nested_too_deep(value):
        raise _Bad("a value nested too deep")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise _Bad(f"expected a list of server names, got {describe(value)}")
    return tuple(value)


def _config(value: Any) -> Config:
    if not isinstance(value, list) or len(value) not in (3, 4):
        raise _Bad(
            "expected a configuration [voters, learners, addresses(, outgoing)], got "
            f"{describe(value)}"
        )
    voters, learners, addresses = value[:3]
    outgoing = _names(value[3]) if len(value) == 4 else None
    if not isinstance(addresses, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) and x for x in p)
        for p in addresses
    ):
        raise _Bad(f"expected a list of [name, address] pairs, got {describe(addresses)}")
    try:
        return Config(
            voters=_names(voters), learners=_names(learners), addresses=addresses, outgoing=outgoing
        )
    except ValueError as exc:
        raise _Bad(str(exc)) from None


class _Checked:
    """Entries already checked (by :func:`decode_gradually`, a piece at a time)."""

    __slots__ = ("entries",)

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self.entries = entries


def _entries(value: Any) -> tuple[Entry, ...]:
    if type(value) is _Checked:
        return value.entries
    if not isinstance(value, list):
        raise _Bad(f"expected a list of entries, got {type(value).__name__}")
    out = []
    kinds = _KINDS
    expected = -1
    for item in value:
        if type(item) is not list or len(item) != 4:
            raise _Bad(f"expected an entry [term, index, kind, data], got {describe(item)}")
        term, index, code, data = item
        plain = type(term) is int and type(index) is int  # not a bool, not something else
        if not (plain and 0 <= term < _LIMIT and 0 <= index < _LIMIT):
            term, index = _int(term), _int(index)  # raises, naming the problem
        kind = kinds.get(code) if type(code) is int else None
        if kind is None:
            raise _Bad(f"unknown entry kind {describe(code)}")
        if kind is EntryKind.CONFIG:
            data = _config(data)
        elif isinstance(data, _NESTED):
            data = _any(data)
        if index != expected and expected >= 0:
            raise _Bad("entries are not consecutive")
        expected = index + 1
        out.append(Entry(term, index, kind, data))
    return tuple(out)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None else check(value)

    return optional


_CHECKS: dict[Any, Callable[[Any], Any]] = {
    int: _int,
    bool: _bool,
    str: _str,
    bytes: _bytes,
    Config: _config,
    typing.Any: _any,
}


def _check_for(annotation: Any) -> Callable[[Any], Any]:
    if annotation in _CHECKS:
        return _CHECKS[annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple and args and args[0] is Entry:
        return _entries
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _optional(_check_for(inner))
    raise TypeError(f"no wire check for {annotation!r}")


_FIELDS: dict[type[Message], tuple[str, ...]] = {
    cls: tuple(name for name, _ in cls.FIELDS) for cls in _CODES
}
_SPECS: dict[type[Message], list[Callable[[Any], Any]]] = {}
#: Each type's fields in one C call (a tuple, in the order of _FIELDS).
_GETTERS: dict[type[Message], Callable[[Message], tuple[Any, ...]]] = {}
#: Where a frame of each type holds a field that needs converting (configurations,
#: entries), counting the type code as 0, and the conversion.
_CONVERTED: dict[type[Message], tuple[tuple[int, Callable[[Any], Any]], ...]] = {}
_OUT: dict[Callable[[Any], Any], Callable[[Any], Any]] = {
    _entries: _entries_out,
    _config: _config_out,
}
for _cls in _CODES:
    _hints = dict(_cls.FIELDS)
    _SPECS[_cls] = [_check_for(_hints[name]) for name in _FIELDS[_cls]]
    _GETTERS[_cls] = operator.attrgetter(*_FIELDS[_cls])
    _CONVERTED[_cls] = tuple(
        (i + 1, _OUT[check]) for i, check in enumerate(_SPECS[_cls]) if check in _OUT
    )
    # A frame lists src, dst, term, cluster, then the type's own fields; the constructor
    # takes cluster by keyword (decode relies on it).
    assert _FIELDS[_cls][:4] == ("src", "dst", "term", "cluster"), _cls


def _validate(message: Message) -> None:
    if not message.src or not message.dst:
        raise _Bad("a message names its sender and its addressee")
    if isinstance(message, ClientRequest) and message.op not in OPS:
        raise _Bad(f"unknown client operation {describe(message.op)}")
    if isinstance(message, m.InstallSnapshot) and message.offset + len(message.data) > message.size:
        raise _Bad("a chunk runs past the size of its snapshot")


def decode(body: bytes) -> Message:
    """The message of a frame ``body`` (without the length prefix). Raises
    :class:`~trioraft.MalformedMessage` naming the problem, and nothing else."""
    _check_version(body)
    try:
        fields = unpack(body[1:])
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedMessage(f"not msgpack: {exc}") from None
    except Exception as exc:  # msgpack raises a few others on hostile input
        raise MalformedMessage(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(fields, list) or not fields:
        raise MalformedMessage("a frame holds a list: [type, fields...]")
    cls = _type_of(fields[0])
    _check_arity(cls, len(fields))
    return _build(cls, fields[1:])


def _check_version(body: bytes) -> None:
    if not body:
        raise MalformedMessage("empty frame")
    if body[0] != VERSION:
        raise MalformedMessage(f"frame of wire version {body[0]}, expected {VERSION}")


def _type_of(code: Any) -> type[Message]:
    cls = _TYPES.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if cls is None:
        raise MalformedMessage(f"unknown message type {describe(code)}")
    return cls


def _check_arity(cls: type[Message], length: int) -> None:
    specs = _SPECS[cls]
    if length != len(specs) + 1:
        raise MalformedMessage(
            f"{cls.__name__} has {len(specs)} fields, the frame holds {length - 1}"
        )


def _build(cls: type[Message], raw: list[Any]) -> Message:
    try:
        values = [check(value) for check, value in zip(_SPECS[cls], raw, strict=True)]
        message = cls(*values[:3], *values[4:], cluster=values[3])
        _validate(message)
    except (_Bad, ValueError, TypeError) as exc:
        raise MalformedMessage(f"bad {cls.__name__}: {exc}") from None
    return message


#: Entries decoded between two checkpoints by :func:`decode_gradually`.
_STEP = 512


async def decode_gradually(body: bytes) -> Message:
    """:func:`decode` for a large frame, a field (and an entry) at a time, with a Trio
    checkpoint between pieces: other tasks (heartbeats, elections) run while it decodes,
    where one call of msgpack's decoder would hold the thread for the whole frame. The
    frame's shape is checked before its fields are decoded."""
    _check_version(body)
    unpacker = msgpack.Unpacker(
        ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True,
        max_buffer_size=len(body),
    )  # fmt: skip
    unpacker.feed(memoryview(body)[1:])
    try:
        length = unpacker.read_array_header()
        cls = _type_of(unpacker.unpack()) if length else None
        if cls is None:
            raise MalformedMessage("a frame holds a list: [type, fields...]")
        _check_arity(cls, length)
        raw = []
        for check in _SPECS[cls]:
            if check is _entries:
                raw.append(await _entries_gradually(unpacker))
            else:
                raw.append(unpacker.unpack())
            await trio.lowlevel.checkpoint()
        if unpacker.tell() != len(body) - 1:
            raise MalformedMessage("extra bytes after the message")
    except MalformedMessage:
        raise
    except Exception as exc:  # what msgpack raises on hostile input, and _Bad
        raise MalformedMessage(f"not a message: {type(exc).__name__}: {exc}") from None
    return _build(cls, raw)


async def _entries_gradually(unpacker: msgpack.Unpacker) -> _Checked:
    count = unpacker.read_array_header()
    out: list[Entry] = []
    while len(out) < count:
        chunk = [unpacker.unpack() for _ in range(min(_STEP, count - len(out)))]
        checked = _entries(chunk)
        if out and checked and checked[0].index != out[-1].index + 1:
            raise _Bad("entries are not consecutive")
        out.extend(checked)
        await trio.lowlevel.checkpoint()
    return _Checked(tuple(out))
