"""DiskStorage: durable servers on SQLite (real clock and real files, bounded in time).

The promises checked (API, "Durable storage"): a cluster restarted on its directories,
in this process or a new one, comes back with everything it acknowledged, the same on
every server, and keeps serving, also after a SIGKILL at a random moment; writes that
arrive together share a transaction (group commit); snapshots are stored beside the
database and survive a restart; a directory in use, of another server, that is not a
trioraft store, or that is damaged raises StorageError naming it, and is never
reinitialised.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio

import trioraft
from trioraft import DiskStorage, StorageError

from machines import Counter

NAMES = ["a", "b", "c"]


async def start_cluster(
    nursery: trio.Nursery, root: Path, **options: object
) -> dict[str, trioraft.Server]:
    network = trioraft.MemoryNetwork(seed=0)
    return {
        name: await trioraft.start_server(
            nursery,
            Counter,
            name=name,
            network=network,
            initial_config=NAMES,
            storage=DiskStorage(root / name),
            seed=i,
            **options,
        )
        for i, name in enumerate(NAMES)
    }


async def leader_of(servers: dict[str, trioraft.Server]) -> trioraft.Server:
    name = await servers["a"].await_leader()
    return servers[name]


async def write_on_leader(servers: dict[str, trioraft.Server], command: Any) -> Any:
    """``command`` written on whichever server leads. On the real clock a cluster just
    restarted may elect again (a loaded machine delays a heartbeat past a timeout): a
    write refused with NotLeader was not proposed, and goes to the new leader."""
    while True:
        try:
            return await (await leader_of(servers)).write(command)
        except trioraft.NotLeader:
            await trio.sleep(0)


async def test_cluster_restarts_from_its_directories(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(nursery, tmp_path)
            leader = await leader_of(servers)
            for i in range(1, 31):
                assert await leader.write(1) == i
            async with trio.open_nursery() as writers:  # many at once: group commit
                for _ in range(64):
                    writers.start_soon(leader.write, 1)
            assert leader.storage.syncs < 30 + 64
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(nursery, tmp_path)
            leader = await leader_of(servers)
            assert await leader.read(None) == 94
            assert await leader.write(1) == 95
            nursery.cancel_scope.cancel()


async def test_a_stopped_server_keeps_its_last_commit_index(tmp_path: Path) -> None:
    """A newer commit index alone is not synced on its own (Figure 2: volatile), but a
    server that stops writes what it still has staged: restarted on its directory, it
    knows everything it had seen committed, and applies it before hearing from anyone."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(nursery, tmp_path)
            leader = await leader_of(servers)
            for i in range(1, 11):
                assert await leader.write(1) == i
            committed = leader.status().commit_index
            name = leader.name
            await leader.stop()
            nursery.cancel_scope.cancel()
        storage = DiskStorage(tmp_path / name)
        await storage.acquire(name)
        try:
            assert (await storage.load()).hard_state.commit == committed
        finally:
            storage.release()
        async with trio.open_nursery() as nursery:
            alone = await trioraft.start_server(
                nursery, Counter, name=name, network=trioraft.MemoryNetwork(),
                initial_config=NAMES, storage=DiskStorage(tmp_path / name),
            )  # fmt: skip
            assert await alone.read_dirty(None) == 10  # no leader to learn it from
            nursery.cancel_scope.cancel()


async def test_snapshots_on_disk_survive_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(
                nursery, tmp_path, snapshot_threshold=20, snapshot_trailing=5
            )
            leader = await leader_of(servers)
            for _ in range(70):
                await leader.write(1)
            index = await leader.take_snapshot()
            nursery.cancel_scope.cancel()
        files = sorted(p.name for p in (tmp_path / leader.name).glob("snapshot-*.bin"))
        assert files == [f"snapshot-{index}-{leader.status().term}.bin"]  # old ones gone
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(nursery, tmp_path)
            assert servers[leader.name].status().snapshot_index == index
            assert servers[leader.name].machine.value == 70  # restored from the snapshot
            assert await write_on_leader(servers, 1) == 71
            nursery.cancel_scope.cancel()


async def test_directory_in_use_is_refused(tmp_path: Path) -> None:
    network = trioraft.MemoryNetwork()
    async with trio.open_nursery() as nursery:
        await trioraft.start_server(
            nursery, Counter, name="a", network=network, storage=DiskStorage(tmp_path / "a")
        )
        with pytest.raises(StorageError, match="in use by a running server"):
            await trioraft.start_server(
                nursery, Counter, name="a2", network=network, storage=DiskStorage(tmp_path / "a")
            )
        nursery.cancel_scope.cancel()


async def test_storage_of_a_running_server_is_refused_and_left_to_it(tmp_path: Path) -> None:
    """The same DiskStorage object given to a second server: refused, and the first
    server keeps its database and its lock (the refusal used to close them both, and the
    first server then failed)."""
    network = trioraft.MemoryNetwork()
    storage = DiskStorage(tmp_path / "a")
    with trio.fail_after(30):
        await _storage_refused_and_left(network, storage, tmp_path)


async def _storage_refused_and_left(
    network: trioraft.MemoryNetwork, storage: DiskStorage, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        a = await trioraft.start_server(
            nursery, Counter, name="a", network=network, storage=storage, initial_config=["a"]
        )
        await a.await_leader()
        assert await a.write(1) == 1
        with pytest.raises(StorageError, match="in use by a running server"):
            await trioraft.start_server(
                nursery, Counter, name="a2", network=network, storage=storage
            )
        with pytest.raises(StorageError, match="in use by a running server"):
            await trioraft.start_server(
                nursery, Counter, name="a3", network=network, storage=DiskStorage(tmp_path / "a")
            )
        assert await a.write(2) == 3  # still serving, on its own database
        assert storage.in_use
        await a.stop()
        assert not storage.in_use
        # Stopped, the storage can serve a new server of that name.
        b = await trioraft.start_server(
            nursery, Counter, name="a", network=network, storage=storage
        )
        await b.await_leader()
        assert b.machine.value == 3
        nursery.cancel_scope.cancel()


async def test_a_command_disk_cannot_store_is_refused_at_the_call(tmp_path: Path) -> None:
    """DiskStorage stores msgpack values: on any network, a command that is not one
    raises TypeError naming its type at the call (write, submit, a client's write), and
    the server, which used to fail when it came to save it, keeps serving."""
    network = trioraft.MemoryNetwork()
    with trio.fail_after(30):
        await _refused_at_the_call(network, tmp_path)


async def _refused_at_the_call(network: trioraft.MemoryNetwork, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        a = await trioraft.start_server(
            nursery, Counter, name="a", network=network, storage=DiskStorage(tmp_path / "a"),
            initial_config=["a"],
        )  # fmt: skip
        await a.await_leader()
        with pytest.raises(TypeError, match=r"builtins\.object"):
            await a.write(object())
        with pytest.raises(TypeError, match=r"builtins\.set"):
            a.submit({1}, lambda result: None)
        deep: tuple[Any, ...] = ()
        for _ in range(300):  # stored, it would crash every restart that decodes it
            deep = (deep,)
        with pytest.raises(TypeError, match="tuples nested at most 64 deep"):
            await a.write(deep)
        async with trioraft.open_client(["a"], network=network) as client:
            with pytest.raises(TypeError, match=r"builtins\.object"):
                await client.write(object())
            assert await client.write(1) == 1
        assert await a.write(1) == 2
        nursery.cancel_scope.cancel()


async def test_directory_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        fd = os.open({str(tmp_path / "LOCK")!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match="another process"):
            await DiskStorage(tmp_path).acquire("a")
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_directory_of_another_server_is_refused(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    storage.release()
    with pytest.raises(StorageError, match="belongs to server 'a'"):
        await DiskStorage(tmp_path).acquire("b")


async def test_foreign_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="not a trioraft store"):
        await DiskStorage(tmp_path).acquire("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_damaged_store_is_refused(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    storage.release()
    (tmp_path / "raft.db").write_bytes(b"this is not a database" * 100)
    for name in ("raft.db-wal", "raft.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StorageError, match=r"damaged|not a trioraft store"):
        await DiskStorage(tmp_path).acquire("a")


async def test_emptied_store_is_refused_not_reinitialised(tmp_path: Path) -> None:
    """API: a damaged directory raises StorageError and is never silently reinitialised.
    A raft.db emptied after acknowledged writes used to be taken for a new store."""
    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    storage.release()
    for name in ("raft.db-wal", "raft.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "raft.db").write_bytes(b"")
    with pytest.raises(StorageError, match=r"damaged: raft\.db holds no tables"):
        await DiskStorage(tmp_path).acquire("a")
    assert (tmp_path / "raft.db").stat().st_size == 0  # left as it was found


async def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "raft.db")
    with db:
        db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    db.close()
    with pytest.raises(
        StorageError, match=r"not a trioraft store \(raft\.db holds the tables users"
    ):
        await DiskStorage(tmp_path).acquire("a")
    db = sqlite3.connect(tmp_path / "raft.db")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    db.close()
    assert tables == ["users"]


async def test_a_creation_interrupted_before_its_rename_leaves_a_new_store_possible(
    tmp_path: Path,
) -> None:
    """A store is made whole under a temporary name, then renamed to raft.db: what a
    crash before the rename leaves is dropped at the next start, which creates it anew."""
    (tmp_path / ".raft.db.new").write_bytes(b"half a database")
    (tmp_path / ".raft.db.new-journal").write_bytes(b"")
    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    storage.release()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("raft.db-")) == [
        "LOCK",
        "raft.db",
    ]
    await DiskStorage(tmp_path).acquire("a")  # and it opens again as server a's


async def test_missing_snapshot_file_is_damage(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            servers = await start_cluster(nursery, tmp_path)
            leader = await leader_of(servers)
            await leader.write(1)
            await leader.take_snapshot()
            nursery.cancel_scope.cancel()
    for path in (tmp_path / leader.name).glob("snapshot-*.bin"):
        path.unlink()
    storage = DiskStorage(tmp_path / leader.name)
    await storage.acquire(leader.name)
    try:
        with pytest.raises(StorageError, match="damaged: snapshot file"):
            await storage.load()
    finally:
        storage.release()


# --------------------------------------------------------------------- a real kill

CHILD = textwrap.dedent(
    """
    import sys, trio, trioraft
    from trioraft.testing import Counter

    root, mode = sys.argv[1], sys.argv[2]
    NAMES = ["a", "b", "c"]

    async def main():
        network = trioraft.MemoryNetwork(seed=0)
        async with trio.open_nursery() as nursery:
            servers = {}
            for i, name in enumerate(NAMES):
                servers[name] = await trioraft.start_server(
                    nursery, Counter, name=name, network=network, initial_config=NAMES,
                    storage=trioraft.DiskStorage(f"{root}/{name}"), seed=i,
                    snapshot_threshold=25, snapshot_trailing=5)
            leader = servers[await servers["a"].await_leader()]
            if mode == "write":
                while True:
                    value = await leader.write(1)
                    print(value, flush=True)  # acknowledged
            value = await leader.read(None)
            await leader.write(0)  # every server applies up to here
            with trio.fail_after(10):
                while any(s.status().last_applied < leader.status().commit_index
                          for s in servers.values()):
                    await trio.sleep(0.01)
            print(value, *(servers[n].machine.value for n in NAMES), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)
    """
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, seed: int) -> None:
    """A process runs a 3-server cluster on DiskStorage taking writes and is killed with
    SIGKILL at a random moment; a new process reopening the directories finds every
    acknowledged write, the same on all three, and keeps serving."""
    rng = random.Random(seed)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writer = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "write"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged = 0
    try:
        assert writer.stdout is not None
        target = rng.randint(20, 120)
        for line in writer.stdout:
            acknowledged = int(line)
            if acknowledged >= target:
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    assert acknowledged >= 20, "the writer never got going"
    reader = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "read"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert reader.returncode == 0, reader.stderr
    value, *replicas = map(int, reader.stdout.split())
    assert value >= acknowledged  # nothing acknowledged was lost
    assert replicas == [value] * 3  # the same on all three


async def test_a_replaced_suffix_stays_replaced_after_reopening(tmp_path: Path) -> None:
    """Figure 2, AppendEntries step 3: entries that conflict are deleted with all that
    follow them; on disk too, whether the new entries come in the same transaction as
    the old ones' removal or after a reopen (the store skips the DELETE only for an
    append past everything it holds)."""
    from trioraft._core.messages import Entry

    def entries(first: int, last: int, term: int) -> list[Entry]:
        return [Entry(term, i, data=f"{term}.{i}") for i in range(first, last + 1)]

    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    await storage.load()
    storage.append(entries(1, 5, 1))
    await storage.sync()
    storage.append(entries(3, 3, 2))  # replaces 3, 4 and 5
    await storage.sync()
    storage.append(entries(4, 4, 2))  # past everything on disk: no DELETE needed
    await storage.sync()
    storage.release()

    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    state = await storage.load()
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    storage.append(entries(2, 2, 3))  # the first append after a reopen replaces 2 to 4
    storage.truncate(2)
    storage.append(entries(2, 3, 4))
    await storage.sync()
    storage.release()

    storage = DiskStorage(tmp_path)
    await storage.acquire("a")
    state = await storage.load()
    storage.release()
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 4), (3, 4)]


def test_sqlite_is_loaded_only_by_a_disk_storage_that_opens(tmp_path: Path) -> None:
    # A process that never opens a DiskStorage (MemoryStorage, in-process tests) does
    # not pay for sqlite3 (about 1.6 MB of memory at import); one that opens one works.
    code = textwrap.dedent(
        f"""
        import sys, trio, trioraft, trioraft.recipes
        assert "sqlite3" not in sys.modules, "importing trioraft loaded sqlite3"
        storage = trioraft.DiskStorage({str(tmp_path / "a")!r})
        assert "sqlite3" not in sys.modules, "making a DiskStorage loaded sqlite3"
        async def main():
            async with trioraft.open_server(
                trioraft.recipes.Counter, name="a", network=trioraft.MemoryNetwork(),
                initial_config=["a"], storage=storage,
            ) as server:
                await server.await_leader()
                print(await server.write(3))
        trio.run(main)
        assert "sqlite3" in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


async def test_a_snapshot_file_changed_in_place_is_damage(tmp_path: Path) -> None:
    """Integrity: a snapshot file whose bytes changed (same length: a bit flip, a torn
    sector) does not match the checksum recorded with it: StorageError at restart,
    naming the file; the server never restores it."""

    async def run(writes: int) -> None:
        async with trio.open_nursery() as nursery:
            server = await trioraft.start_server(
                nursery,
                Counter,
                name="a",
                network=trioraft.MemoryNetwork(),
                initial_config=["a"],
                storage=DiskStorage(tmp_path),
            )
            await server.await_leader()
            for _ in range(writes):
                await server.write(7)
            await server.take_snapshot()
            await server.stop()

    with trio.fail_after(30):
        await run(3)
        await run(0)  # an intact snapshot file restarts
        (path,) = tmp_path.glob("snapshot-*.bin")
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.RaisesGroup(
            pytest.RaisesExc(StorageError, match=f"{path}.*does not match its checksum"),
            flatten_subgroups=True,
        ):
            await run(0)
    assert path.read_bytes() == bytes(data)  # left as found


async def test_a_store_this_process_cannot_write_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage errors of any kind surface as StorageError naming the path: a directory
    the process may not write, and an OS error opening a file of the store (not a raw
    PermissionError, and never called damaged). (As root, permissions do not stop this
    process: the OS's answers are stood in for.)"""
    store = tmp_path / "store"
    async with trioraft.open_server(
        Counter, name="a", network=trioraft.MemoryNetwork(), initial_config=["a"],
        storage=DiskStorage(store),
    ) as server:  # fmt: skip
        await server.await_leader()
        await server.write(1)
    real_access, real_open = os.access, os.open

    def no_write(path: Any, mode: int, **kwargs: Any) -> bool:
        return False if Path(path) == store and mode & os.W_OK else real_access(path, mode)

    monkeypatch.setattr(os, "access", no_write)
    with pytest.raises(StorageError, match=f"{store}.* cannot be written: permission denied"):
        await DiskStorage(store).acquire("a")
    monkeypatch.setattr(os, "access", real_access)

    def read_only_fs(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == "LOCK":
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_fs)
    with pytest.raises(StorageError, match=f"{store / 'LOCK'}.*Read-only file system") as info:
        await DiskStorage(store).acquire("a")
    assert "damaged" not in str(info.value)
