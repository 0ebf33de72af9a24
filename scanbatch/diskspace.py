"""A full disk: the one place a write's "no space left" becomes `DiskFull` (507), and what a
write leaves behind is removed.

What each write raises on a full disk (measured on a 5 MiB tmpfs, DuckDB 2.0.1):
- a file write (photos staged from an upload, results.jsonl, a thumbnail, a notebook):
  `OSError` errno ENOSPC (EDQUOT where a quota is set), possibly after a short write that
  already put part of the data on disk: a buffered `flush` may leave part of a line behind;
- a DuckDB COMMIT whose WAL (or a large insert's blocks) cannot be written:
  `duckdb.TransactionException` 'Failed to commit: Could not write file "<store>.wal": No
  space left on device'. The transaction is gone (a ROLLBACK then fails: "no transaction is
  active") and the database stays usable: once space is freed the next commit succeeds;
- a checkpoint that cannot grow the store file (the WAL passing `checkpoint_threshold`, 16 MiB
  by default, or an explicit CHECKPOINT): `duckdb.FatalException` 'Failed to create checkpoint
  because of error: Could not write file "<store>": No space left on device'. DuckDB then
  invalidates the database: every later statement, reads included, raises "database has been
  invalidated because of a previous fatal error". Commits acknowledged before are in the WAL
  and come back when the file is opened again (even while the disk is still full), so
  `scanbatch.store.db.Database` reopens its connection."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from scanbatch.errors import DiskFull

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# DuckDB reports the OS's own words for the errno inside its message ("Could not write file
# ...: No space left on device"); "Could not write file" alone is any I/O error (EIO, EROFS).
_DUCKDB_WORDS = tuple(os.strerror(code) for code in sorted(DISK_FULL_ERRNOS))


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write that found no space left (or a quota reached)."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    # Looked up, not imported: a notebook kernel, which never opens the store, does not
    # load DuckDB for this.
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.Error):
        return any(words in str(exc) for words in _DUCKDB_WORDS)
    return False


@contextmanager
def disk_full_guard(path: Path | str, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block; a full disk inside it becomes `DiskFull(path)` (`path`: what the user
    knows the disk by, e.g. the jobs folder), after `cleanup()` removed what the block had
    written. Any other exception passes unchanged, and so does a DiskFull raised inside (it
    names its own disk)."""
    try:
        yield
    except DiskFull:
        _clean(cleanup)
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        _clean(cleanup)
        raise DiskFull(path) from exc


def _clean(cleanup: Callable[[], None] | None) -> None:
    if cleanup is not None:
        with contextlib.suppress(OSError):  # removing frees space: it does not need any
            cleanup()


def write_fully(write: Callable[[memoryview], int | None], data: bytes | memoryview) -> int:
    """Write all of `data` with a raw `write` that may write less than it is given: near a
    full disk a write puts what fits and returns its count, and only the next one raises
    ENOSPC. Ignoring the count would keep a silently truncated file."""
    view = memoryview(data).cast("B")
    while view:
        written = write(view)
        if written is None:  # a non-blocking file that would block: not ours
            raise OSError(errno.EAGAIN, "write would block")
        view = view[written:]
    return len(data)


def same_disk(a: Path, b: Path) -> bool:
    """Whether `a` and `b` (existing paths) are on one filesystem: freeing one frees the other."""
    return os.stat(a).st_dev == os.stat(b).st_dev
