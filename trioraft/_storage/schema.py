"""The SQLite file of a :class:`~trioraft.DiskStorage`: its schema, how a new one is made
(whole, under a temporary name, then renamed into place), and the checks of one found on
disk (ours, of this format, of this server). Owns no open connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

__all__ = ["DB", "FORMAT", "create_store", "fsync_directory", "store_problem", "tables"]

FORMAT = "trioraft-disk-1"
DB = "raft.db"
#: A new store is made whole under this name, then renamed to ``raft.db``.
NEW_DB = ".raft.db.new"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, kind INTEGER NOT NULL, data BLOB
);
"""


def create_store(directory: Path, name: str) -> None:
    """A new store for server ``name`` in ``directory``: made whole under a temporary
    name (the leftovers of a start that was interrupted are dropped first), synced, then
    renamed into place. So a ``raft.db`` that exists was once a complete store, and one
    found empty is damage, not a store to create (API: "never silently reinitialised")."""
    import sqlite3

    for leftover in directory.glob(NEW_DB + "*"):
        leftover.unlink()
    tmp = directory / NEW_DB
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")  # all of it in the one file, once closed
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        db.execute("INSERT INTO meta VALUES ('owner', ?)", (name,))
    finally:
        db.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / DB)
    fsync_directory(directory)


def store_problem(found: set[str], meta: dict[str, Any], name: str) -> str | None:
    """What is wrong with a store holding the tables ``found`` and ``meta``, to be used
    by server ``name``; ``None`` if nothing. A store is created whole before it is used
    (:func:`create_store`): one without our tables lost its contents, or belongs to
    someone else. Never reinitialised."""
    if not found:
        return (
            f"damaged: {DB} holds no tables (a store is complete from its creation, so "
            "this one lost its contents); it is never reinitialised"
        )
    if "meta" not in found:
        return (
            f"not a trioraft store ({DB} holds the tables "
            f"{', '.join(sorted(found)[:3])}); it is never reinitialised"
        )
    if meta.get("format") != FORMAT:
        return f"not a trioraft store (format {meta.get('format')!r})"
    if meta.get("owner") != name:
        return f"belongs to server {meta.get('owner')!r}; it cannot be used by {name!r}"
    return None


def tables(db: sqlite3.Connection) -> set[str]:
    """The names of the tables in ``db``."""
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def fsync_directory(directory: Path) -> None:
    """Make ``directory``'s entries (a rename, a new file) durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
