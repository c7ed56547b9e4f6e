"""Valid inputs for each target, to start a fuzzer from (``python fuzz/seeds.py DIR``
writes them to ``DIR/<target>/``); the replay test runs them too."""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

from trioraft._core import messages as m
from trioraft._core.messages import Config, Entry, EntryKind
from trioraft._network import handshake, wire
from trioraft._protocol import ClientRequest, ClientResponse

_U16 = struct.Struct(">H")


def _messages() -> list[m.Message]:
    config = Config(voters=("a", "b"), learners=("c",), addresses=(("c", "127.0.0.1:3"),))
    entries = (
        Entry(1, 1, EntryKind.NOOP, None),
        Entry(1, 2, EntryKind.COMMAND, ("set", "k", [1, 2.5, b"v", {"x": None}])),
        Entry(2, 3, EntryKind.CONFIG, config),
    )
    return [
        m.RequestVote(src="b", dst="a", term=3, last_log_index=2, last_log_term=1),
        m.AppendEntries(
            src="b",
            dst="a",
            term=2,
            cluster="c1",
            prev_log_index=0,
            prev_log_term=0,
            entries=entries,
            leader_commit=1,
        ),
        m.AppendResponse(src="b", dst="a", term=2, cluster="c1", success=True, match_index=3),
        ClientRequest(src="cl", dst="a", term=0, request_id=7, op="write", payload=("set", 1)),
        ClientResponse(src="a", dst="cl", term=0, request_id=7, value=[1, (2,)]),
    ]


def _body(message: m.Message) -> bytes:
    return wire.encode(message)[wire.HEADER :]


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def seeds() -> dict[str, list[bytes]]:
    """Each target's seed inputs."""
    bodies = [_body(message) for message in _messages()]
    frames = b"".join(wire.encode(message) for message in _messages()[:2])
    intro = handshake.control_frame(
        {"role": "peer", "name": "b", "to": "a", "listen": "127.0.0.1:2",
         "nonce": bytes(32), "mac": b""}
    )[4:]  # fmt: skip
    client = handshake.control_frame(
        {"role": "client", "name": "cl", "to": "", "listen": "", "nonce": bytes(32), "mac": b""}
    )[4:]
    hello = handshake.control_frame({"hello": "trioraft", "version": 2, "nonce": bytes(32)})[4:]
    answer = handshake.control_frame({"ok": True, "name": "a", "mac": b""})[4:]
    refusal = handshake.refusal("authentication failed")[4:]
    peer_frames = b"".join(wire.encode(message) for message in _messages()[:3])
    request = wire.encode(_messages()[3])
    return {
        "wire_decode": bodies,
        "wire_gradually": bodies,
        "handshake_parse": [hello, intro, client, answer, refusal],
        "handshake_listener": [
            bytes((0, 255)) + len(intro).to_bytes(4, "big") + intro + peer_frames,
            bytes((0, 3)) + len(client).to_bytes(4, "big") + client + request,
            bytes((1, 255)) + len(intro).to_bytes(4, "big") + intro,
            bytes((2, 255))
            + _U16.pack(len(intro))
            + intro
            + _U16.pack(len(peer_frames))
            + peer_frames,
            bytes((2, 255)) + _U16.pack(len(client)) + client + _U16.pack(len(request)) + request,
        ],
        "handshake_dialler": [
            bytes((0, 255)) + _frame(hello) + _frame(answer),
            bytes((1, 9)) + _frame(hello) + _frame(refusal),
        ],
        "records_split": [bytes((255,)) + frames],
        "frame_stream": [
            bytes((0, 255, 255)) + frames,
            bytes((1, 255, 7)) + _U16.pack(len(frames)) + frames + _U16.pack(0),
            bytes((2, 255, 255)) + _U16.pack(len(frames)) + frames,
        ],
    }


def main(folder: str) -> None:
    for target, inputs in seeds().items():
        where = Path(folder, target)
        where.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (where / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    main(sys.argv[1])
