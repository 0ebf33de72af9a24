"""The job store's memory of what it committed: each job's view (a least-recently-used cache)
and each listing user's jobs, kept exact by the writes.

This process is the store's only writer, so it knows exactly when these go stale. Polling
clients ask for the same jobs over and over: a job GET is answered from memory, not DuckDB
(whose queries compete for the CPU with the kernels), and so is a list (a DuckDB list query
under load, writes committing beside it, took up to a second, holding a request thread all the
while). `JobStore` tells the cache when a job write begins and hands it the view it re-read
right after the commit, in commit order, so the view in memory is always the committed state."""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from datetime import UTC, datetime

from scanbatch.models import JobList, JobSummary, JobView, Status

# Job views kept in memory, least recently used dropped first. Apps poll the jobs they have in
# flight, a few each; a 10-record view holds ~35 KB (tracemalloc), so 1,024 of them were 36 MiB
# that took a server's first 1,024 jobs to fill: its memory looked like a leak for that long.
VIEW_CACHE_SIZE = 256

SUMMARY_COLUMNS = "id, status, total_items, completed_items, failed_items, created_at, updated_at"

Entry = tuple[str, JobView]  # (owner, view)


class JobCache:
    def __init__(self, size: int = VIEW_CACHE_SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._views: OrderedDict[str, Entry] = OrderedDict()
        # A GET that misses reads DuckDB and keeps what it read only if no write began or was
        # under way meanwhile: a read that raced a commit may be older than what another GET
        # has already returned, and the writer's own re-read is the one to keep.
        self._writes = 0  # job writes begun so far
        self._writing = False
        self._lists: dict[str, _UserJobs] = {}

    # -- views ----------------------------------------------------------------------------

    def lookup(self, job_id: str) -> tuple[Entry | None, int | None]:
        """The job's entry (None: a miss) and a mark for `keep`, taken at the same moment."""
        with self._lock:
            entry = self._views.get(job_id)
            if entry is not None:
                self._views.move_to_end(job_id)
            return entry, None if self._writing else self._writes

    def keep(self, job_id: str, entry: Entry, mark: int | None) -> Entry:
        """After a miss: the entry to answer, `entry` (read from DuckDB since `lookup` gave
        `mark`) or the one cached meanwhile."""
        with self._lock:
            kept = self._views.get(job_id)
            if kept is not None:
                # Cached while we read: a writer's re-read, in commit order. Ours may have
                # seen a newer commit whose writer has not replaced that view yet, and
                # answering it would let this client's next GET (a hit) go back in time.
                return kept
            if mark == self._writes and not self._writing:
                self._put(job_id, entry)
            return entry

    def forget(self, job_id: str) -> None:
        """Drop the job's view: the next GET reads DuckDB."""
        with self._lock:
            self._views.pop(job_id, None)

    def _put(self, job_id: str, entry: Entry) -> None:
        self._views[job_id] = entry
        self._views.move_to_end(job_id)
        if len(self._views) > self.size:
            self._views.popitem(last=False)

    # -- writes ---------------------------------------------------------------------------

    def write_begins(self) -> None:
        with self._lock:
            self._writes += 1
            self._writing = True

    def write_ended(self, job_id: str, fresh: Entry | None, reread: bool) -> None:
        """The job's write is over: `fresh` is its view re-read after the commit (None when the
        job is gone), unless `reread` is false (a failed write or re-read: dropped, and the
        lists that hold it are rebuilt at their next list)."""
        with self._lock:
            if fresh is None:
                self._views.pop(job_id, None)
            else:
                self._put(job_id, fresh)
            self._writing = False
        self._relist(job_id, fresh if reread else False)

    def _relist(self, job_id: str, fresh: Entry | bool | None) -> None:
        with self._lock:
            if fresh is False:
                for user in [u for u, jobs in self._lists.items() if job_id in jobs.rows]:
                    del self._lists[user]
                return
            if fresh is None:
                for jobs in self._lists.values():
                    jobs.remove(job_id)
                return
            assert isinstance(fresh, tuple)
            owner, view = fresh
            jobs = self._lists.get(owner)
            if jobs is not None:
                jobs.put(summary_row(view))

    # -- lists ----------------------------------------------------------------------------

    def page(self, user_id: str, limit: int, offset: int) -> JobList | None:
        """A page of the user's jobs from memory, None before their first list."""
        with self._lock:
            jobs = self._lists.get(user_id)
            return None if jobs is None else jobs.page(limit, offset)

    def load(self, user_id: str, rows: list[tuple], limit: int, offset: int) -> JobList:
        """Keep the user's jobs, `rows` of `SUMMARY_COLUMNS` read with no job write under
        way (so that no write can fall between the read and the list it becomes)."""
        with self._lock:
            jobs = self._lists[user_id] = _UserJobs(rows)
            return jobs.page(limit, offset)


class _UserJobs:
    """One user's jobs as summary rows, with their keys in list order (newest first, then
    the greater id, as `ORDER BY created_at DESC, id DESC`), kept ascending for `bisect`."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows: dict[str, tuple] = {str(r[0]): r for r in rows}
        self.keys = sorted(_list_key(r) for r in self.rows.values())

    def put(self, row: tuple) -> None:
        job_id = str(row[0])
        old = self.rows.get(job_id)
        if old is None:
            bisect.insort(self.keys, _list_key(row))
        self.rows[job_id] = row  # created_at never changes: the key stays where it is

    def remove(self, job_id: str) -> None:
        row = self.rows.pop(job_id, None)
        if row is not None:
            self.keys.remove(_list_key(row))

    def page(self, limit: int, offset: int) -> JobList:
        end = max(len(self.keys) - offset, 0)
        keys = self.keys[max(end - limit, 0) : end][::-1]
        return JobList(
            jobs=[summary(self.rows[job_id]) for _created, job_id in keys],
            total=len(self.keys),
            limit=limit,
            offset=offset,
        )


def _list_key(row: tuple) -> tuple[datetime, str]:
    return row[5].astimezone(UTC), str(row[0])


def summary_row(view: JobSummary) -> tuple:
    """A job as a row of `SUMMARY_COLUMNS`."""
    return (
        view.job_id,
        view.status.value,
        view.total_items,
        view.completed_items,
        view.failed_items,
        view.created_at,
        view.updated_at,
    )


def summary(row: tuple) -> JobSummary:
    """A row of `SUMMARY_COLUMNS` as the job's summary."""
    return JobSummary(
        job_id=str(row[0]),
        status=Status(row[1]),
        total_items=row[2],
        completed_items=row[3],
        failed_items=row[4],
        created_at=row[5].astimezone(UTC),
        updated_at=row[6].astimezone(UTC),
    )
