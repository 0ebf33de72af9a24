"""The backlog's rows: which jobs go through a batch API, each item's trip (waiting, sent in
which of our Google batches, answered) and each Google batch we made. `scanbatch.backlog`
decides; this is the only code that reads or writes these tables.

A batch's row is written under its display name (our id for it at Google) before anything is
uploaded, with its items marked sent in the same transaction: whatever happens next (upload,
create, a crash between the create and its record), a restart knows the batch may exist and
looks for it by that name before it creates one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scanbatch.models import BacklogState, BacklogView
from scanbatch.store.db import parse_job_id, records, utcnow

if TYPE_CHECKING:
    from scanbatch.store.jobs import JobStore

ItemKey = tuple[str, int]  # (job id, item index)

# A batch in one of these is still Google's (or about to be): it is polled or submitted.
OPEN_STATES = ("packed", "uploaded", "pending", "running")


@dataclass(frozen=True)
class WaitingItem:
    job_id: str
    item_index: int
    attempts: int
    extractor: str
    waiting_since: datetime


@dataclass(frozen=True)
class BatchRow:
    id: str
    extractor: str
    model: str
    state: str
    google_name: str | None
    file_name: str | None
    items: int
    bytes: int
    error: str | None
    polls: int
    created_at: datetime
    submitted_at: datetime | None
    next_poll_at: datetime | None


class BacklogStore:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self.db = jobs.db

    # -- jobs -----------------------------------------------------------------------------

    def add_job(self, cur: Any, job_id: str, items: int, extractor: str, batched: bool) -> None:
        """Inside the transaction that creates the job: it goes through the backlog
        (`batched` false: its extractor cannot batch, so it runs interactively)."""
        now = utcnow()
        cur.execute(
            "INSERT INTO backlog_jobs (job_id, extractor, batched, created_at) VALUES (?, ?, ?, ?)",
            [job_id, extractor, batched, now],
        )
        if batched:
            rows = ", ".join(["(?, ?, 'waiting', 0, ?)"] * items)
            cur.execute(
                "INSERT INTO backlog_items (job_id, item_index, state, attempts, waiting_since) "
                f"VALUES {rows}",
                [v for i in range(items) for v in (job_id, i, now)],
            )

    def forget_job(self, cur: Any, job_id: str) -> None:
        """Inside the transaction that deletes the job's results."""
        cur.execute("DELETE FROM backlog_items WHERE job_id = ?", [job_id])
        cur.execute("DELETE FROM backlog_jobs WHERE job_id = ?", [job_id])

    def view(self, cur: Any, job_id: str) -> BacklogView | None:
        """The job's `backlog` in its GET (None: an interactive job)."""
        job = cur.execute(
            "SELECT batched, extractor FROM backlog_jobs WHERE job_id = ?", [job_id]
        ).fetchone()
        if job is None:
            return None
        if not job[0]:
            return BacklogView(
                state=BacklogState.INTERACTIVE,
                note=f"The {job[1]} extractor cannot use a batch API: this job runs "
                "interactively, at the standard price",
            )
        rows = records(
            cur.execute(
                "SELECT i.state, b.google_name, b.state AS batch_state, b.submitted_at, "
                "r.status IN ('completed', 'failed') AS finished "
                "FROM backlog_items i LEFT JOIN backlog_batches b ON b.id = i.batch_id "
                "JOIN scan_results r ON r.job_id = i.job_id AND r.item_index = i.item_index "
                "WHERE i.job_id = ? ORDER BY i.item_index",
                [job_id],
            )
        )
        return backlog_view(rows)

    def is_waiting(self, job_id: str) -> bool:
        """The job's items are still the backlog's (some not answered): no kernel runs it yet."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT count(*) FROM backlog_items WHERE job_id = ? AND state <> 'answered'",
                [parse_job_id(job_id)],
            ).fetchone()
        return bool(row[0])

    def ready_jobs(self) -> list[str]:
        """Unfinished backlog jobs whose every item is answered: each is run by its kernel."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT j.id FROM scan_jobs j JOIN backlog_jobs b ON b.job_id = j.id "
                "WHERE b.batched AND j.status IN ('pending', 'processing') AND NOT EXISTS ("
                "SELECT 1 FROM backlog_items i WHERE i.job_id = j.id AND i.state <> 'answered') "
                "ORDER BY j.created_at"
            ).fetchall()
        return [str(r[0]) for r in rows]

    # -- items ----------------------------------------------------------------------------

    def waiting(self, limit: int) -> list[WaitingItem]:
        """Items waiting to be sent, oldest first, of unfinished jobs."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT i.job_id, i.item_index, i.attempts, b.extractor, i.waiting_since "
                "FROM backlog_items i JOIN backlog_jobs b ON b.job_id = i.job_id "
                "JOIN scan_results r ON r.job_id = i.job_id AND r.item_index = i.item_index "
                "WHERE i.state = 'waiting' AND r.status IN ('pending', 'processing') "
                "ORDER BY i.waiting_since, i.job_id, i.item_index LIMIT ?",
                [limit],
            ).fetchall()
        return [WaitingItem(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def items_of(self, batch_id: str) -> list[tuple[str, int, int]]:
        """(job id, item index, attempts) of the items sent in the batch, in key order."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT job_id, item_index, attempts FROM backlog_items WHERE batch_id = ? "
                "AND state = 'sent' ORDER BY job_id, item_index",
                [batch_id],
            ).fetchall()
        return [(str(r[0]), r[1], r[2]) for r in rows]

    def live_items(self, batch_id: str) -> int:
        """Items of the batch whose job still wants them (unfinished)."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT count(*) FROM backlog_items i JOIN scan_results r ON "
                "r.job_id = i.job_id AND r.item_index = i.item_index WHERE i.batch_id = ? "
                "AND i.state = 'sent' AND r.status IN ('pending', 'processing')",
                [batch_id],
            ).fetchone()
        return row[0]

    # -- batches --------------------------------------------------------------------------

    def pack(
        self, batch_id: str, extractor: str, model: str, items: Sequence[ItemKey], size: int
    ) -> None:
        """Record the batch (state `packed`, its file written) and mark its items sent, in
        one transaction: before anything leaves for Google."""
        now = utcnow()
        jobs = sorted({job for job, _ in items})
        with self.jobs.write_jobs(jobs) as cur:
            cur.execute(
                "INSERT INTO backlog_batches (id, extractor, model, state, items, bytes, "
                "created_at, updated_at) VALUES (?, ?, ?, 'packed', ?, ?, ?, ?)",
                [batch_id, extractor, model, len(items), size, now, now],
            )
            for job in jobs:
                indexes = [i for j, i in items if j == job]
                cur.execute(
                    "UPDATE backlog_items SET state = 'sent', batch_id = ?, attempts = attempts "
                    "+ 1 WHERE job_id = ? AND item_index IN "
                    f"({', '.join('?' * len(indexes))})",
                    [batch_id, job, *indexes],
                )

    def uploaded(self, batch_id: str, file_name: str) -> None:
        self._set(batch_id, state="uploaded", file_name=file_name)

    def submitted(
        self, batch_id: str, google_name: str, state: str, next_poll_at: datetime
    ) -> None:
        """Google has the batch: its name recorded, polled from `next_poll_at`."""
        self._set(
            batch_id,
            jobs=self._jobs_of(batch_id),
            google_name=google_name,
            state=state,
            submitted_at=utcnow(),
            next_poll_at=next_poll_at,
        )

    def polled(
        self, batch_id: str, state: str, next_poll_at: datetime | None, error: str | None = None
    ) -> None:
        jobs = self._jobs_of(batch_id)
        with self.jobs.write_jobs(jobs) as cur:
            cur.execute(
                "UPDATE backlog_batches SET state = ?, next_poll_at = ?, polls = polls + 1, "
                "error = coalesce(?, error), updated_at = ?, finished_at = CASE WHEN ? IN "
                "('succeeded', 'failed', 'expired', 'cancelled') THEN ? ELSE finished_at END "
                "WHERE id = ?",
                [state, next_poll_at, error, utcnow(), state, utcnow(), batch_id],
            )

    def settle(self, batch_id: str, answered: Iterable[ItemKey], again: Iterable[ItemKey]) -> None:
        """The batch is over: `answered` items have their answer (or final error) in their job
        folders, `again` wait for the next batch; the batch is done."""
        answered, again = list(answered), list(again)
        now = utcnow()
        jobs = sorted({job for job, _ in answered + again} | set(self._jobs_of(batch_id)))
        with self.jobs.write_jobs(jobs) as cur:
            for state, keys in (("answered", answered), ("waiting", again)):
                for job in sorted({j for j, _ in keys}):
                    indexes = [i for j, i in keys if j == job]
                    cur.execute(
                        "UPDATE backlog_items SET state = ?, waiting_since = CASE WHEN ? = "
                        "'waiting' THEN ? ELSE waiting_since END WHERE job_id = ? AND "
                        f"item_index IN ({', '.join('?' * len(indexes))})",
                        [state, state, now, job, *indexes],
                    )
            cur.execute(
                "UPDATE backlog_batches SET state = 'done', next_poll_at = NULL, updated_at = ? "
                "WHERE id = ?",
                [now, batch_id],
            )

    def answer_now(self, keys: Sequence[ItemKey]) -> None:
        """Records that never reached a batch (their photos unreadable, the key gone): their
        error is in their job folders; they count as answered."""
        jobs = sorted({job for job, _ in keys})
        with self.jobs.write_jobs(jobs) as cur:
            for job in jobs:
                indexes = [i for j, i in keys if j == job]
                cur.execute(
                    "UPDATE backlog_items SET state = 'answered' WHERE job_id = ? AND "
                    f"item_index IN ({', '.join('?' * len(indexes))})",
                    [job, *indexes],
                )

    def has_items(self, batch_id: str) -> bool:
        """Whether any job's record (answered or not) is still in the batch."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT count(*) FROM backlog_items WHERE batch_id = ?", [batch_id]
            ).fetchone()
        return bool(row[0])

    def open_batches(self) -> list[BatchRow]:
        """Batches not yet settled, oldest first."""
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT {_BATCH_COLUMNS} FROM backlog_batches WHERE state IN "
                f"({', '.join('?' * len(OPEN_STATES))}) OR state IN ('succeeded', 'failed', "
                "'expired', 'cancelled') ORDER BY created_at",
                list(OPEN_STATES),
            ).fetchall()
        return [BatchRow(*r) for r in rows]

    def _jobs_of(self, batch_id: str) -> list[str]:
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT DISTINCT job_id FROM backlog_items WHERE batch_id = ?", [batch_id]
            ).fetchall()
        return sorted(str(r[0]) for r in rows)

    def _set(self, batch_id: str, jobs: Sequence[str] = (), **values: Any) -> None:
        names = ", ".join(f"{k} = ?" for k in values)
        with self.jobs.write_jobs(list(jobs)) as cur:
            cur.execute(
                f"UPDATE backlog_batches SET {names}, updated_at = ? WHERE id = ?",
                [*values.values(), utcnow(), batch_id],
            )


_BATCH_COLUMNS = (
    "id, extractor, model, state, google_name, file_name, items, bytes, error, polls, "
    "created_at, submitted_at, next_poll_at"
)


def backlog_view(rows: list[dict[str, Any]]) -> BacklogView:
    """A backlog job's state from its items': waiting until all are sent, then the state of
    the Google batch furthest behind, answered when every item is."""
    if all(r["state"] == "answered" for r in rows):
        return BacklogView(state=BacklogState.ANSWERED, **_batch_of(rows))
    if all(r["finished"] for r in rows):  # ended with records still out: cancelled
        return BacklogView(
            state=BacklogState.STOPPED,
            note="The job ended before Google answered all of its records (cancelled): "
            "those records were not read",
            **_batch_of(rows),
        )
    if any(r["state"] == "waiting" for r in rows):
        return BacklogView(state=BacklogState.WAITING, **_batch_of(rows))
    states = {r["batch_state"] for r in rows if r["state"] == "sent"}
    if states & {"packed", "uploaded"}:
        state = BacklogState.SENDING
    elif "running" in states and "pending" not in states:
        state = BacklogState.RUNNING
    else:
        state = BacklogState.SUBMITTED
    return BacklogView(state=state, **_batch_of(rows))


def _batch_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sent = [r for r in rows if r["google_name"]]
    if not sent:
        return {}
    latest = max(sent, key=lambda r: r["submitted_at"] or datetime.min.astimezone())
    return {"batch": latest["google_name"], "submitted_at": latest["submitted_at"]}
