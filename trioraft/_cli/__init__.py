"""The command line: ``trioraft`` (or ``python -m trioraft``) ``serve``, ``status``,
``write``, ``read``, ``add``, ``remove`` and ``transfer``."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import trio

from .._errors import AuthenticationFailed
from .._storage import StorageError
from .client import client_command
from .common import RUNTIME_ERROR, USAGE_ERROR, CommandError, complain, leaf
from .logs import LEVELS
from .serve import serve

__all__ = ["DEFAULT_TIMEOUT", "main", "parser"]

#: Seconds a client command may take, by default.
DEFAULT_TIMEOUT = 10.0

DESCRIPTION = """\
Run a trioraft server, or talk to a running cluster. Start each server with serve; then
status, write, read, add, remove and transfer act on the cluster. Run
"%(prog)s COMMAND --help" for a command's options.
"""

EPILOG = """\
Exit status: 0 done; 1 the command met a problem (the cluster cannot be reached or has
no leader, the server failed, the disk); 2 the command's words are wrong (an argument,
a JSON value, a file it names); 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line like every other error of the command line
    (not a usage block first); ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {self.prog}: {message} (see --help)\n")


def _seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _tls_arguments(parser: argparse.ArgumentParser, *, serving: bool) -> None:
    who = "peers and clients" if serving else "the servers"
    parser.add_argument("--tls-ca", metavar="FILE", help=f"PEM: the CA that signs {who}")
    mine = "this server's" if serving else "this client's"
    parser.add_argument(
        "--tls-cert", metavar="FILE", help=f"PEM: {mine} certificate chain (and key)"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM: the key, if not in --tls-cert")


def _serve_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run one server until Ctrl-C or SIGTERM",
        description="Run one server on TCP with its log in --data-dir, until Ctrl-C or "
        "SIGTERM. Its configuration at first start is itself and its --peer servers.",
    )
    add = serve.add_argument
    add("--name", required=True, help="this server's name, unique in the cluster")
    add("--listen", required=True, metavar="HOST:PORT", help="where this server listens")
    add("--peer", action="append", metavar="NAME=HOST:PORT",
        help="another server of the cluster, where it listens; repeatable")  # fmt: skip
    add("--machine", required=True, metavar="MODULE:ATTRIBUTE",
        help="the state machine class, imported from the current directory "
        "(examples.counter:Counter)")  # fmt: skip
    add("--init-arg", metavar="JSON", help="the argument of the state machine's constructor")
    add("--data-dir", required=True, metavar="DIR",
        help="the server's log and snapshots (made if missing; remembers --machine)")  # fmt: skip
    add("--secret-file", metavar="FILE", help="a file holding the cluster's shared secret")
    add("--client-secret-file", metavar="FILE",
        help="a file holding the clients' secret: clients prove it instead of the cluster's "
        "(which then authenticates only servers and administrators)")  # fmt: skip
    add("--learner", action="store_true",
        help="start in no configuration and wait until a leader adds it: how to start a "
        "server for 'add' (then no --peer is needed)")  # fmt: skip
    add("--option", action="append", metavar="NAME=JSON",
        help="a server option, its value as JSON (min_election_timeout=1.0, "
        "follower_reads=true, snapshot_threshold=50000); repeatable")  # fmt: skip
    add("--metrics", metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics "
        "(needs pip install 'trioraft[metrics]')")  # fmt: skip
    add("--log-level", choices=LEVELS, default="warning",
        help="the least severe log lines printed on stderr (default: warning)")  # fmt: skip
    _tls_arguments(serve, serving=True)


_CLIENT_COMMANDS = (
    ("status", "print each member's status"),
    ("write", "apply a JSON command; print the reply"),
    ("read", "ask a JSON query (linearizable); print the answer"),
    ("add", "add a server to the cluster (start it with serve --learner first)"),
    ("remove", "remove a server from the cluster"),
    ("transfer", "hand leadership to another server"),
    ("members", "make the voters (and learners) exactly these, in one change"),
)


def _client_parser(commands: argparse._SubParsersAction[_Parser], name: str, text: str) -> None:
    sub = commands.add_parser(name, help=text, description=text[:1].upper() + text[1:] + ".")
    sub.add_argument("--cluster", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                     help="addresses of some servers of the cluster")  # fmt: skip
    sub.add_argument("--secret-file", metavar="FILE",
                     help="a file holding the cluster's shared secret")  # fmt: skip
    sub.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                     help=f"give up after this long (default {DEFAULT_TIMEOUT:g})")  # fmt: skip
    _tls_arguments(sub, serving=False)
    if name == "status":
        sub.add_argument("--json", action="store_true", help="one JSON object per server")
    elif name in ("write", "read"):
        example = "'5', '[\"put\", \"k\", 1]'" if name == "write" else "'null', '[\"get\", \"k\"]'"
        what = "command" if name == "write" else "query"
        sub.add_argument("value", metavar="JSON", help=f"the {what}, as JSON ({example})")
    elif name == "add":
        sub.add_argument("name", help="the new server's name (its serve --name)")
        sub.add_argument("address", metavar="HOST:PORT", help="where the new server listens")
        sub.add_argument("--learner", action="store_true",
                         help="add it as a learner: it gets the log but does not vote")  # fmt: skip
    elif name == "remove":
        sub.add_argument("name", help="the server to remove")
    elif name == "transfer":
        sub.add_argument("name", nargs="?",
                         help="the server to hand over to (default: the best voter)")  # fmt: skip
    elif name == "members":
        sub.add_argument("voters", nargs="+", metavar="NAME[=HOST:PORT]",
                         help="every voter of the new configuration; a new server with the "
                         "address it listens at (start it with serve --learner first)")  # fmt: skip
        sub.add_argument("--learner", action="append", default=[], metavar="NAME[=HOST:PORT]",
                         help="a learner of the new configuration; repeatable")  # fmt: skip


def _prog() -> str:
    return "trioraft" if os.path.basename(sys.argv[0] or "") == "trioraft" else "python -m trioraft"


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    top = _Parser(
        prog=_prog(),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands)
    for name, text in _CLIENT_COMMANDS:
        _client_parser(commands, name, text)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parser().parse_args(argv)
    runner = serve if args.command == "serve" else client_command
    try:
        return trio.run(runner, args)
    except BaseException as group:
        return _report(group)


def _report(group: BaseException) -> int:
    """One line for what stopped the command; its exit status."""
    exc = leaf(group)
    if isinstance(exc, CommandError):
        complain(str(exc))
        return exc.status
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, (StorageError, AuthenticationFailed)):
        complain(str(exc))
        return RUNTIME_ERROR
    if isinstance(exc, Exception):
        # Any other error, one line: a state machine's exception reaches ``write`` as
        # the built-in of its name (KeyError, ZeroDivisionError...), not only these.
        complain(f"{type(exc).__name__}: {exc}")
        return RUNTIME_ERROR
    raise group
