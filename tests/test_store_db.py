import subprocess
import sys
import textwrap

import pytest

from scanbatch.errors import StoreLocked
from scanbatch.store import Database, JobStore
from scanbatch.store.migrations import _migrations


def test_migrations_are_recorded_in_order_and_applied_once(tmp_path):
    db = Database(tmp_path / "s.duckdb")
    versions = [
        r[0]
        for r in db.cursor()
        .execute("SELECT version FROM schema_migrations ORDER BY applied_at, version")
        .fetchall()
    ]
    assert versions == [m.version for m in _migrations()] == sorted(versions)
    db.close()
    again = Database(tmp_path / "s.duckdb")
    assert again.migrate() == []
    again.close()


def test_migration_versions_are_unique_and_consecutive():
    versions = [m.version for m in _migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_a_failed_transaction_rolls_back_and_reports(tmp_path):
    db = Database(tmp_path / "s.duckdb")
    with pytest.raises(Exception, match="duplicate key"), db.write() as cur:
        cur.execute("INSERT INTO api_keys VALUES ('k', 'u', 'dj', 'h', now(), NULL)")
        cur.execute("INSERT INTO api_keys VALUES ('k', 'u', 'dj', 'h2', now(), NULL)")
    assert db.cursor().execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0
    db.close()


def test_store_held_by_another_process_says_who_and_what_to_do(tmp_path):
    path = tmp_path / "s.duckdb"
    JobStore.open(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked) as info:
            JobStore.open(path)
        message = info.value.message
        assert f"process {holder.pid}" in message
        assert "scanbatch serve" in message and "SCANBATCH_DATA_DIR" in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_cached_values_hold_until_the_next_commit(tmp_path):
    db = Database(tmp_path / "s.duckdb")
    try:
        calls = []

        def compute():
            calls.append(1)
            return db.cursor().execute("SELECT count(*) FROM api_keys").fetchone()[0]

        assert db.cached("keys", compute) == 0 and db.cached("keys", compute) == 0
        assert len(calls) == 1
        with db.write() as cur:
            cur.execute("INSERT INTO api_keys VALUES ('k', 'u', 'dj', 'h', now(), NULL)")
        assert db.cached("keys", compute) == 1 and len(calls) == 2
        with pytest.raises(RuntimeError), db.write() as cur:  # rolled back: nothing changed
            cur.execute("DELETE FROM api_keys")
            raise RuntimeError("abandoned")
        assert db.cached("keys", compute) == 1 and len(calls) == 2
        for n in range(40):  # bounded: the oldest entries go
            db.cached(("other", n), lambda: None)
        assert db.cached("keys", compute) == 1 and len(calls) == 3
    finally:
        db.close()


def test_a_reader_that_goes_idle_holds_no_transaction_open(tmp_path):
    """A read that took one row (`fetchone`) leaves DuckDB's result, and so its transaction,
    open until the cursor's next statement; a thread that then sleeps (the webhook sender
    between deliveries) would keep every later write's undo in memory (found: +724 MiB over
    5,000 backlog records). `Database.read` closes the result when the block ends."""
    import threading

    db = Database(tmp_path / "idle.duckdb")
    with db.write() as cur:
        cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR)")
        cur.execute("INSERT INTO t VALUES (1, '')")

    def read_one_row() -> None:
        with db.read() as cur:
            cur.execute("SELECT count(*) FROM t").fetchone()

    reader = threading.Thread(target=read_one_row)
    reader.start()
    reader.join()  # its cursor stays, idle, as a sleeping thread's does
    for n in range(200):
        with db.write() as cur:
            cur.execute("UPDATE t SET v = ? WHERE id = 1", [str(n) * 50_000])
    held = (
        db.cursor()
        .execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'TRANSACTION'")
        .fetchone()[0]
    )
    db.close()
    assert held < 5 * 2**20, f"{held / 2**20:.0f} MiB of undo held for an idle reader"
