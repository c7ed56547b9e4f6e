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
"""

from __future__ import annotations

import threading
from typing import Any

import msgpack

__all__ = ["check_value", "decode_value", "encode_value", "packer", "unpack"]

_TUPLE = 1  # msgpack extension code of a tuple
#: The deepest nesting of tuples a value may have (lists and dicts do not count).
MAX_TUPLE_DEPTH = 64
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
        inner = msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)
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


def encode_value(value: Any) -> bytes:
    """``value`` as msgpack bytes; :class:`TypeError` naming the type if it is not a
    msgpack value."""
    try:
        packed: bytes = packer().pack(value)
    except (OverflowError, UnicodeEncodeError) as exc:  # too big an int; lone surrogates
        _local.packer = None  # a failed pack may leave the packer's buffer dirty
        raise TypeError(f"cannot encode {value!r}: {exc}") from None
    except ValueError as exc:  # tuples nested too deep; msgpack's own recursion limit
        _local.packer = None
        raise TypeError(
            f"cannot encode a {type(value).__qualname__} nested this deep, or that holds "
            f"itself ({exc}): values "
            "stored or sent by trioraft must be msgpack values with tuples nested at most "
            f"{MAX_TUPLE_DEPTH} deep (lists and dicts: a few hundred)"
        ) from None
    except TypeError:
        _local.packer = None
        raise
    return packed


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` encoded as ``data``; :class:`ValueError` if the
    bytes are not such an encoding."""
    try:
        return unpack(data)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not an encoded value: {exc}") from None


def check_value(value: Any) -> None:
    """Raise :class:`TypeError` naming the type if ``value`` is not a msgpack value (what
    a process boundary or a disk needs); the common scalars pass without being packed."""
    kind = type(value)
    if kind is int and -(1 << 63) <= value < (1 << 64):
        return  # the common commands, without packing them once more
    if kind is float or kind is bool or value is None:
        return
    encode_value(value)
