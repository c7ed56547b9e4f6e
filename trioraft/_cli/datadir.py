"""``serve --data-dir``: checked before the server starts, and marked with the state
machine that wrote it, so that another machine never replays its log."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .common import CommandError, UsageError

__all__ = ["MARKER", "check_data_dir", "record_machine"]

#: The file in the data directory that names the ``--machine`` it was written by.
MARKER = "trioraft-serve.json"


def _recorded(path: Path) -> str | None:
    """The ``--machine`` the directory was written by (``None``: not recorded)."""
    marker = path / MARKER
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CommandError(f"--data-dir {path}: cannot read {MARKER}: {exc.strerror}") from None
    try:
        machine = json.loads(text)["machine"]
    except (ValueError, KeyError, TypeError):
        raise CommandError(
            f"--data-dir {path}: {MARKER} is damaged (it should name the --machine)"
        ) from None
    return str(machine)


def check_data_dir(data_dir: str, machine: str) -> None:
    """Refuse a data directory that cannot be one (a file, a place without permission)
    or that another ``--machine`` wrote, in one line naming the problem."""
    path = Path(data_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == path else f"is inside {existing}, which is"
        raise UsageError(f"--data-dir {data_dir} {where} a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"--data-dir {data_dir}: no permission to write in {existing}")
    recorded = _recorded(path) if existing == path else None
    if recorded is not None and recorded != machine:
        raise CommandError(
            f"--data-dir {data_dir} holds the log of --machine {recorded}, not {machine}: "
            "use another directory, or the same machine"
        )


def record_machine(data_dir: str, machine: str) -> None:
    """Name ``machine`` in the data directory (once its store exists: the storage keeps
    a directory to itself until then)."""
    path = Path(data_dir)
    if (path / MARKER).exists():
        return
    temporary = path / (MARKER + ".new")
    try:
        temporary.write_text(json.dumps({"machine": machine}) + "\n")
        temporary.replace(path / MARKER)
    except OSError as exc:
        raise CommandError(
            f"--data-dir {data_dir}: cannot write {MARKER}: {exc.strerror}"
        ) from None
