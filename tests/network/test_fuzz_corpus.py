"""The fuzzers' corpus (fuzz/corpus/<target>/), replayed through every target.

Each input of the corpus, and the seeds the fuzzers start from, goes through its
target (fuzz/targets.py), which asserts the decoders' promises: only MalformedMessage
(wire, records) or HandshakeError (handshake) is raised, whatever decodes re-encodes to
the same message, ``decode_gradually`` agrees with ``decode``, the record layer finds
exactly the frames a reference reading finds, a listener ends a connection once its
bytes end. Here each input also runs under a virtual deadline (no task waits forever)
and tracemalloc (never uses memory far beyond its size). Then each bug found while
fuzzing, a test of its own (docs/network.rst, "Fuzzing").
"""

from __future__ import annotations

import inspect
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import trio

from trioraft import _codec
from trioraft._core import AppendEntries, Entry, EntryKind
from trioraft._core.record import evolve
from trioraft._errors import MalformedMessage
from trioraft._network import handshake, wire
from trioraft._network.handshake import HandshakeError
from trioraft._protocol import ClientRequest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fuzz import seeds, targets  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"
#: Bytes an input may use beyond its size: what decoding a small input costs anyway.
SLACK = 256 * 1024
#: Memory a byte of a frame may take once decoded: one byte of msgpack (an empty list or
#: map) is a Python object of 56 to 64 bytes, with its garbage collector's header and a
#: pointer to it: 88 bytes at most.
DECODED = 88
#: Memory per byte of input a target may use: the round trip holds two decoded copies.
PER_BYTE = 2 * DECODED


def _inputs(target: str) -> Iterator[bytes]:
    yield from seeds.seeds()[target]
    folder = CORPUS / target
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        yield path.read_bytes()


def test_the_corpus_has_every_target_and_is_small() -> None:
    sizes = {t: sum(p.stat().st_size for p in (CORPUS / t).iterdir()) for t in targets.TARGETS}
    assert all(sizes.values()), sizes  # every target has a corpus
    assert sum(sizes.values()) < 512 * 1024


async def _run(name: str, data: bytes) -> None:
    with trio.fail_after(60):  # virtual seconds: a hang fails at once
        result = targets.TARGETS[name](data)
        if inspect.isawaitable(result):
            await result


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
async def test_the_corpus_keeps_the_promises(name: str, autojump_clock: trio.abc.Clock) -> None:
    inputs = list(_inputs(name))
    for data in inputs:
        await _run(name, data)
    # Once more, measured (the first pass imported and cached what any input needs).
    tracemalloc.start()
    try:
        for data in inputs:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            await _run(name, data)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert peak <= SLACK + PER_BYTE * len(data), (name, data[:64], peak)
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- findings
def _nested(depth: int, tuples: int = 0) -> bytes:
    """msgpack of ``1`` inside ``depth`` lists, those inside ``tuples`` levels of tuples
    (each again holding ``depth`` lists)."""
    packed = b"\x91" * depth + b"\x01"
    for _ in range(tuples):
        packed = msgpack.packb(msgpack.ExtType(1, b"\x91" * depth + packed))
    return packed


def _request(payload: bytes) -> bytes:
    """The body of a ClientRequest frame whose payload is the msgpack ``payload``."""
    head = msgpack.packb([20, "cl", "a", 0, "", 7, "write", 0, 0, 0])
    return bytes((wire.VERSION, 0x9B)) + head[1:] + payload


def _decodes_alike(body: bytes) -> object:
    """What ``decode`` and ``decode_gradually`` make of ``body`` (they must agree)."""
    try:
        decoded: object = wire.decode(body)
    except MalformedMessage as exc:
        decoded = type(exc)
    try:
        gradually: object = trio.run(wire.decode_gradually, body)
    except MalformedMessage as exc:
        gradually = type(exc)
    assert decoded == gradually
    return decoded


def test_a_field_nested_a_thousand_deep_is_malformed_not_a_recursion_error() -> None:
    """Found by the fuzzers: the error message of a field of the wrong type held its
    repr, and a list nested ~1000 deep has none (RecursionError, not MalformedMessage)."""
    head = msgpack.packb([1, "b", "a", 3, ""])  # a RequestVote whose last_log_index is:
    body = bytes((wire.VERSION, 0x99)) + head[1:] + _nested(1000) + b"\x01\xc2\xc2"
    assert _decodes_alike(body) is MalformedMessage
    bad_kind = bytes((wire.VERSION, 0x99)) + msgpack.packb([3, "b", "a", 3, "", 0, 0])[1:]
    body = bad_kind + b"\x91\x94\x01\x01" + _nested(1000) + b"\xc0\x00\x00"  # an entry's kind
    assert _decodes_alike(body) is MalformedMessage


def test_a_handshake_field_nested_a_thousand_deep_is_a_handshake_error() -> None:
    body = bytes((1, 0x82)) + msgpack.packb("hello") + msgpack.packb("trioraft")
    body += msgpack.packb("version") + _nested(1000)
    with pytest.raises(HandshakeError):
        handshake.parse_hello(handshake.parse_control(body))
    role = bytes((1, 0x81)) + msgpack.packb("role") + _nested(1000)
    with pytest.raises(HandshakeError):
        handshake.parse_intro(handshake.parse_control(role))


def test_user_values_nested_past_the_limit_are_malformed() -> None:
    """Found by reading the round trip's failures: a command of lists inside tuples
    decoded, each tuple a fresh msgpack decoder of up to 1024 levels; re-encoding it (to
    the log, to the followers) crashed the process in msgpack's recursive C encoder
    (a segmentation fault) from a frame of 63 KB, and lists ~1000 deep broke ``repr``
    and ``==``. Every value now nests at most MAX_DEPTH deep, encoded or decoded."""
    limit = _codec.MAX_DEPTH
    assert _decodes_alike(_request(_nested(1000, tuples=62))) is MalformedMessage
    assert _decodes_alike(_request(_nested(limit + 1))) is MalformedMessage
    assert _decodes_alike(_request(_nested(limit // 2 + 1, tuples=1))) is MalformedMessage
    fine = _decodes_alike(_request(_nested(limit)))
    assert isinstance(fine, ClientRequest)
    assert wire.decode(wire.encode(fine)[wire.HEADER :]) == fine
    with pytest.raises(ValueError):
        _codec.decode_value(_nested(1000, tuples=62))
    entry = b"\x94\x01\x01\x01" + _nested(limit + 1)  # as an entry's command
    head = msgpack.packb([3, "b", "a", 3, "", 0, 0])[1:]
    body = bytes((wire.VERSION, 0x99)) + head + b"\x91" + entry + b"\x00\x00"
    assert _decodes_alike(body) is MalformedMessage


def test_what_cannot_be_decoded_cannot_be_encoded() -> None:
    limit = _codec.MAX_DEPTH
    value: object = 1
    for depth in range(limit):
        value = [value] if depth % 2 else (value,)
    assert _codec.decode_value(_codec.encode_value(value)) == value
    keyed: object = {((((),),),): 1}  # keys count: 5 deep
    for _ in range(limit - 5):
        keyed = [keyed]
    assert _codec.decode_value(_codec.encode_value(keyed)) == keyed
    for deeper in ([value], (value,), {"k": value}, [keyed]):
        with pytest.raises(TypeError, match=f"nested more than {limit} deep"):
            _codec.encode_value(deeper)


def test_encoding_nested_tuples_takes_little_memory() -> None:
    """Found by the corpus replay's memory check: each tuple was encoded by a packer of
    its own with a buffer of 256 KiB, so a command of 60 nested tuples (a few hundred
    bytes) took 16 MB to encode."""
    value: object = 1
    for _ in range(60):
        value = (value,)
    _codec.encode_value(value)
    tracemalloc.start()
    try:
        _codec.encode_value(value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize("fill", [b"\x80", b"\x90", b"\xc0", b"\x91\x80"])
def test_decoding_takes_memory_in_proportion_to_the_frame(fill: bytes) -> None:
    """The worst a frame can do: items of one byte each (an empty map, an empty list),
    each decoded to an object of its own. 32 KiB of them take at most DECODED bytes
    each, once decoded, and no more while decoding."""
    count = (32 * 1024) // len(fill)
    payload = b"\xdd" + count.to_bytes(4, "big") + fill * count
    body = _request(payload)
    wire.decode(body)
    tracemalloc.start()
    try:
        message = wire.decode(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(message.payload) == count  # type: ignore[attr-defined]
    assert peak <= DECODED * len(body) + SLACK


def test_an_append_entries_without_entries_crosses_the_wire() -> None:
    """Found by atheris (the round trip of ``wire_decode``, from the seeded corpus with
    the dictionary): an AppendEntries with no entries, which a leader sends to probe a
    follower whose log may already end where the leader's does, went out with its empty
    entries as an empty *tuple* (msgpack's extension), which the decoder refuses: the
    follower closed the connection as if the frame were forged, and the probe was lost."""
    message = AppendEntries("a", "b", 3, 7, 2, (), 5, 1, cluster="c1")
    frame = wire.encode(message)
    assert wire.decode(frame[wire.HEADER :]) == message
    assert trio.run(wire.decode_gradually, frame[wire.HEADER :]) == message
    with_entries = evolve(message, entries=(Entry(2, 8, EntryKind.COMMAND, ()),))
    assert wire.decode(wire.encode(with_entries)[wire.HEADER :]) == with_entries
