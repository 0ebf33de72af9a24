"""The job store: scan jobs and their per-item results on one DuckDB file, and the rooms beside
them on the same file (API keys, reviews, the catalog, photo retention), each its own object:
`store.keys`, `store.reviews`, `store.catalog`, `store.retention`."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scanbatch.catalog.lookup import matched_albums
from scanbatch.errors import Conflict, NotFound
from scanbatch.models import (
    ItemOutcome,
    JobList,
    JobMode,
    JobView,
    Manifest,
    ResultView,
    Status,
)
from scanbatch.names import FIELDS
from scanbatch.store.backlog import BacklogStore
from scanbatch.store.catalog import CatalogStore
from scanbatch.store.db import Database, parse_job_id, records, utcnow
from scanbatch.store.job_cache import SUMMARY_COLUMNS, Entry, JobCache, summary
from scanbatch.store.keys import KeyStore
from scanbatch.store.retention import RetentionStore
from scanbatch.store.reviews import ReviewStore, reviewed_message
from scanbatch.store.webhooks import Callback, WebhookStore

log = logging.getLogger(__name__)


def item_confidence(extraction: dict[str, Any] | None) -> float | None:
    """The least confident field read: what the review queue sorts by (None: nothing read)."""
    values = [
        f["confidence"]
        for f in (extraction or {}).values()
        if isinstance(f, dict) and isinstance(f.get("confidence"), int | float)
    ]
    return min(values, default=None)


def field_confidences(extraction: dict[str, Any] | None) -> dict[str, float | None] | None:
    """Each field's confidence (None where none was given): `scan_results.field_confidence`."""
    if extraction is None:
        return None
    out: dict[str, float | None] = {}
    for name in FIELDS:
        entry = extraction.get(name)
        conf = entry.get("confidence") if isinstance(entry, dict) else None
        out[name] = float(conf) if isinstance(conf, int | float) else None
    return out


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.keys = KeyStore(db)
        self.reviews = ReviewStore(db)
        self.catalog = CatalogStore(db)
        self.webhooks = WebhookStore(db)
        self.retention = RetentionStore(db)
        # What was committed, in memory (scanbatch.store.job_cache): every job write re-reads
        # the view of the job it changed right after its commit and hands it over.
        self._cache = JobCache()
        self._write_order = threading.RLock()  # one job write (and its re-read) at a time
        self._local = threading.local()
        self.backlog = BacklogStore(self)

    @contextmanager
    def _job_write(self, job_id: str) -> Iterator[Any]:
        """A write transaction that changes `job_id`'s view; the view in memory is replaced
        by a fresh read after the commit (dropped if the job is gone or the write failed).
        Nested uses refresh once, after the outermost commit."""
        with self._write_order:
            depth = getattr(self._local, "depth", 0)
            if depth == 0:
                self._cache.write_begins()
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
                    self._cache.write_ended(job_id, fresh, reread)
                    self.webhooks.after_write()

    @contextmanager
    def write_jobs(self, job_ids: list[str]) -> Iterator[Any]:
        """A write transaction that changes the views of several jobs (the backlog's: one
        Google batch holds records of many): each is re-read after the commit."""
        if not job_ids:
            with self.db.write() as cur:
                yield cur
            return
        with self._write_order:
            self._cache.write_begins()
            committed = False
            try:
                with self.db.write() as cur:
                    yield cur
                committed = True
            finally:
                for job_id in job_ids:
                    fresh = None
                    if committed:
                        try:
                            fresh = self._read_view(job_id)
                        except Exception:
                            log.exception("could not re-read job %s after a write", job_id)
                            committed = False
                    self._cache.write_ended(job_id, fresh, committed)

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
        mode: JobMode = JobMode.INTERACTIVE,
        batched: bool = False,
        callback: Callback | None = None,
    ) -> str:
        """The job, one pending result row per item and its webhook delivery (with a
        `callback`), in one transaction; a backlog job's rows of the backlog too (`batched`:
        its extractor can batch, so its items wait for a Google batch)."""
        job_id = job_id or str(uuid.uuid4())
        now = utcnow()
        with self._job_write(job_id) as cur:
            cur.execute(
                "INSERT INTO scan_jobs (id, user_id, status, total_items, extractor, "
                "idempotency_key, request_hash, created_at, updated_at) "
                "VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                [
                    job_id,
                    user_id,
                    len(manifest.items),
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
            if mode == JobMode.BACKLOG:
                self.backlog.add_job(cur, job_id, len(manifest.items), extractor or "", batched)
            if callback is not None:
                self.webhooks.add(cur, job_id, callback, now)
        return job_id

    def _owned(self, cur: Any, job_id: str, user_id: str | None) -> tuple:
        row = cur.execute(
            f"SELECT {SUMMARY_COLUMNS}, user_id FROM scan_jobs WHERE id = ?",
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
        entry, mark = self._cache.lookup(job_id)
        if entry is None:
            entry = self._read_view(job_id)
            if entry is None:
                raise NotFound("Job not found")
            entry = self._cache.keep(job_id, entry, mark)
        owner, view = entry
        # Another user's job is indistinguishable from a missing one.
        if user_id is not None and owner != user_id:
            raise NotFound("Job not found")
        return view

    def _read_view(self, job_id: str) -> Entry | None:
        """(owner, view) of the job as DuckDB has it, None when there is no such job."""
        with self.db.read() as cur:
            row = cur.execute(
                f"SELECT {SUMMARY_COLUMNS}, user_id FROM scan_jobs WHERE id = ?", [job_id]
            ).fetchone()
            if row is None:
                return None
            rel = cur.execute(
                "SELECT item_index, status, extraction, matched_album_id, match_score, "
                "match_note, error_message, error_code, retryable, input_tokens, output_tokens, "
                "cost FROM scan_results WHERE job_id = ? ORDER BY item_index",
                [row[0]],
            )
            results = records(rel)
            albums = matched_albums(cur, (r["matched_album_id"] for r in results))
            backlog = self.backlog.view(cur, row[0])
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
        costs = [r["cost"] for r in results if r["cost"] is not None]
        view = JobView(
            **summary(row).model_dump(),
            results=views,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            mode=JobMode.BACKLOG if backlog is not None else JobMode.INTERACTIVE,
            backlog=backlog,
            cost=round(sum(costs), 8) if costs else None,
        )
        return str(row[-1]), view

    def list_jobs(self, user_id: str, limit: int = 20, offset: int = 0) -> JobList:
        page = self._cache.page(user_id, limit, offset)
        if page is not None:
            return page
        # The first list of this user: read DuckDB with no write under way, so that no write
        # can fall between the read and the index it becomes.
        with self._write_order:
            with self.db.read() as cur:
                rows = cur.execute(
                    f"SELECT {SUMMARY_COLUMNS} FROM scan_jobs WHERE user_id = ?", [user_id]
                ).fetchall()
            return self._cache.load(user_id, rows, limit, offset)

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
        """Jobs left pending or processing, oldest first: what a restarted server resumes.
        Backlog jobs whose records still wait for Google are the backlog's, not listed."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id FROM scan_jobs j WHERE status IN ('pending', 'processing') "
                "AND NOT EXISTS (SELECT 1 FROM backlog_items i WHERE i.job_id = j.id "
                "AND i.state <> 'answered') ORDER BY created_at"
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
                    "confidence = ?, field_confidence = ?, audit_key = random(), "
                    "billing = ?, cost = ?, updated_at = ?, completed_at = ? "
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
                        field_confidences(o.extraction),
                        ("batch" if u.batch else "interactive") if u else None,
                        u.cost if u else None,
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
                "retryable = true, audit_key = random(), updated_at = ?, completed_at = ? "
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
        self.webhooks.job_ended(cur, job_id, status, (total, completed, failed), now)

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
                    reviewed = self.reviews.count_for_job(job_id)  # inside this transaction
                    if reviewed:
                        raise Conflict(reviewed_message(reviewed))
                # Reviews have no foreign key (see store/reviews.py); they go with the results.
                cur.execute("DELETE FROM scan_reviews WHERE job_id = ?", [job_id])
                cur.execute("DELETE FROM scan_review_history WHERE job_id = ?", [job_id])
                cur.execute("DELETE FROM scan_results WHERE job_id = ?", [job_id])
                self.backlog.forget_job(cur, job_id)
                self.webhooks.delete_for_job(cur, job_id)
                self.retention.forget_job(cur, job_id)
            with self._job_write(job_id) as cur:
                cur.execute("DELETE FROM scan_jobs WHERE id = ?", [job_id])
            self.reviews.leases.forget_job(job_id)

    def result_rows(self, job_id: str) -> list[dict[str, Any]]:
        """Every column of the job's result rows, for audits and evaluation."""
        with self.db.read() as cur:
            rel = cur.execute(
                "SELECT * FROM scan_results WHERE job_id = ? ORDER BY item_index",
                [parse_job_id(job_id)],
            )
            return records(rel)
