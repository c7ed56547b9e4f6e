"""Encoding of user values (commands, replies, queries, snapshots) as msgpack.

The values trioraft can store on disk or send between processes are msgpack's: ``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, lists, tuples and dicts of these.
Tuples stay tuples and lists stay lists (a tuple travels as a msgpack extension), so a
state machine sees the same values after a restart from disk as before. Anything else
raises :class:`TypeError` naming the type. No pickle, ever.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["decode_value", "encode_value"]

_TUPLE = 1  # msgpack extension code of a tuple


def _default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, _packer().pack(list(obj)))
    raise TypeError(
        f"cannot encode a {type(obj).__module__}.{type(obj).__qualname__}: values stored or "
        "sent by trioraft must be msgpack values (None, bool, int, float, str, bytes, and "
        "lists, tuples and dicts of these)"
    )


def _packer() -> msgpack.Packer:
    return msgpack.Packer(default=_default, strict_types=True, use_bin_type=True)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(decode_value(data))
    raise ValueError(f"unknown msgpack extension type {code}")


def encode_value(value: Any) -> bytes:
    """``value`` as msgpack bytes; :class:`TypeError` naming the type if it is not a
    msgpack value."""
    try:
        packed: bytes = _packer().pack(value)
    except OverflowError as exc:
        raise TypeError(f"cannot encode {value!r}: {exc}") from None
    return packed


def decode_value(data: bytes) -> Any:
    """The value :func:`encode_value` encoded as ``data``; :class:`ValueError` if the
    bytes are not such an encoding."""
    try:
        return msgpack.unpackb(
            data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True
        )
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"not an encoded value: {exc}") from None
