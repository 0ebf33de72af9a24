"""Completion webhooks in the store: each job's delivery (`webhook_deliveries`) and every attempt
at it (`webhook_attempts`). A delivery is written in the job's own transaction, and becomes due
in the one that ends the job, so no crash can leave a finished job without its delivery; what
sends them is `scanbatch.webhooks`."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scanbatch.models import (
    DeliveryState,
    Status,
    WebhookAttemptView,
    WebhookDeliveryList,
    WebhookDeliveryView,
)
from scanbatch.store.db import Database, records

EVENT_TYPES = {Status.COMPLETED: "scan.job.completed", Status.FAILED: "scan.job.failed"}


@dataclass(frozen=True)
class Callback:
    """Where a job reports its end (`callbackUrl`, checked) and the prefix of the job's own
    URL as its client reached the server, which the body's `url` names."""

    url: str
    jobs_url: str  # ".../library/scan/batch/": the job's GET URL is this and its id

    def job_url(self, job_id: str) -> str:
        return self.jobs_url + job_id


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now: the body and webhook-id are the same on every attempt."""

    id: str
    job_id: str
    url: str
    payload: str
    attempts: int  # made so far
    due_at: datetime


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None  # None: delivered (a 2xx)
    duration_ms: float


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Set once a delivery may have become due (after the commit that made it so): the
        # sender's thread waits on it.
        self.due_event = threading.Event()
        self._local = threading.local()

    def add(self, cur: Any, job_id: str, callback: Callback, now: datetime) -> str:
        """The job's delivery, waiting for its end, in the caller's (the job's) transaction."""
        delivery_id = f"msg_{uuid.uuid4().hex}"
        cur.execute(
            "INSERT INTO webhook_deliveries (id, job_id, url, job_url, state, created_at) "
            "VALUES (?, ?, ?, ?, 'waiting', ?)",
            [delivery_id, job_id, callback.url, callback.job_url(job_id), now],
        )
        return delivery_id

    def job_ended(
        self, cur: Any, job_id: str, status: Status, counts: tuple[int, int, int], now: datetime
    ) -> None:
        """The job's waiting deliveries become due with their body, in the transaction that
        ends the job (`JobStore._recount`). `counts` is (total, completed, failed)."""
        waiting = cur.execute(
            "SELECT id, job_url FROM webhook_deliveries WHERE job_id = ? AND state = 'waiting'",
            [job_id],
        ).fetchall()
        total, completed, failed = counts
        for delivery_id, job_url in waiting:
            payload = {
                "type": EVENT_TYPES[status],
                "jobId": job_id,
                "status": status.value,
                "totalItems": total,
                "completedItems": completed,
                "failedItems": failed,
                "url": job_url,
            }
            cur.execute(
                "UPDATE webhook_deliveries SET state = 'due', event_type = ?, payload = ?, "
                "due_at = ?, next_attempt_at = ? WHERE id = ?",
                [
                    payload["type"],
                    json.dumps(payload, separators=(",", ":")),
                    now,
                    now,
                    delivery_id,
                ],
            )
        if waiting:
            self._local.woken = True

    def after_write(self) -> None:
        """Called once the outermost job write has ended: wakes the sender if that write made
        a delivery due (after a rollback too, which costs it one empty look)."""
        if getattr(self._local, "woken", False):
            self._local.woken = False
            self.due_event.set()

    def delete_for_job(self, cur: Any, job_id: str) -> None:
        """The job's deliveries and their attempts, in the caller's (the delete's) transaction."""
        cur.execute(
            "DELETE FROM webhook_attempts WHERE delivery_id IN "
            "(SELECT id FROM webhook_deliveries WHERE job_id = ?)",
            [job_id],
        )
        cur.execute("DELETE FROM webhook_deliveries WHERE job_id = ?", [job_id])

    def due(self, now: datetime, exclude: set[str], limit: int) -> list[Due]:
        """Deliveries whose next attempt is due by `now`, soonest first, except `exclude` (the
        ones being attempted)."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id, job_id, url, payload, attempts, due_at FROM webhook_deliveries "
                "WHERE state = 'due' AND next_attempt_at <= ? "
                "AND NOT list_contains(?::VARCHAR[], id) ORDER BY next_attempt_at LIMIT ?",
                [now, sorted(exclude), limit],
            ).fetchall()
        return [Due(r[0], str(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def next_attempt_at(self, exclude: set[str]) -> datetime | None:
        """When the soonest delivery not in `exclude` is due (None: none is)."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT min(next_attempt_at) FROM webhook_deliveries "
                "WHERE state = 'due' AND NOT list_contains(?::VARCHAR[], id)",
                [sorted(exclude)],
            ).fetchone()
        return row[0]

    def record_attempt(self, delivery: Due, attempt: Attempt, next_at: datetime | None) -> None:
        """The attempt, and what follows it: delivered (no error), tried again at `next_at`,
        or failed with the attempt's error (`next_at` None). Nothing for a deleted job."""
        if attempt.error is None:
            state, finished = DeliveryState.DELIVERED, attempt.at
        elif next_at is None:
            state, finished = DeliveryState.FAILED, attempt.at
        else:
            state, finished = DeliveryState.DUE, None
        number = delivery.attempts + 1
        with self.db.write() as cur:
            cur.execute(
                "INSERT INTO webhook_attempts SELECT ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = ?)",
                [
                    delivery.id,
                    number,
                    attempt.at,
                    attempt.status_code,
                    attempt.error,
                    attempt.duration_ms,
                    delivery.id,
                ],
            )
            cur.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
                "finished_at = ?, last_error = ? WHERE id = ? AND state = 'due'",
                [
                    state.value,
                    number,
                    next_at if state == DeliveryState.DUE else None,
                    finished,
                    attempt.error,
                    delivery.id,
                ],
            )

    def for_job(self, job_id: str) -> WebhookDeliveryList:
        """The job's deliveries, oldest first, each with its attempts in order."""
        with self.db.read() as cur:
            deliveries = records(
                cur.execute(
                    "SELECT id, url, state, event_type, payload, attempts, created_at, due_at, "
                    "next_attempt_at, finished_at, last_error FROM webhook_deliveries "
                    "WHERE job_id = ? ORDER BY created_at, id",
                    [job_id],
                )
            )
            attempts = records(
                cur.execute(
                    "SELECT delivery_id, attempt, attempted_at, status_code, error, duration_ms "
                    "FROM webhook_attempts WHERE delivery_id IN "
                    "(SELECT id FROM webhook_deliveries WHERE job_id = ?) "
                    "ORDER BY delivery_id, attempt",
                    [job_id],
                )
            )
        by_delivery: dict[str, list[WebhookAttemptView]] = {}
        for a in attempts:
            by_delivery.setdefault(a.pop("delivery_id"), []).append(WebhookAttemptView(**a))
        return WebhookDeliveryList(
            deliveries=[
                WebhookDeliveryView(
                    **{k: v for k, v in d.items() if k not in ("payload", "attempts")},
                    payload=json.loads(d["payload"]) if d["payload"] else None,
                    attempts=by_delivery.get(d["id"], []),
                )
                for d in deliveries
            ]
        )
