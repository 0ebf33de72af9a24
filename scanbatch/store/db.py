"""The DuckDB connection: one owner process, a cursor per thread, writes serialised.

DuckDB allows one writing process per file and a shared connection object raises when used
from several threads, so each thread gets its own cursor of the one connection, and every
write transaction takes a process-wide lock (two writers on the same row raise
"Conflict on update!")."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from scanbatch.diskspace import is_disk_full
from scanbatch.errors import BadRequest, DiskFull, StoreLocked
from scanbatch.private import private_dir, private_file
from scanbatch.store.migrations import MIGRATIONS_TABLE, _migrations

log = logging.getLogger(__name__)
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
        self._conn: duckdb.DuckDBPyConnection | None = _connect(self.path)
        # Bumped when the connection is reopened (`_reopen`): a thread's cursor of an older
        # connection is replaced at its next use.
        self._epoch = 0
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

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:  # a reopen failed: try again
            with self._write_lock:
                if self._conn is None:
                    self._reopen(None)
        assert self._conn is not None
        return self._conn

    def cursor(self) -> duckdb.DuckDBPyConnection:
        epoch = self._epoch  # read first: the connection is at least that new (`_reopen`)
        conn = self._connection()
        cur = getattr(self._local, "cursor", None)
        if cur is not None and self._local.epoch != epoch:
            self._forget(cur)  # of the connection that was reopened: this thread's own
            cur = None
        if cur is None:
            cur = conn.cursor()
            self._local.cursor = cur
            self._local.epoch = epoch
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
        statement DuckDB's COMMIT would roll back silently, and we want the error instead.
        A full disk is `DiskFull` naming the store (507), with nothing of the transaction
        kept; the store takes writes again once space is freed (see scanbatch.diskspace)."""
        with self._write_lock:
            if getattr(self._local, "in_tx", False):  # nested: join the outer transaction
                yield self.cursor()
                return
            cur = self.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
            except duckdb.FatalException as exc:  # invalidated by a statement outside a write
                self._reopen(exc)
                cur = self.cursor()
                cur.execute("BEGIN TRANSACTION")
            self._local.in_tx = True
            committing = False
            try:
                yield cur
                committing = True
                cur.execute("COMMIT")
                self.generation += 1
            except BaseException as exc:
                # A COMMIT that failed has ended the transaction already (a ROLLBACK would
                # raise "no transaction is active" over the real error).
                if not committing:
                    with contextlib.suppress(duckdb.FatalException):
                        cur.execute("ROLLBACK")
                if isinstance(exc, duckdb.FatalException):
                    self._reopen(exc)
                if is_disk_full(exc) and not isinstance(exc, DiskFull):
                    raise DiskFull(self.path) from exc
                raise
            finally:
                self._local.in_tx = False

    def _reopen(self, cause: BaseException | None) -> None:
        """A new connection in place of one DuckDB invalidated (a checkpoint that found the
        disk full invalidates the database: every statement after it fails until the file is
        opened again). Its commits are in the WAL and come back (measured: even while the
        disk is still full). Called holding the write lock; other threads' cursors are
        replaced at their next use, by their own thread."""
        log.warning("the store %s failed (%s): opening it again", self.path, cause)
        own = getattr(self._local, "cursor", None)
        if own is not None:
            self._forget(own)
            self._local.cursor = None
        if self._conn is not None:
            with contextlib.suppress(duckdb.Error):
                self._conn.close()
        try:
            conn = _connect(self.path)
        except BaseException:
            self._conn = None  # the next use tries again
            raise
        # Assigned before the epoch moves: a thread that sees the new epoch finds the new
        # connection.
        self._conn = conn
        self._epoch += 1

    def _forget(self, cur: duckdb.DuckDBPyConnection) -> None:
        with self._cursors_lock:
            if cur in self._cursors:
                self._cursors.remove(cur)
        with contextlib.suppress(duckdb.Error):
            cur.close()

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
        cur = self._connection().cursor()
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
        if self._conn is not None:
            self._conn.close()


def records(rel: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed query as dicts keyed by column name."""
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
