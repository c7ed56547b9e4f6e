"""Encoding of user values (commands, replies, queries, snapshots) as msgpack.

The values trioraft can store on disk or send between processes are msgpack's: ``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, tuples and dicts of these.
Tuples stay tuples and lists stay lists (a tuple travels as a msgpack extension), so a
state machine sees the same values after a restart from disk as before. Anything else
raises :class:`TypeError` naming the type. No pickle, ever.

Tuples may nest at most :data:`MAX_TUPLE_DEPTH` deep. Each level of a tuple is decoded by
a call of msgpack's C decoder from the level above, and each such call takes tens of
kilobytes of the C stack: a value of a few hundred nested tuples would crash the process
that decodes it (a segmentation fault, not an exception). So a deeper value is refused
where it is encoded (``TypeError``) and where it is decoded (``ValueError``: a frame or
a stored record that holds one is malformed).

Lists, tuples and dicts together may nest at most :data:`MAX_DEPTH` deep. Each tuple's
decoder allows its own 1024 levels of lists, and msgpack's C encoder recurses once per
level: a value of lists inside a few dozen tuples (a frame of 63 KB) decoded, then
crashed the process that encoded it again (found writing the fuzz targets: see
docs/network.rst, "Fuzzing"), and a list a thousand deep has no ``repr``. So a deeper
value is refused where it is encoded and where it is decoded, alike, so that whatever
decodes can be encoded again.
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

__all__ = [
    "MAX_DEPTH",
    "check_value",
    "decode_value",
    "describe",
    "encode_value",
    "nested_too_deep",
    "packer",
    "unpack",
]

_TUPLE = 1  # msgpack extension code of a tuple
#: The deepest nesting of tuples a value may have (lists and dicts do not count).
MAX_TUPLE_DEPTH = 64
#: The deepest nesting of lists, tuples and dicts, together, a value may have.
MAX_DEPTH = 100
_NESTED = (list, tuple, dict)
_local = threading.local()


class _Depth:
    """The tuple levels being encoded or decoded in this thread, bounded."""

    __slots__ = ()

    def __enter__(self) -> None:
        depth = getattr(_local, "depth", 0) + 1
        if depth > MAX_TUPLE_DEPTH:
            raise _TooDeep(f"tuples nested more than {MAX_TUPLE_DEPTH} deep")
        _local.depth = depth

    def __exit__(self, *exc: object) -> None:
        _local.depth -= 1


class _TooDeep(ValueError):
    pass


_depth = _Depth()


def _default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        # A packer of its own: msgpack's packers are not reentrant.
        # A small buffer: msgpack's default of 256 KiB, once per tuple, made a value of
        # 60 nested tuples take 16 MB to encode.
        inner = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True, buf_size=256)
        with _depth:
            return msgpack.ExtType(_TUPLE, inner.pack(list(obj)))
    if type(obj) is int:
        raise TypeError(f"cannot encode the integer {obj}: msgpack integers have 64 bits")
    raise TypeError(
        f"cannot encode a {type(obj).__module__}.{type(obj).__qualname__}: values stored or "
        "sent by trioraft must be msgpack values (None, bool, int, float, str, bytes, and "
        "lists, tuples and dicts of these)"
    )


def packer() -> msgpack.Packer:
    """This thread's packer of user values (tuples kept apart from lists)."""
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)
    return p


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        with _depth:  # before the C decoder is entered once more (see the module's doc)
            value = unpack(data)
        if not isinstance(value, list):
            raise ValueError("a tuple extension must hold a list")
        return tuple(value)
    raise ValueError(f"unknown msgpack extension type {code}")


def unpack(data: bytes) -> Any:
    """Decode msgpack ``data`` (raising msgpack's or :class:`ValueError` on bad input)."""
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def nested_too_deep(value: Any) -> bool:
    """Whether lists, tuples and dicts nest more than :data:`MAX_DEPTH` deep in the
    container ``value``."""
    return not _fits(value, MAX_DEPTH)


def _fits(value: Any, room: int) -> bool:
    # Recursive, but never more than MAX_DEPTH calls deep: it stops where room runs out.
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, tuple) and (room == 1 or not _fits(key, room - 1)):
                return False
        value = value.values()
    for item in value:
        if isinstance(item, _NESTED) and (room == 1 or not _fits(item, room - 1)):
            return False
    return True


def describe(value: Any) -> str:
    """A short description of a decoded value, for an error message: a value from the
    network may be as large as a frame and nested too deep for ``repr``."""
    if isinstance(value, _NESTED):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def encode_value(value: Any) -> bytes:
    """``value`` as msgpack bytes; :class:`TypeError` naming the type if it is not a
    msgpack value (or nests more than :data:`MAX_DEPTH` deep)."""
    try:
        packed: bytes = packer().pack(value)
    except (OverflowError, UnicodeEncodeError) as exc:  # too big an int; lone surrogates
        _local.packer = None  # a failed pack may leave the packer's buffer dirty
        raise TypeError(f"cannot encode {value!r}: {exc}") from None
    except ValueError as exc:  # tuples nested too deep; msgpack's own recursion limit
        _local.packer = None
        raise _too_deep(value, f"nested this deep, or that holds itself ({exc})") from None
    except TypeError:
        _local.packer = None
        raise
    # Each level takes a byte at least: a short value cannot be too deep.
    if len(packed) > MAX_DEPTH and isinstance(value, _NESTED) and nested_too_deep(value):
        raise _too_deep(value, f"nested more than {MAX_DEPTH} deep")
    return packed


def _too_deep(value: Any, how: str) -> TypeError:
    return TypeError(
        f"cannot encode a {type(value).__qualname__} {how}: values stored or sent by "
        f"trioraft must be msgpack values with lists, tuples and dicts nested at most "
        f"{MAX_DEPTH} deep, and tuples nested at most {MAX_TUPLE_DEPTH} deep"
    )


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` encoded as ``data``; :class:`ValueError` if the
    bytes are not such an encoding (or nest more than :data:`MAX_DEPTH` deep)."""
    try:
        value = unpack(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not an encoded value: {exc}") from None
    # Each level takes a byte at least: a short value cannot be too deep.
    if len(data) > MAX_DEPTH and isinstance(value, _NESTED) and nested_too_deep(value):
        raise ValueError(f"not an encoded value: nested more than {MAX_DEPTH} deep")
    return value


def check_value(value: Any) -> None:
    """Raise :class:`TypeError` naming the type if ``value`` is not a msgpack value (what
    a process boundary or a disk needs); the common scalars pass without being packed."""
    kind = type(value)
    if kind is int and -(1 << 63) <= value < (1 << 64):
        return  # the common commands, without packing them once more
    if kind is float or kind is bool or value is None:
        return
    encode_value(value)
