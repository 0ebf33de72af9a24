"""The DuckDB connection: one owner process, a cursor per thread, writes serialised.

DuckDB allows one writing process per file and a shared connection object raises when used
from several threads, so each thread gets its own cursor of the one connection, and every
write transaction takes a process-wide lock (two writers on the same row raise
"Conflict on update!")."""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from scanbatch.errors import BadRequest, StoreLocked
from scanbatch.private import private_dir, private_file
from scanbatch.store.migrations import MIGRATIONS_TABLE, _migrations

T = TypeVar("T")
MEMO_ENTRIES = 32  # cached figures kept (one per metrics query: groupBy and scope)


def utcnow() -> datetime:
    """The time every row of the store is stamped with."""
    return datetime.now(UTC)


def parse_job_id(job_id: str) -> str:
    """The canonical form of a job id (the key of `scan_jobs` and of every row about a job),
    or 400 `Invalid job ID format`."""
    job_id = str(job_id)
    if not job_id.isascii():  # uuid.UUID reads `١٢` (Arabic-Indic digits) as 12
        raise BadRequest("Invalid job ID format")
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise BadRequest("Invalid job ID format") from None


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    private_dir(path.parent)
    try:
        conn = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        held = _LOCK_HOLDER.search(str(exc))
        if held is None:
            raise
        raise StoreLocked(
            f"The store {path} is in use by process {held['pid']} ({held['exe']}), "
            "probably a running `scanbatch serve`. DuckDB allows one process per file: "
            "stop that process, or talk to it over HTTP, or point SCANBATCH_DATA_DIR elsewhere."
        ) from None
    private_file(path)  # whatever the umask of the process that opened it first
    return conn


class Database:
    def __init__(self, path: Path, *, target: int | None = None) -> None:
        """`target`: migrate only up to that version (a restore loads a backup's tables at
        the schema they were taken at, then migrates the rest)."""
        self.path = Path(path)
        self._conn = _connect(self.path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        # Committed write transactions so far: what `cached` values are valid for. The server
        # is the store's only writer, so a figure computed at generation g holds until the
        # next commit.
        self.generation = 0
        self._memo: dict[Hashable, tuple[int, Any]] = {}
        self._memo_lock = threading.Lock()
        self.migrate(target)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._conn.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's cursor, for reads. Its result is closed when the block ends: DuckDB
        keeps a result that was not read to its end (a `fetchone`) open, and with it its
        transaction, until the cursor's next statement; a thread that then sleeps would make
        DuckDB keep the undo of every later write (measured: +724 MiB of server RSS over 5,000
        backlog records, the webhook sender idle between deliveries)."""
        cur = self.cursor()
        try:
            yield cur
        finally:
            if not getattr(self._local, "in_tx", False):  # a write's own result is its own
                with contextlib.suppress(duckdb.Error):
                    cur.fetchall()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A serialised transaction. Any exception rolls back explicitly: after a failed
        statement DuckDB's COMMIT would roll back silently, and we want the error instead."""
        with self._write_lock:
            cur = self.cursor()
            if getattr(self._local, "in_tx", False):  # nested: join the outer transaction
                yield cur
                return
            cur.execute("BEGIN TRANSACTION")
            self._local.in_tx = True
            try:
                yield cur
                cur.execute("COMMIT")
                self.generation += 1
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                self._local.in_tx = False

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """`compute()`, or what it returned before if nothing was committed since. Values are
        shared between callers: they must not be changed."""
        with self._memo_lock:
            hit = self._memo.get(key)
            if hit is not None and hit[0] == self.generation:
                return hit[1]
        generation = self.generation  # read before: a commit during compute() invalidates it
        value = compute()
        with self._memo_lock:
            self._memo.pop(key, None)
            self._memo[key] = (generation, value)
            while len(self._memo) > MEMO_ENTRIES:
                del self._memo[next(iter(self._memo))]  # the oldest
        return value

    @contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own in one read transaction: every statement in the block sees the
        store as it was at the block's first statement (DuckDB's MVCC: writes go on meanwhile,
        and a snapshot starts at the first statement after BEGIN, not at BEGIN; measured)."""
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            yield cur
            cur.execute("COMMIT")
        finally:
            cur.close()

    def migrate(self, target: int | None = None) -> list[int]:
        """Apply the migrations not yet recorded (up to version `target` if given), each in
        its own transaction, in order."""
        applied_now = []
        with self.write() as cur:
            cur.execute(MIGRATIONS_TABLE)
        done = {
            row[0]
            for row in self.cursor().execute("SELECT version FROM schema_migrations").fetchall()
        }
        for migration in _migrations():
            if migration.version in done:
                continue
            if target is not None and migration.version > target:
                break
            with self.write() as cur:
                for statement in _statements(migration.sql):
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [migration.version, migration.name, datetime.now(UTC)],
                )
            applied_now.append(migration.version)
        return applied_now

    def close(self) -> None:
        with self._cursors_lock:
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
        self._conn.close()


def records(rel: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts keyed by column name."""
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
