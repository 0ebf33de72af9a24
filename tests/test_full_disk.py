"""A full disk, on a real small filesystem each test mounts itself (a tmpfs: we are root here
and in CI; elsewhere run this file under `unshare -rm`, which makes the test root in a user and
mount namespace of its own). Nothing mocks `write`: the disk is filled with a file until the
kernel says ENOSPC, and the server, its store and its kernels meet that disk as a station's
would.

What each write raised, measured here, is in scanbatch/diskspace.py."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest

from scanbatch.errors import DiskFull
from scanbatch.store import Database

MiB = 1024 * 1024
TRUTH = {
    "artistName": "Can",
    "albumTitle": "Tago Mago",
    "labelName": "United Artists",
    "catalogNumber": "UAS 29 211",
    "reviewText": None,
    "upc": None,
}


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` for the block, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.fail(
            "mounting a tmpfs needs root: run `unshare -rm .venv/bin/python -m pytest "
            "tests/test_full_disk.py` (a mount namespace of the test's own)"
        )
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # a process still in it


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking the disk's free space but `leave` bytes; remove it to free them."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb", buffering=0) as fh:
        left = free - leave
        block = b"\0" * MiB
        while left > 0:
            try:
                left -= fh.write(block[: min(left, MiB)])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def test_a_commit_on_a_full_disk_is_507_and_the_store_takes_writes_once_space_is_freed(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        db = Database(disk / "store.duckdb")
        try:
            with db.write() as cur:
                cur.execute("CREATE TABLE t (n INTEGER, s VARCHAR)")
                cur.execute("INSERT INTO t VALUES (1, 'kept')")
            db.cursor().execute("CHECKPOINT")  # an empty WAL: the next commit needs space
            filler = fill(disk)
            with pytest.raises(DiskFull) as refused, db.write() as cur:
                cur.execute("INSERT INTO t SELECT range, repeat('x', 100) FROM range(1000)")
            assert refused.value.status == 507
            assert str(disk / "store.duckdb") in refused.value.message
            with db.read() as cur:  # nothing of it, and reads go on
                assert cur.execute("SELECT count(*) FROM t").fetchone() == (1,)

            filler.unlink()
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (2, 'after')")
            with db.read() as cur:
                assert cur.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]
        finally:
            db.close()


def test_the_store_opens_itself_again_after_a_checkpoint_on_a_full_disk_invalidated_it(
    tmp_path, caplog
):
    """A checkpoint that cannot grow the file makes DuckDB invalidate the database (every
    statement after it fails, reads too): `Database` opens the file again, with every commit
    acknowledged before, and other threads' cursors follow."""
    with small_disk(tmp_path / "disk", "4m") as disk:
        db = Database(disk / "store.duckdb")
        try:
            with db.write() as cur:
                cur.execute("CREATE TABLE t (n INTEGER, s VARCHAR)")
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (1, 'acknowledged')")
            other = {}
            seen = threading.Event()
            go_on = threading.Event()

            def reader() -> None:  # a thread with a cursor of the first connection
                with db.read() as cur:
                    other["before"] = cur.execute("SELECT count(*) FROM t").fetchone()
                seen.set()
                go_on.wait(30)
                with db.read() as cur:
                    other["after"] = cur.execute("SELECT count(*) FROM t").fetchone()

            thread = threading.Thread(target=reader)
            thread.start()
            seen.wait(30)
            # Every commit checkpoints, with room for the WAL but not for the file to grow.
            db.cursor().execute("SET checkpoint_threshold = '1KB'")
            filler = fill(disk, leave=64 * 1024)
            with pytest.raises(DiskFull), db.write() as cur:
                cur.execute(
                    "INSERT INTO t SELECT range, md5(range::VARCHAR) || md5((range * 7)::VARCHAR)"
                    " FROM range(20000)"
                )
            assert "Failed to create checkpoint" in caplog.text  # the path measured: fatal
            with db.read() as cur:  # a new connection: no "database has been invalidated"
                assert cur.execute("SELECT n, s FROM t").fetchall() == [(1, "acknowledged")]
            go_on.set()
            thread.join(30)
            assert other == {"before": (1,), "after": (1,)}

            filler.unlink()
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (2, 'after')")
            with db.read() as cur:
                assert cur.execute("SELECT count(*) FROM t").fetchone() == (2,)
        finally:
            db.close()
