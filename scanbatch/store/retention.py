"""Photo retention in the store: which records' photos may go, and the record of those that
went (`photo_prunes`: when, why, what it freed), which the photo routes answer 410 from.

A record's photos may go when it is finished (completed or failed), of a job that ended before
the cutoff, never reviewed (reviewed records are the golden set: they keep their photos) and
not pruned already. The files are the job folder's (`scanbatch.jobfolder`);
`scanbatch.retention` decides the order of the two."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from scanbatch.models import JobCounts, PhotosPruned, Status
from scanbatch.store.db import Database, parse_job_id
from scanbatch.store.leases import ItemKey

# The records of `r` (scan_results) joined to their job `j` that may lose their photos, for
# jobs that ended before the first parameter.
_ELIGIBLE = """
    JOIN scan_jobs j ON j.id = r.job_id
    WHERE j.status IN ('completed', 'failed') AND j.completed_at < ?
    AND r.status IN ('completed', 'failed')
    AND NOT EXISTS (SELECT 1 FROM scan_reviews v
        WHERE v.job_id = r.job_id AND v.item_index = r.item_index)
    AND NOT EXISTS (SELECT 1 FROM photo_prunes p
        WHERE p.job_id = r.job_id AND p.item_index = r.item_index)
"""


def _keys(keys: Collection[ItemKey]) -> list[list[Any]]:
    return [[j for j, _ in keys], [i for _, i in keys]]


def _pairs(rows: list[tuple[Any, ...]]) -> list[ItemKey]:
    return [(str(j), i) for j, i, *_ in rows]


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def candidates(self, cutoff: datetime) -> list[ItemKey]:
        """The records whose photos may go, oldest job first."""
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT r.job_id, r.item_index FROM scan_results r {_ELIGIBLE} "
                "ORDER BY j.completed_at, r.job_id, r.item_index",
                [cutoff],
            ).fetchall()
        return _pairs(rows)

    def mark(
        self,
        sizes: Mapping[ItemKey, tuple[int, int]],
        cutoff: datetime,
        reason: str,
        now: datetime,
    ) -> list[ItemKey]:
        """Record these records' photos as removed (`sizes`: photos and bytes of each), in
        one transaction that checks again that each may go: a review saved since the records
        were picked keeps its photos (saves take the same write lock). Returns the records
        marked, whose files may go now."""
        if not sizes:
            return []
        keys = list(sizes)
        with self.db.write() as cur:
            rows = cur.execute(
                "INSERT INTO photo_prunes SELECT r.job_id, r.item_index, ?, ?, k.photos, "
                "k.bytes, NULL FROM (SELECT unnest(?::UUID[]) AS job_id, "
                "unnest(?::INTEGER[]) AS item_index, unnest(?::INTEGER[]) AS photos, "
                "unnest(?::BIGINT[]) AS bytes) k "
                "JOIN scan_results r ON r.job_id = k.job_id AND r.item_index = k.item_index "
                f"{_ELIGIBLE} RETURNING job_id, item_index",
                [
                    now,
                    reason,
                    *_keys(keys),
                    [sizes[k][0] for k in keys],
                    [sizes[k][1] for k in keys],
                    cutoff,
                ],
            ).fetchall()
        return _pairs(rows)

    def removed(self, keys: Collection[ItemKey], at: datetime) -> None:
        """The files of these records are gone."""
        if not keys:
            return
        with self.db.write() as cur:
            cur.execute(
                "UPDATE photo_prunes p SET removed_at = ? FROM (SELECT unnest(?::UUID[]) AS j, "
                "unnest(?::INTEGER[]) AS i) k WHERE p.job_id = k.j AND p.item_index = k.i",
                [at, *_keys(keys)],
            )

    def unremoved(self) -> list[ItemKey]:
        """Records marked whose files were not all removed yet: a prune stopped between the
        two steps (a crash, a kill), finished by the next one."""
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT job_id, item_index FROM photo_prunes WHERE removed_at IS NULL "
                "ORDER BY job_id, item_index"
            ).fetchall()
        return _pairs(rows)

    def pruned(self, job_id: str, item_index: int) -> PhotosPruned | None:
        """When and why the record's photos were removed; None while it keeps them."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT pruned_at, reason FROM photo_prunes WHERE job_id = ? AND item_index = ?",
                [parse_job_id(job_id), item_index],
            ).fetchone()
        return None if row is None else PhotosPruned(at=row[0], why=row[1])

    def counts(self) -> dict[str, Any]:
        """Jobs by status (`jobs`), and the records: all (`records`), reviewed
        (`reviewed_records`), with their photos removed (`pruned_records`)."""
        with self.db.read() as cur:
            by_status = dict(
                cur.execute("SELECT status, count(*) FROM scan_jobs GROUP BY status").fetchall()
            )
            records, reviewed, pruned = cur.execute(
                "SELECT (SELECT count(*) FROM scan_results), (SELECT count(*) FROM scan_reviews), "
                "(SELECT count(*) FROM photo_prunes)"
            ).fetchone()
        jobs = JobCounts(**{s.value: by_status.get(s.value, 0) for s in Status})
        return {
            "jobs": jobs,
            "records": records,
            "reviewed_records": reviewed,
            "pruned_records": pruned,
        }

    def forget_job(self, cur: Any, job_id: str) -> None:
        """Inside `JobStore.delete_job`'s transaction: the job's records go."""
        cur.execute("DELETE FROM photo_prunes WHERE job_id = ?", [job_id])
