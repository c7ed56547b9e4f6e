"""DiskStorage: a server's hard state, log and snapshot in a directory, on SQLite.

Layout of the directory: ``raft.db`` (SQLite in WAL mode, ``synchronous=FULL``) holds the
hard state, the log and the latest snapshot's metadata; the snapshot's bytes sit beside
it in ``snapshot-<index>-<term>.bin``, written atomically (temporary file, fsync, rename,
fsync of the directory) before the transaction that points to it; ``LOCK`` is held (an
exclusive ``flock``) while a server uses the directory. A new ``raft.db`` is made whole
under a temporary name and renamed into place, so one found without its tables is damage,
never a store to create again.

Everything staged between two :meth:`DiskStorage.sync` calls is written in one
transaction (group commit), in a worker thread, so the Trio thread never waits on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import outcome
import trio

from .._codec import check_value as _check_value
from .._codec import decode_value, encode_value
from .._core.messages import Config, Entry, EntryKind
from .._core.ready import HardState, PersistedState, Snapshot
from .base import StorageError, passing
from .schema import DB as _DB
from .schema import NEW_DB as _NEW_DB
from .schema import create_store, store_problem
from .schema import fsync_directory as _fsync_directory
from .schema import tables as _tables

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger("trioraft")

__all__ = ["DiskStorage"]

_LOCK = "LOCK"
_KINDS = {
    EntryKind.NOOP: 0,
    EntryKind.COMMAND: 1,
    EntryKind.CONFIG: 2,
    EntryKind.SESSION: 3,
    EntryKind.CLIENT: 4,
}
_KIND_OF = {v: k for k, v in _KINDS.items()}
#: Directories in use by a server of this process (flock says so for other processes).
_IN_USE: set[str] = set()
_IN_USE_LOCK = threading.Lock()


def _config_value(config: Config | None) -> Any:
    return None if config is None else config.as_list()


def _config_of(value: Any) -> Config | None:
    return None if value is None else Config.from_list(value)


def _entry_row(entry: Entry) -> tuple[int, int, int, bytes]:
    data = _config_value(entry.data) if entry.kind is EntryKind.CONFIG else entry.data
    return (entry.index, entry.term, _KINDS[entry.kind], encode_value(data))


def _entry_of(row: tuple[int, int, int, bytes]) -> Entry:
    index, term, kind_code, blob = row
    kind = _KIND_OF[kind_code]
    data = decode_value(blob)
    if kind is EntryKind.CONFIG:
        data = _config_of(data)
    return Entry(term, index, kind, data)


class DiskStorage:
    """A server's persistent state in the directory ``path`` (created if missing).

    It keeps what :class:`~trioraft.MemoryStorage` keeps (term, vote, log, commit index,
    snapshot, base configuration, cluster identity), durably: nothing a server
    acknowledges is lost when its process is killed at any moment. Commands, snapshots
    and the other values it stores must be msgpack values.

    A directory in use by a running server (in this or another process), one that
    belongs to another server name, one that is not a trioraft store, or a damaged one
    raises :class:`~trioraft.StorageError` when a server starts on it; it is never
    silently reinitialised.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._key = ""
        self._staged: list[tuple[str, Any]] = []
        self._guard = threading.Lock()
        # No entry above this index is on disk (None: not known yet): an append past it
        # has nothing to replace, and skips the DELETE.
        self._last_written: int | None = None
        #: How many transactions made something durable.
        self.syncs = 0
        # A server holds (or is opening) this object: another is refused without
        # touching what the first one holds (set and cleared under _IN_USE_LOCK).
        self._claimed = False

    def __repr__(self) -> str:
        return f"<DiskStorage {str(self.path)!r}>"

    def _error(self, problem: str) -> StorageError:
        return StorageError(f"storage directory {str(self.path)!r}: {problem}")

    def _os_error(self, exc: OSError, path: Path | None = None) -> StorageError:
        """An OS error of this storage as a StorageError naming the file and the problem
        (permissions, a read-only file system, a full disk, ...)."""
        where = str(path if path is not None else exc.filename or self.path)
        return StorageError(f"storage {where!r}: {exc.strerror or exc}")

    # ------------------------------------------------------------- ownership
    async def acquire(self, name: str) -> None:
        """Lock the directory for the server ``name`` and open its database (in a worker
        thread)."""
        await trio.to_thread.run_sync(self._acquire, name)

    def _acquire(self, name: str) -> None:
        with _IN_USE_LOCK:
            if self._claimed:  # this very object: its server's database stays open
                raise self._error("in use by a running server of this process")
            self._claimed = True
        try:
            self._open_directory()
            self._lock()
            self._open_db(name)
        except OSError as exc:  # permissions, a full disk: named, as every other problem
            self.release()
            raise self._os_error(exc) from None
        except BaseException:
            self.release()
            raise

    def _open_directory(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create it ({exc.strerror})") from None
        if not self.path.is_dir():
            raise self._error("not a directory")
        self._check_writable(self.path)
        if not (self.path / _DB).exists():
            strangers = [
                p.name
                for p in self.path.iterdir()
                if p.name != _LOCK and not p.name.startswith(_NEW_DB)  # an interrupted start
            ]
            if strangers:
                raise self._error(
                    f"not a trioraft store (it holds {', '.join(sorted(strangers)[:3])} but "
                    f"no {_DB}); it is never reinitialised: use an empty directory"
                )

    def _check_writable(self, path: Path) -> None:
        """StorageError naming ``path`` unless this process may write it: a store it
        cannot write is refused at start (not called damaged, and not found out at the
        first vote)."""
        if os.access(path, os.W_OK):
            return
        try:
            read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "it is on a read-only file system" if read_only else "permission denied"
        raise StorageError(f"storage {str(path)!r} cannot be written: {why}")

    def _lock(self) -> None:
        key = str(self.path.resolve())
        with _IN_USE_LOCK:
            if key in _IN_USE:
                raise self._error("in use by a running server of this process")
            _IN_USE.add(key)
        self._key = key
        try:
            fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._os_error(exc, self.path / _LOCK) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._error("in use by a running server of another process") from None
        self._lock_fd = fd

    def _open_db(self, name: str) -> None:
        # sqlite3 is imported here, not with the module: a process that never opens a
        # DiskStorage (MemoryStorage, the in-process tests) does not pay for it (import
        # trioraft peaks at 30.5 MB instead of 31.3-31.4).
        import sqlite3

        path = self.path / _DB
        for part in (path, *(path.with_name(_DB + s) for s in ("-wal", "-shm"))):
            if part.exists():
                self._check_writable(part)
        try:
            if not path.exists():
                create_store(self.path, name)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db = db
            # Read before anything is written: a store refused is left as it was found.
            tables = _tables(db)
            meta = dict(db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        except sqlite3.DatabaseError as exc:
            raise self._error(f"damaged: {exc}") from None
        problem = store_problem(tables, meta, name)
        if problem is not None:
            raise self._error(problem)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise self._error(f"damaged: {exc}") from None

    @staticmethod
    def _read_meta(db: sqlite3.Connection) -> dict[str, Any]:
        if "meta" not in _tables(db):
            return {}
        return dict(db.execute("SELECT key, value FROM meta"))

    def release(self) -> None:
        """Write what is still staged (a stopping server's last commit index, which is
        not synced on its own), then close the database and unlock the directory."""
        staged, self._staged = self._staged, []
        if staged and self._db is not None:
            try:
                self._commit(staged)
            except Exception as exc:  # it was never promised durable: say so, go on
                logger.warning("%s: staged writes not written at release: %s", self, exc)
        if self._db is not None:
            import sqlite3  # loaded by _open_db: a lookup

            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        with _IN_USE_LOCK:
            if self._key:
                _IN_USE.discard(self._key)
                self._key = ""
            self._claimed = False

    #: Raise :class:`TypeError` naming the type if a value cannot be stored (commands,
    #: snapshots and the other values stored must be msgpack values): a server checks
    #: each command with it at the call, on any network, before it reaches the log.
    check_value = staticmethod(_check_value)

    @property
    def in_use(self) -> bool:
        """Whether a running server of this process holds the directory."""
        return self._db is not None

    # ------------------------------------------------------------------ load
    async def load(self) -> PersistedState:
        """Everything durable, read in a worker thread."""
        return await trio.to_thread.run_sync(self._load)

    def _load(self) -> PersistedState:
        import sqlite3  # loaded by _open_db: a lookup

        db = self._conn()
        try:
            with self._guard:
                meta = self._read_meta(db)
                rows = db.execute("SELECT idx, term, kind, data FROM entries ORDER BY idx")
                entries = tuple(_entry_of(row) for row in rows)
            hs = meta.get("hard_state")
            hard_state = HardState() if hs is None else self._hard_state_of(decode_value(hs))
            log_index, log_term = decode_value(meta.get("log", encode_value([0, 0])))
            snapshot = self._load_snapshot(meta.get("snapshot"))
        except StorageError:
            raise  # says what is damaged already
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise self._error(f"damaged: {exc}") from None
        if entries and entries[0].index != log_index + 1:
            raise self._error(f"damaged: the log starts at {entries[0].index}, after {log_index}")
        self._last_written = entries[-1].index if entries else log_index
        return PersistedState(hard_state, snapshot, log_index, log_term, entries)

    @staticmethod
    def _hard_state_of(value: Any) -> HardState:
        # Stores written before servers counted their lives have no sixth field.
        term, voted_for, commit, cluster_id, base, *incarnation = value
        return HardState(term, voted_for, commit, cluster_id, _config_of(base), *incarnation)

    def _load_snapshot(self, blob: bytes | None) -> Snapshot | None:
        if blob is None:
            return None
        # Stores written before snapshots carried a checksum have no seventh field.
        index, term, config, cluster_id, filename, size, *checksum = decode_value(blob)
        path = self.path / filename
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise self._error(f"damaged: snapshot file {str(path)!r}: {exc.strerror}") from None
        if len(data) != size:
            raise self._error(
                f"damaged: snapshot file {str(path)!r} holds {len(data)} bytes, not {size}"
            )
        snapshot = Snapshot(index, term, _config_of(config) or Config(), data, cluster_id)
        if checksum and checksum[0] != snapshot.checksum:
            # Changed in place (a bit flip, a torn write): never restored.
            raise self._error(
                f"damaged: snapshot file {str(path)!r} does not match its checksum "
                f"(CRC-32 {snapshot.checksum:08x}, recorded {checksum[0]:08x})"
            )
        return snapshot

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise self._error("not open (no running server holds it)")
        return self._db

    # ---------------------------------------------------------------- writes
    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Stage a new latest snapshot."""
        self._staged.append(("snapshot", snapshot))

    def compact(self, index: int, term: int) -> None:
        """Stage dropping the entries up to ``index``."""
        self._staged.append(("compact", (index, term)))

    def truncate(self, index: int) -> None:
        """Stage dropping the entries from ``index`` on."""
        self._staged.append(("truncate", index))

    def append(self, entries: Sequence[Entry]) -> None:
        """Stage replacing the entries from ``entries[0].index`` on with ``entries``."""
        if entries:
            rows = [_entry_row(e) for e in entries]
            self._staged.append(("append", rows))

    def set_hard_state(self, hard_state: HardState) -> None:
        """Stage a new hard state."""
        hs = hard_state
        value = [
            hs.term, hs.voted_for, hs.commit, hs.cluster_id, _config_value(hs.base_config),
            hs.incarnation,
        ]  # fmt: skip
        self._staged.append(("hard_state", encode_value(value)))

    async def sync(self) -> None:
        """Write everything staged in one transaction (in a worker thread); return once
        it is durable."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        try:
            await _in_worker_thread(lambda: self._commit(staged))
        except BaseException:
            self._staged[:0] = staged  # none of it is durable: staged again, for a retry
            raise

    def _commit(self, staged: list[tuple[str, Any]]) -> None:
        """Write ``staged`` in one transaction. An OS or SQLite error is a StorageError
        naming the path, but for an OS error that passes by itself (file descriptors
        exhausted), raised as it is so that the server tries again."""
        import sqlite3  # loaded by _open_db: a lookup

        try:
            self._transaction(staged)
        except OSError as exc:
            if passing(exc):
                raise
            raise self._os_error(exc) from exc
        except sqlite3.Error as exc:
            raise self._error(f"cannot write {_DB}: {exc}") from exc

    def _transaction(self, staged: list[tuple[str, Any]]) -> None:
        import sqlite3  # loaded by _open_db: a lookup

        db = self._conn()
        with self._guard:
            old_files = self._write_snapshot_files(staged)
            try:
                db.execute("BEGIN IMMEDIATE")
                last = self._last_written
                for op, arg in staged:
                    last = self._apply(db, op, arg, last)
                db.execute("COMMIT")
                self._last_written = last
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self.syncs += 1
        for path in old_files:
            with contextlib.suppress(OSError):
                path.unlink()

    def _write_snapshot_files(self, staged: list[tuple[str, Any]]) -> list[Path]:
        """Write the staged snapshots' bytes atomically; return the files they replace."""
        written = [arg for op, arg in staged if op == "snapshot"]
        if not written:
            return []
        keep = {self._snapshot_name(s) for s in written[-1:]}
        for snapshot in written[-1:]:
            _write_atomically(self.path, self._snapshot_name(snapshot), snapshot.data)
        return [p for p in self.path.glob("snapshot-*.bin") if p.name not in keep]

    @staticmethod
    def _snapshot_name(snapshot: Snapshot) -> str:
        return f"snapshot-{snapshot.index}-{snapshot.term}.bin"

    def _apply(self, db: sqlite3.Connection, op: str, arg: Any, last: int | None) -> int | None:
        """Write one staged operation; return the new bound of ``_last_written``."""
        if op == "append":
            if last is None or arg[0][0] <= last:  # replaces a suffix (Figure 2, step 3)
                db.execute("DELETE FROM entries WHERE idx >= ?", (arg[0][0],))
            db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", arg)
            return int(arg[-1][0])
        if op == "truncate":
            db.execute("DELETE FROM entries WHERE idx >= ?", (arg,))
            return None if last is None else min(last, arg - 1)
        if op == "hard_state":
            db.execute("INSERT OR REPLACE INTO meta VALUES ('hard_state', ?)", (arg,))
        elif op == "compact":
            index, term = arg
            db.execute("DELETE FROM entries WHERE idx <= ?", (index,))
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('log', ?)", (encode_value([index, term]),)
            )
        elif op == "snapshot":
            s: Snapshot = arg
            value = [
                s.index, s.term, _config_value(s.config), s.cluster_id,
                self._snapshot_name(s), len(s.data), s.checksum,
            ]  # fmt: skip
            db.execute("INSERT OR REPLACE INTO meta VALUES ('snapshot', ?)", (encode_value(value),))
        return last


async def _in_worker_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a thread of Trio's thread cache and wait for it. Not cancellable: a
    transaction that started is waited for, never abandoned (a cancellation is raised
    at the caller's next checkpoint), and one that was handed over always starts. This
    is ``trio.to_thread.run_sync`` without its capacity limiter and context copy, which
    cost half the round trip on the path of every write."""
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[None]) -> None:
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(fn, deliver)  # no name: naming costs 2 syscalls a job
    await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Write ``data`` to ``directory/name`` so that a crash leaves either nothing or all
    of it: a temporary file, fsync, rename, fsync of the directory."""
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    _fsync_directory(directory)
