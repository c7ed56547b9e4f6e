"""What every command of the command line shares: its errors, and reading its arguments
(JSON values, secret files, TLS files, addresses)."""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from .._network.tcp import parse_address

#: Exit status of a command that ran into a problem (the cluster, the disk, the server).
RUNTIME_ERROR = 1
#: Exit status of a command whose words are wrong (an argument, a file it names).
USAGE_ERROR = 2


class CommandError(Exception):
    """A problem met while running (unreachable cluster, no leader, a server that
    failed): reported in one line, exit status 1."""

    status = RUNTIME_ERROR


class UsageError(CommandError):
    """A problem with the command's own words (a bad argument, a file it names that
    cannot be read): reported in one line, exit status 2."""

    status = USAGE_ERROR


def say(text: str) -> None:
    """Print a line now (the output of a server goes to a log that is read as it grows)."""
    print(text, flush=True)


def complain(text: str) -> None:
    """Print an error line on stderr."""
    print(f"error: {text}", file=sys.stderr, flush=True)


def json_value(text: str, what: str) -> Any:
    """``text`` as JSON, or a :class:`UsageError` naming ``what``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc.msg}): {text!r}") from None


def secret(path: str | None) -> bytes | None:
    """The secret in ``--secret-file`` (surrounding whitespace stripped)."""
    if path is None:
        return None
    try:
        value = Path(path).read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the secret file {path!r}: {exc.strerror}") from None
    if not value:
        raise UsageError(f"the secret file {path!r} is empty")
    return value


def address(text: str, what: str) -> str:
    """A ``HOST:PORT`` argument, checked."""
    try:
        parse_address(text)
    except ValueError:
        raise UsageError(f"{what} takes HOST:PORT, got {text!r}") from None
    return text


def cluster(text: str) -> list[str]:
    """``--cluster HOST:PORT[,HOST:PORT...]``, in order, without repeats."""
    addresses = list(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    if not addresses:
        raise UsageError("--cluster takes HOST:PORT[,HOST:PORT...]")
    return [address(a, "--cluster") for a in addresses]


def _tls_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"the {what} file {path!r} does not exist")
    return path


def tls(ca: str | None, cert: str | None, key: str | None, *, serving: bool) -> Any:
    """The ``ssl_context`` of ``--tls-ca``/``--tls-cert``/``--tls-key`` (``None`` without
    them). ``serve`` needs the CA and its certificate, and asks every peer and client for
    a certificate the CA signed (mutual TLS); a client command needs the CA (to check the
    servers) and, for servers that ask, its own certificate."""
    if ca is None and cert is None and key is None:
        return None
    if ca is None or (serving and cert is None):
        needed = "--tls-ca and --tls-cert" if serving else "--tls-ca"
        raise UsageError(f"TLS needs {needed} (PEM files)")
    if key is not None and cert is None:
        raise UsageError("--tls-key goes with --tls-cert")
    ca = _tls_file(ca, "--tls-ca")
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
        server.verify_mode = ssl.CERT_REQUIRED  # mutual: the other end shows a certificate
        if cert is not None:
            cert = _tls_file(cert, "--tls-cert")
            key = None if key is None else _tls_file(key, "--tls-key")
            client.load_cert_chain(cert, key)
            server.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise UsageError(f"cannot use the TLS files: {exc.reason or exc}") from None
    return (server, client) if serving else client


def role_name(role: str) -> str:
    """A role as ``serve`` prints it (``pre-candidate``), from its enum name or value."""
    return role.lower().replace("_", "-")


def leaf(exc: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


def listen_error(where: str, exc: OSError) -> str:
    """Why listening on ``where`` failed, in words (Python said "[Errno 98] cannot
    listen on ...: [Errno 98] Address already in use")."""
    code = exc.errno or 0
    if code == errno.EADDRINUSE:
        why = "the address is in use (another server running there?)"
    elif code == errno.EADDRNOTAVAIL:
        why = "no network interface of this machine has that address"
    elif code == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
    elif code < 0 or isinstance(exc, socket.gaierror):
        why = "unknown host"
    else:
        why = os.strerror(code).lower() if code else str(exc)
    return f"cannot listen on {where}: {why}"
