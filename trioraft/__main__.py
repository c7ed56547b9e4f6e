"""The command line: ``python -m trioraft serve|status|write|read|add|remove|transfer``.

``serve`` runs one server on TCP and ``DiskStorage`` until SIGINT or SIGTERM; the other
commands are clients of a running cluster. Every command exits non-zero with a one-line
message on error (an unreachable cluster, no leader in time, bad JSON, ...).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import trio

from ._client import open_client
from ._core.node import Role
from ._network.tcp import open_tcp_network, parse_address
from ._server import Server, start_server
from ._storage import DiskStorage

__all__ = ["main"]

#: Seconds a client command may take, by default.
DEFAULT_TIMEOUT = 10.0


class CommandError(Exception):
    """An error to report in one line, with a non-zero exit status."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not valid JSON ({exc.msg}): {text!r}") from None


def _secret(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the secret file {path!r}: {exc.strerror}") from None
    if not secret:
        raise CommandError(f"the secret file {path!r} is empty")
    return secret


def _tls_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise CommandError(f"the {what} file {path!r} does not exist")
    return path


def _tls(args: argparse.Namespace, *, serving: bool) -> Any:
    """The ``ssl_context`` of ``--tls-ca``/``--tls-cert``/``--tls-key`` (``None`` without
    them). ``serve`` needs the CA and its certificate, and asks every peer and client for
    a certificate the CA signed (mutual TLS); a client command needs the CA (to check the
    servers) and, for servers that ask, its own certificate."""
    ca, cert, key = args.tls_ca, args.tls_cert, args.tls_key
    if ca is None and cert is None and key is None:
        return None
    if ca is None or (serving and cert is None):
        needed = "--tls-ca and --tls-cert" if serving else "--tls-ca"
        raise CommandError(f"TLS needs {needed} (PEM files)")
    if key is not None and cert is None:
        raise CommandError("--tls-key goes with --tls-cert")
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
        raise CommandError(f"cannot use the TLS files: {exc.reason or exc}") from None
    return (server, client) if serving else client


def _machine(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CommandError(f"--machine takes module:attribute, got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # import from the current directory, as documented
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise CommandError(f"cannot load the state machine {spec!r}: {exc}") from None


def _peer(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not sep or not name:
        raise CommandError(f"--peer takes NAME=HOST:PORT, got {text!r}")
    try:
        parse_address(address)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return name, address


#: Server options ``serve`` sets itself (from its other flags), not given by ``--option``.
_SERVE_SETS = frozenset({"initial_config", "storage", "tracer"})


def _option(text: str) -> tuple[str, Any]:
    """``--option NAME=JSON``: a server option (``min_election_timeout=1.0``)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise CommandError(f"--option takes NAME=JSON, got {text!r}")
    if name in _SERVE_SETS:
        raise CommandError(f"--option {name} is not an option of serve: it sets {name} itself")
    return name, _json(value, f"the value of --option {name}")


def _cluster(text: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise CommandError("--cluster takes HOST:PORT[,HOST:PORT...]")
    for address in addresses:
        try:
            parse_address(address)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    return addresses


def _say(text: str) -> None:
    print(text, flush=True)


#: ``gc.set_threshold`` of a ``serve`` process: collect the youngest generation after
#: 20,000 allocations (Python's default: 700), the older ones 20 times rarer each. A
#: server allocates a few objects per write (an entry, its waiter, its outcome) and keeps
#: the entries until the next snapshot: at 4,096 writes in flight these thresholds cut
#: the leader's CPU per write from 9.4-10.5 us to 7.9 (the performance page).
SERVE_GC_THRESHOLD = (20_000, 20, 20)


def _tune_collector() -> None:
    """What importing and starting made (modules, classes, functions) lives as long as
    the process: move it out of the garbage collector's sight (``gc.freeze``), so that a
    full collection walks only what came after, and pauses the server for less (at
    4,096 writes in flight: 70-95 ms a full collection before, 25 ms after, on the
    machine of the performance page). Then collect less often
    (:data:`SERVE_GC_THRESHOLD`). A choice of the ``serve`` program: the library leaves
    the collector to the application."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVE_GC_THRESHOLD)


async def _print_roles(server: Server) -> None:
    """A line for each change of the server's role (not a tracer: that costs every write)."""
    async for status in server.role_changes():
        name, role, term, leader = status.name, status.role, status.term, status.leader
        if role is Role.LEADER:
            _say(f"{name}: leader (term {term})")
        elif role is Role.FOLLOWER:
            _say(f"{name}: follower of {leader} (term {term})" if leader else
                 f"{name}: follower, no leader known (term {term})")  # fmt: skip
        else:
            _say(f"{name}: {role.value.replace('_', '-')} (term {term})")


def _init_args(args: argparse.Namespace) -> tuple[Any, ...]:
    """The state machine's constructor arguments: ``--init-arg``'s JSON value (``null``
    too: ``Machine(None)``), or none (``Machine()``)."""
    if args.init_arg is None:
        return ()
    return (_json(args.init_arg, "--init-arg"),)


async def _serve(args: argparse.Namespace) -> int:
    machine = _machine(args.machine)
    peers = dict(_peer(p) for p in args.peer or ())
    options = dict(_option(o) for o in args.option or ())
    secret = _secret(args.secret_file)
    tls = _tls(args, serving=True)
    config = () if args.learner else [args.name, *peers]
    extra = _init_args(args)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_tcp_network(
                listen=args.listen, peers=peers, secret=secret, ssl_context=tls
            ) as network,
            trio.open_nursery() as nursery,
        ):
            server = await start_server(
                nursery,
                machine,
                *extra,
                name=args.name,
                network=network,
                initial_config=config,
                storage=DiskStorage(args.data_dir),
                **options,
            )
            nursery.start_soon(_print_roles, server)
            _tune_collector()
            _say(f"{args.name}: listening on {network.listen} (data in {args.data_dir})")
            async for signum in signals:
                _say(f"{args.name}: {signal.Signals(signum).name}, stopping")
                break
            await server.stop()
            nursery.cancel_scope.cancel()
    _say(f"{args.name}: stopped")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


async def _client_command(args: argparse.Namespace) -> int:
    addresses = _cluster(args.cluster)
    # How to reach the cluster: the shared secret and the TLS context, as given.
    reach = {"secret": _secret(args.secret_file), "ssl_context": _tls(args, serving=False)}
    payload: Any = None
    if args.command in ("write", "read"):
        payload = _json(args.value, "the value")
    try:
        with trio.fail_after(args.timeout):
            async with open_client(addresses, **reach) as client:
                return await _run_client(args, client, addresses, reach, payload)
    except trio.TooSlowError:
        raise CommandError(
            f"no answer from the cluster at {args.cluster} within {args.timeout:g} s "
            "(unreachable, or no leader)"
        ) from None


async def _run_client(
    args: argparse.Namespace, client: Any, addresses: list[str], reach: dict[str, Any], payload: Any
) -> int:
    command = args.command
    if command == "write":
        _say(json.dumps(_jsonable(await client.write(payload))))
    elif command == "read":
        _say(json.dumps(_jsonable(await client.read(payload))))
    elif command == "add":
        await client.add_server(args.name, voter=not args.learner, address=args.address)
        _say(f"added {args.name} ({args.address}) as {'learner' if args.learner else 'voter'}")
    elif command == "remove":
        await client.remove_server(args.name)
        _say(f"removed {args.name}")
    elif command == "transfer":
        _say(f"{await client.transfer_leadership(args.name)} leads now")
    elif command == "status":
        await _status(args, addresses, reach)
    return 0


async def _status(args: argparse.Namespace, addresses: list[str], reach: dict[str, Any]) -> None:
    for address in addresses:
        async with open_client([address], **reach) as one:
            with trio.move_on_after(max(1.0, args.timeout / len(addresses))) as scope:
                status = await one.status()
            if scope.cancelled_caught:
                if args.json:
                    _say(json.dumps({"address": address, "error": "unreachable"}))
                else:
                    _say(f"{address}: unreachable")
                continue
        status["address"] = address
        if args.json:
            _say(json.dumps(status))
        else:
            _say(
                f"{status['name']} ({address}): {status['role'].lower()} term {status['term']} "
                f"leader {status['leader']} commit {status['commit_index']} "
                f"applied {status['last_applied']} voters {','.join(status['voters'])}"
                + (f" learners {','.join(status['learners'])}" if status["learners"] else "")
            )


def _tls_arguments(parser: argparse.ArgumentParser, *, serving: bool) -> None:
    who = "peers and clients" if serving else "the servers"
    parser.add_argument("--tls-ca", metavar="FILE", help=f"PEM: the CA that signs {who}")
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM: this server's certificate chain (and key)"
        if serving
        else "PEM: this client's certificate chain (and key), for servers that ask",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM: the key, if not in --tls-cert")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line like every other error of the command line
    (not a usage block first); ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trioraft", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one server until SIGINT or SIGTERM")
    serve.add_argument("--name", required=True)
    serve.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    serve.add_argument("--peer", action="append", help="NAME=HOST:PORT of another server")
    serve.add_argument("--machine", required=True, help="module:attribute of the state machine")
    serve.add_argument("--init-arg", help="JSON argument of the state machine's constructor")
    serve.add_argument("--data-dir", required=True, help="the server's DiskStorage directory")
    serve.add_argument("--secret-file", help="file holding the cluster's shared secret")
    serve.add_argument("--learner", action="store_true", help="start with no configuration")
    serve.add_argument(
        "--option",
        action="append",
        metavar="NAME=JSON",
        help="a server option, its value as JSON (min_election_timeout=1.0, "
        "follower_reads=true, snapshot_threshold=50000); repeatable",
    )
    _tls_arguments(serve, serving=True)
    for name, help_text in [
        ("status", "print the status of each server"),
        ("write", "write a JSON command; print the reply"),
        ("read", "read with a JSON query; print the answer"),
        ("add", "add a server"),
        ("remove", "remove a server"),
        ("transfer", "hand leadership over"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--cluster", required=True, help="HOST:PORT[,HOST:PORT...]")
        sub.add_argument("--secret-file")
        sub.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT)
        _tls_arguments(sub, serving=False)
        if name == "status":
            sub.add_argument("--json", action="store_true", help="one JSON object per server")
        elif name in ("write", "read"):
            sub.add_argument("value", help="a JSON value")
        elif name == "add":
            sub.add_argument("name")
            sub.add_argument("address", help="HOST:PORT the new server listens on")
            sub.add_argument("--learner", action="store_true")
        elif name == "remove":
            sub.add_argument("name")
        elif name == "transfer":
            sub.add_argument("name", nargs="?")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    runner = _serve if args.command == "serve" else _client_command
    try:
        return trio.run(runner, args)
    except BaseException as group:
        exc = _leaf(group)
        if isinstance(exc, CommandError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, KeyboardInterrupt):
            return 130
        if isinstance(exc, Exception):
            # Any error, one line: a state machine's exception reaches ``write`` as the
            # built-in of its name (KeyError, ZeroDivisionError...), not only these.
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        raise


def _seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return exc


if __name__ == "__main__":
    sys.exit(main())
