"""``serve --machine module:attribute``: load the state machine, and say in words when it
cannot be loaded or made."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from .common import UsageError

__all__ = ["checked", "load"]


def load(spec: str) -> Callable[..., Any]:
    """The class or factory ``module:attribute`` names, imported from the current
    directory."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--machine takes module:attribute, got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # import from the current directory, as documented
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot load the state machine {spec!r}: {exc}") from None
    except Exception as exc:  # the module itself failed (a SyntaxError, a NameError...)
        raise UsageError(
            f"cannot load the state machine {spec!r}: importing {module_name} raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise UsageError(
            f"cannot load the state machine {spec!r}: module {module_name!r} has no "
            f"attribute {attribute!r}"
        )
    if not callable(factory):
        raise UsageError(
            f"--machine {spec} is a {type(factory).__name__}, not a state machine class or factory"
        )
    return factory  # type: ignore[no-any-return]


def checked(factory: Callable[..., Any], spec: str) -> Callable[..., Any]:
    """``factory``, whose failures say that making the state machine failed (a bare
    ``TypeError`` from its constructor named neither the machine nor ``--init-arg``)."""

    def make(*args: Any) -> Any:
        try:
            return factory(*args)
        except Exception as exc:
            given = "with --init-arg" if args else "without --init-arg"
            raise UsageError(
                f"making the state machine {spec} ({given}) failed: {type(exc).__name__}: {exc}"
            ) from None

    return make
