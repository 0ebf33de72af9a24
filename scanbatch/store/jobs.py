"""The job store API: scan jobs, their per-item results and API keys, on one DuckDB file."""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scanbatch.catalog.snapshot import matched_albums
from scanbatch.errors import BadRequest, Conflict, NotFound
from scanbatch.models import (
    ItemOutcome,
    JobList,
    JobSummary,
    JobView,
    Manifest,
    ResultView,
    Status,
)
from scanbatch.names import WRITE_ROLES, Role
from scanbatch.store.db import Database, records

log = logging.getLogger(__name__)

VIEW_CACHE_SIZE = 1024  # job views kept in memory, least recently used dropped first

_SUMMARY_COLUMNS = "id, status, total_items, completed_items, failed_items, created_at, updated_at"


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_job_id(job_id: str) -> str:
    """The canonical form of a job id, or 400 `Invalid job ID format`."""
    job_id = str(job_id)
    if not job_id.isascii():  # uuid.UUID reads `١٢` (Arabic-Indic digits) as 12
        raise BadRequest("Invalid job ID format")
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise BadRequest("Invalid job ID format") from None


def reviewed_message(reviewed: int) -> str:
    return (
        f"The job has {reviewed} reviewed item(s) whose truth would be lost: export the "
        "golden set first (GET /library/scan/review/dataset); a stationManager may delete "
        "anyway with ?force=true"
    )


def item_confidence(extraction: dict[str, Any] | None) -> float | None:
    """The least confident field read: what the review queue sorts by (None: nothing read)."""
    values = [
        f["confidence"]
        for f in (extraction or {}).values()
        if isinstance(f, dict) and isinstance(f.get("confidence"), int | float)
    ]
    return min(values, default=None)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 cannot be brute-forced; no salt needed.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # This process is the store's only writer, so it knows exactly when these go stale.
        # Polling clients ask for the same jobs and present the same tokens over and over: a
        # job GET is answered from memory, not DuckDB (whose queries compete for the CPU with
        # the kernels). Every write method re-reads the view of the job it changed right after
        # its commit, in commit order, so the view in memory is always the committed state.
        self._cache_lock = threading.Lock()
        self._views: OrderedDict[str, tuple[str, JobView]] = OrderedDict()  # id -> (owner, view)
        # A GET that misses reads DuckDB and keeps what it read only if no write began or was
        # under way meanwhile: a read that raced a commit may be older than what another GET
        # has already returned, and the writer's own re-read is the one to keep.
        self._writes = 0  # job writes begun so far
        self._writing = False
        self._write_order = threading.RLock()  # one job write (and its re-read) at a time
        self._local = threading.local()
        self._keys: dict[str, ApiKey] = {}
        # Bumped by every revoke after its commit: a lookup keeps the row it read only if no
        # revoke finished meanwhile (it may have read the row before the revoke committed).
        self._keys_lock = threading.Lock()
        self._keys_revokes = 0
        # Each listing user's jobs, loaded from DuckDB at their first list and kept exact by
        # the writes: the polling app lists too, and a DuckDB list query under load (writes
        # committing beside it) took up to a second, holding a request thread all the while.
        self._lists: dict[str, _UserJobs] = {}

    @contextmanager
    def _job_write(self, job_id: str) -> Iterator[Any]:
        """A write transaction that changes `job_id`'s view; the view in memory is replaced
        by a fresh read after the commit (dropped if the job is gone or the write failed).
        Nested uses refresh once, after the outermost commit."""
        with self._write_order:
            depth = getattr(self._local, "depth", 0)
            if depth == 0:
                with self._cache_lock:
                    self._writes += 1
                    self._writing = True
            self._local.depth = depth + 1
            fresh = None
            reread = False
            try:
                with self.db.write() as cur:
                    yield cur
                if depth == 0:
                    try:
                        fresh = self._read_view(job_id)
                        reread = True
                    except Exception:
                        # The write is committed; only the copy in memory could not be made.
                        # The next GET reads DuckDB instead.
                        log.exception("could not re-read job %s after a write", job_id)
            finally:
                self._local.depth = depth
                if depth == 0:
                    with self._cache_lock:
                        if fresh is None:
                            self._views.pop(job_id, None)
                        else:
                            self._cache(job_id, fresh)
                        self._writing = False
                    self._relist(job_id, fresh if reread else False)

    def _relist(self, job_id: str, fresh: tuple[str, JobView] | bool | None) -> None:
        """Bring the listed users' indexes in line with the job as committed: `fresh` is its
        re-read, None when it is gone, False when it could not be re-read (a failed write or
        read: the indexes that hold it are rebuilt at their next list)."""
        with self._cache_lock:
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
                jobs.put(_summary_row(view))

    def _cache(self, job_id: str, entry: tuple[str, JobView]) -> None:
        self._views[job_id] = entry
        self._views.move_to_end(job_id)
        if len(self._views) > VIEW_CACHE_SIZE:
            self._views.popitem(last=False)

    @classmethod
    def open(cls, path: Path) -> JobStore:
        return cls(Database(Path(path)))

    def close(self) -> None:
        self.db.close()

    # -- jobs -----------------------------------------------------------------------------

    def create_job(
        self,
        user_id: str,
        manifest: Manifest,
        *,
        job_id: str | None = None,
        extractor: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> str:
        """The job and one pending result row per item, in one transaction."""
        job_id = job_id or str(uuid.uuid4())
        now = utcnow()
        with self._job_write(job_id) as cur:
            cur.execute(
                "INSERT INTO scan_jobs (id, user_id, status, total_items, manifest, extractor, "
                "idempotency_key, request_hash, created_at, updated_at) "
                "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                [
                    job_id,
                    user_id,
                    len(manifest.items),
                    manifest.model_dump_json(by_alias=True),
                    extractor,
                    idempotency_key,
                    request_hash,
                    now,
                    now,
                ],
            )
            # One statement for all rows: DuckDB's executemany runs one statement per row
            # (10 rows: 27 ms against 6 ms), and this is on the POST's path.
            rows = ", ".join(["(?, ?, 'pending', ?, ?, ?, ?, ?)"] * len(manifest.items))
            cur.execute(
                "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
                f"context, created_at, updated_at) VALUES {rows}",
                [
                    value
                    for index, item in enumerate(manifest.items)
                    for value in (
                        job_id,
                        index,
                        item.image_count,
                        json.dumps(item.photo_types),
                        item.context.model_dump_json(by_alias=True, exclude_none=True)
                        if item.context
                        else None,
                        now,
                        now,
                    )
                ],
            )
        return job_id

    def _owned(self, cur: Any, job_id: str, user_id: str | None) -> tuple:
        row = cur.execute(
            f"SELECT {_SUMMARY_COLUMNS}, user_id FROM scan_jobs WHERE id = ?",
            [parse_job_id(job_id)],
        ).fetchone()
        # Another user's job is indistinguishable from a missing one.
        if row is None or (user_id is not None and row[-1] != user_id):
            raise NotFound("Job not found")
        return row

    def job_extractor(self, job_id: str) -> str | None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT extractor FROM scan_jobs WHERE id = ?", [parse_job_id(job_id)]
            ).fetchone()
        return row[0] if row else None

    def get_job(self, job_id: str, user_id: str | None = None) -> JobView:
        """The job with its results in item order. `user_id=None` skips the owner check
        (the server's own bookkeeping and the local CLI). The same object is returned until
        the job changes."""
        job_id = parse_job_id(job_id)
        with self._cache_lock:
            entry = self._views.get(job_id)
            if entry is not None:
                self._views.move_to_end(job_id)
            writes = None if self._writing else self._writes
        if entry is None:
            entry = self._read_view(job_id)
            if entry is None:
                raise NotFound("Job not found")
            with self._cache_lock:
                kept = self._views.get(job_id)
                if kept is not None:
                    # Cached while we read: a writer's re-read, in commit order. Ours may have
                    # seen a newer commit whose writer has not replaced that view yet, and
                    # answering it would let this client's next GET (a hit) go back in time.
                    entry = kept
                elif writes == self._writes and not self._writing:
                    self._cache(job_id, entry)
        owner, view = entry
        # Another user's job is indistinguishable from a missing one.
        if user_id is not None and owner != user_id:
            raise NotFound("Job not found")
        return view

    def _read_view(self, job_id: str) -> tuple[str, JobView] | None:
        """(owner, view) of the job as DuckDB has it, None when there is no such job."""
        with self.db.read() as cur:
            row = cur.execute(
                f"SELECT {_SUMMARY_COLUMNS}, user_id FROM scan_jobs WHERE id = ?", [job_id]
            ).fetchone()
            if row is None:
                return None
            rel = cur.execute(
                "SELECT item_index, status, extraction, matched_album_id, match_score, "
                "match_note, error_message, error_code, retryable, input_tokens, output_tokens "
                "FROM scan_results WHERE job_id = ? ORDER BY item_index",
                [row[0]],
            )
            results = records(rel)
            albums = matched_albums(cur, (r["matched_album_id"] for r in results))
        views, tokens_in, tokens_out = [], 0, 0
        for r in results:
            views.append(
                ResultView(
                    item_index=r["item_index"],
                    status=Status(r["status"]),
                    extraction=json.loads(r["extraction"]) if r["extraction"] else None,
                    matched_album_id=r["matched_album_id"],
                    matched_album=albums.get(r["matched_album_id"]),
                    match_score=r["match_score"],
                    match_note=r["match_note"],
                    error_message=r["error_message"],
                    error_code=r["error_code"],
                    retryable=r["retryable"],
                )
            )
            tokens_in += r["input_tokens"] or 0
            tokens_out += r["output_tokens"] or 0
        view = JobView(
            **_summary(row).model_dump(),
            results=views,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )
        return str(row[-1]), view

    def list_jobs(self, user_id: str, limit: int = 20, offset: int = 0) -> JobList:
        with self._cache_lock:
            jobs = self._lists.get(user_id)
            if jobs is not None:
                return jobs.page(limit, offset)
        # The first list of this user: read DuckDB with no write under way, so that no write
        # can fall between the read and the index it becomes.
        with self._write_order:
            with self.db.read() as cur:
                rows = cur.execute(
                    f"SELECT {_SUMMARY_COLUMNS} FROM scan_jobs WHERE user_id = ?", [user_id]
                ).fetchall()
            with self._cache_lock:
                jobs = self._lists[user_id] = _UserJobs(rows)
                return jobs.page(limit, offset)

    def find_idempotent(self, user_id: str, key: str, within: timedelta) -> tuple[str, str] | None:
        """(job id, request hash) of the user's job created with this key within `within`."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT id, request_hash FROM scan_jobs WHERE user_id = ? AND idempotency_key = ? "
                "AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
                [user_id, key, utcnow() - within],
            ).fetchone()
        return (str(row[0]), row[1]) if row else None

    def unfinished_jobs(self) -> list[str]:
        """Jobs left pending or processing, oldest first: what a restarted server resumes."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id FROM scan_jobs WHERE status IN ('pending', 'processing') "
                "ORDER BY created_at"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def unfinished_items(self, job_id: str) -> list[int]:
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT item_index FROM scan_results WHERE job_id = ? "
                "AND status IN ('pending', 'processing') ORDER BY item_index",
                [parse_job_id(job_id)],
            ).fetchall()
        return [r[0] for r in rows]

    def mark_processing(self, job_id: str) -> None:
        """The job and its unfinished items start processing."""
        job_id = parse_job_id(job_id)
        now = utcnow()
        with self._job_write(job_id) as cur:
            cur.execute(
                "UPDATE scan_results SET status = 'processing', updated_at = ? "
                "WHERE job_id = ? AND status = 'pending'",
                [now, job_id],
            )
            cur.execute(
                "UPDATE scan_jobs SET status = 'processing', updated_at = ? "
                "WHERE id = ? AND status IN ('pending', 'processing')",
                [now, job_id],
            )

    def record_outcomes(self, job_id: str, outcomes: list[ItemOutcome]) -> int:
        """Store finished items. Idempotent: an item that is already finished keeps its first
        outcome, so ingesting the same `results.jsonl` lines twice changes nothing. Returns
        how many items changed."""
        job_id = parse_job_id(job_id)
        if not outcomes:
            return 0
        now = utcnow()
        changed = 0
        with self._job_write(job_id) as cur:
            for o in outcomes:
                u = o.usage
                cur.execute(
                    "UPDATE scan_results SET status = ?, extraction = ?, matched_album_id = ?, "
                    "match_score = ?, match_method = ?, match_note = ?, error_message = ?, "
                    "error_code = ?, "
                    "retryable = ?, extractor = ?, model = ?, prompt_version = ?, latency_ms = ?, "
                    "input_tokens = ?, output_tokens = ?, retries = ?, raw_response = ?, "
                    "confidence = ?, updated_at = ?, completed_at = ? "
                    "WHERE job_id = ? AND item_index = ? AND status IN ('pending', 'processing')",
                    [
                        o.status.value,
                        json.dumps(o.extraction) if o.extraction is not None else None,
                        o.matched_album_id,
                        o.match_score,
                        o.match_method,
                        o.match_note,
                        o.error_message,
                        o.error_code,
                        o.retryable,
                        u.extractor if u else None,
                        u.model if u else None,
                        u.prompt_version if u else None,
                        u.latency_ms if u else None,
                        u.input_tokens if u else None,
                        u.output_tokens if u else None,
                        u.retries if u else None,
                        u.raw_response if u else None,
                        item_confidence(o.extraction),
                        now,
                        o.finished_at,
                        job_id,
                        o.item_index,
                    ],
                )
                changed += cur.fetchone()[0]
            if changed:
                self._recount(cur, job_id, now)
        return changed

    def fail_unfinished(self, job_id: str, message: str, code: str = "not_processed") -> int:
        """Items not yet finished end `failed` with `message` (a cancelled job, a notebook that
        died). Returns how many."""
        job_id = parse_job_id(job_id)
        now = utcnow()
        with self._job_write(job_id) as cur:
            cur.execute(
                "UPDATE scan_results SET status = 'failed', error_message = ?, error_code = ?, "
                "retryable = true, updated_at = ?, completed_at = ? "
                "WHERE job_id = ? AND status IN ('pending', 'processing')",
                [message, code, now, now, job_id],
            )
            count = cur.fetchone()[0]
            if count:
                self._recount(cur, job_id, now)
        return count

    def finish_job(
        self,
        job_id: str,
        unfinished_message: str | None = None,
        unfinished_code: str = "not_processed",
    ) -> Status:
        """End the job: `completed` when at least one item succeeded, else `failed`. Items still
        unfinished fail first with `unfinished_message` (default: not processed)."""
        job_id = parse_job_id(job_id)
        with self._job_write(job_id) as cur:
            failed = self.fail_unfinished(
                job_id, unfinished_message or "Item was not processed", unfinished_code
            )
            if not failed:  # nothing was left to fail: counted (and so ended) here
                self._recount(cur, job_id, utcnow())
            row = cur.execute("SELECT status FROM scan_jobs WHERE id = ?", [job_id]).fetchone()
        if row is None:
            raise NotFound("Job not found")
        return Status(row[0])

    def _recount(self, cur: Any, job_id: str, now: datetime) -> None:
        """Set the job's counts from its results. A job whose every item is finished is
        finished itself, in the same transaction: the moment the last result is recorded, not
        when the notebook's report is written (the report cannot change an item)."""
        # Counted first, then set: one UPDATE with correlated subqueries took twice as long
        # (11 ms against 6 ms), on every ingest of a result line.
        completed, failed, total = cur.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "count(*) FILTER (WHERE status = 'failed'), count(*) "
            "FROM scan_results WHERE job_id = ?",
            [job_id],
        ).fetchone()
        if completed + failed < total:
            cur.execute(
                "UPDATE scan_jobs SET completed_items = ?, failed_items = ?, updated_at = ? "
                "WHERE id = ?",
                [completed, failed, now, job_id],
            )
            return
        status = Status.COMPLETED if completed else Status.FAILED
        cur.execute(
            "UPDATE scan_jobs SET completed_items = ?, failed_items = ?, status = ?, "
            "updated_at = ?, completed_at = coalesce(completed_at, ?) WHERE id = ?",
            [completed, failed, status.value, now, now, job_id],
        )

    def delete_job(
        self, job_id: str, user_id: str | None = None, *, with_reviews: bool = False
    ) -> None:
        """Remove the job and its results; its reviews too only when `with_reviews` says so
        (they are the golden set). Otherwise a job with reviews is a 409, decided inside the
        transaction that deletes: review saves take the same write lock, so a review saved at
        any moment before the delete is seen here, and one saved after it finds no item (404)."""
        job_id = parse_job_id(job_id)
        # DuckDB foreign keys cannot CASCADE, and a parent whose children were deleted in the
        # same transaction still counts as referenced (duckdb 2.0): children go first, in their
        # own transaction. A crash between the two leaves a job with no results, which a
        # repeated delete removes.
        with self._write_order:
            with self._job_write(job_id) as cur:
                self._owned(cur, job_id, user_id)
                if not with_reviews:
                    reviewed = cur.execute(
                        "SELECT count(*) FROM scan_reviews WHERE job_id = ?", [job_id]
                    ).fetchone()[0]
                    if reviewed:
                        raise Conflict(reviewed_message(reviewed))
                # Reviews have no foreign key (see store/reviews.py); they go with the results.
                cur.execute("DELETE FROM scan_reviews WHERE job_id = ?", [job_id])
                cur.execute("DELETE FROM scan_review_history WHERE job_id = ?", [job_id])
                cur.execute("DELETE FROM scan_results WHERE job_id = ?", [job_id])
            with self._job_write(job_id) as cur:
                cur.execute("DELETE FROM scan_jobs WHERE id = ?", [job_id])

    def result_rows(self, job_id: str) -> list[dict[str, Any]]:
        """Every column of the job's result rows, for audits and evaluation."""
        with self.db.read() as cur:
            rel = cur.execute(
                "SELECT * FROM scan_results WHERE job_id = ? ORDER BY item_index",
                [parse_job_id(job_id)],
            )
            return records(rel)

    # -- API keys -------------------------------------------------------------------------

    def create_key(self, user_id: str, role: str) -> tuple[ApiKey, str]:
        """A new key; the token is returned once and only its hash is stored."""
        if role not in set(Role):
            raise BadRequest(f"Unknown role '{role}': use one of {', '.join(Role)}")
        if not user_id.strip():
            raise BadRequest("user must not be empty")
        key_id = "k_" + secrets.token_hex(4)
        token = f"sb_{key_id[2:]}_{secrets.token_urlsafe(32)}"
        now = utcnow()
        with self.db.write() as cur:
            cur.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, user_id, role, hash_token(token), now],
            )
        return ApiKey(key_id, user_id, role, now, None), token

    def authenticate(self, token: str) -> ApiKey | None:
        token_hash = hash_token(token)
        key = self._keys.get(token_hash)
        if key is not None:
            return key
        revokes = self._keys_revokes
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT id, user_id, role, created_at, revoked_at FROM api_keys "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                [token_hash],
            ).fetchone()
        if row is None:  # unknown tokens are not cached: that cache would grow without bound
            return None
        key = ApiKey(*row)
        with self._keys_lock:
            if self._keys_revokes == revokes:
                self._keys[token_hash] = key
        return key

    def list_keys(self) -> list[ApiKey]:
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id, user_id, role, created_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke at once: once this returns, every request with the key is a 401. The cache
        is cleared after the commit (before it, a lookup could cache the row again), and a
        lookup that read the row before the commit does not cache it (`_keys_revokes`)."""
        with self.db.write() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                [utcnow(), key_id],
            )
            if cur.fetchone()[0] == 0:
                raise NotFound(f"No active API key with id '{key_id}': see `scanbatch keys list`")
            row = cur.execute(
                "SELECT id, user_id, role, created_at, revoked_at FROM api_keys WHERE id = ?",
                [key_id],
            ).fetchone()
        with self._keys_lock:
            self._keys_revokes += 1
            self._keys.clear()
        return ApiKey(*row)


def _summary_row(view: JobSummary) -> tuple:
    """A job as a row of `_SUMMARY_COLUMNS`."""
    return (
        view.job_id,
        view.status.value,
        view.total_items,
        view.completed_items,
        view.failed_items,
        view.created_at,
        view.updated_at,
    )


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
            jobs=[_summary(self.rows[job_id]) for _created, job_id in keys],
            total=len(self.keys),
            limit=limit,
            offset=offset,
        )


def _list_key(row: tuple) -> tuple[datetime, str]:
    return row[5].astimezone(UTC), str(row[0])


def _summary(row: tuple) -> JobSummary:
    return JobSummary(
        job_id=str(row[0]),
        status=Status(row[1]),
        total_items=row[2],
        completed_items=row[3],
        failed_items=row[4],
        created_at=row[5].astimezone(UTC),
        updated_at=row[6].astimezone(UTC),
    )
