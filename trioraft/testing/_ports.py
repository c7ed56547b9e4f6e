"""Free TCP ports for the servers a test starts, safe from the kernel's source ports."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

__all__ = ["free_tcp_ports"]

#: The lowest port handed out: below it sit the well-known and registered services a
#: developer's machine often runs (databases, web servers).
LOWEST = 20000
#: The kernel's ephemeral range where it cannot be read: Linux's default (IANA's range,
#: 49152-65535, used by macOS and Windows, lies inside it from 49152 on).
_DEFAULT_EPHEMERAL = (32768, 65535)
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range of ephemeral ports (source ports of outgoing connections, and
    what ``bind(0)`` hands out): Linux's ``ip_local_port_range``, else 32768-65535."""
    with contextlib.suppress(OSError, ValueError):
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
        if 0 < low <= high <= 65535:
            return low, high
    return _DEFAULT_EPHEMERAL


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports of ``host`` that are free now, for servers that a
    test starts (and tells each other about) before they listen.

    A port that ``bind(0)`` hands out comes from the kernel's ephemeral range, the
    range it also takes the source port of every outgoing connection from: one server
    dialling another that does not listen yet can take the port meant for a third,
    which then fails with ``Address already in use``. These ports are drawn at random
    outside that range (from 20000 up to it, or above it if it starts too low), and
    each is checked free by binding it. Only another process binding the same port
    between this call and the server's own bind can still take it."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an integer, 0 or more, got {count!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:  # a host of another machine, or none at all: say so, do not try every port
            probe.bind((host, 0))
        except OSError as exc:
            raise OSError(f"cannot bind a TCP port of {host!r}: {exc}") from None
    low, high = ephemeral_port_range()
    candidates = [*range(LOWEST, low), *range(max(high + 1, LOWEST), 65536)]
    if len(candidates) < 4 * count + 16:  # a machine whose ephemeral range is everything
        candidates = list(range(1024, 65536))
    chooser = random.SystemRandom()  # not the tests' seeds: parallel runs must differ
    ports: list[int] = []
    tried: set[int] = set()
    with contextlib.ExitStack() as stack:  # all held until chosen: distinct
        while len(ports) < count and len(tried) < len(candidates):
            port = chooser.choice(candidates)
            if port in tried:
                continue
            tried.add(port)
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            stack.enter_context(sock)
            ports.append(port)
    if len(ports) < count:
        raise OSError(f"found only {len(ports)} free TCP ports of {host}, not {count}")
    return ports
