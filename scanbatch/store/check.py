"""The store's own consistency check: what must hold between its tables (a restore runs it
before it puts anything in place). Each check is one query counting the rows that break it."""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

# (what is wrong, SQL counting the rows that are so). Foreign keys DuckDB does not enforce (it
# cannot keep them on tables it must rebuild: scanbatch.store.migrations) are checked here.
CHECKS = (
    (
        "results whose job does not exist",
        "SELECT count(*) FROM scan_results r ANTI JOIN scan_jobs j ON j.id = r.job_id",
    ),
    (
        "jobs whose result rows are not their total_items",
        "SELECT count(*) FROM scan_jobs j LEFT JOIN (SELECT job_id, count(*) AS n "
        "FROM scan_results GROUP BY job_id) r ON r.job_id = j.id "
        "WHERE coalesce(r.n, 0) <> j.total_items",
    ),
    (
        "reviews whose record does not exist",
        "SELECT count(*) FROM scan_reviews v ANTI JOIN scan_results r "
        "ON r.job_id = v.job_id AND r.item_index = v.item_index",
    ),
    (
        "reviews whose current revision is not in the review history",
        "SELECT count(*) FROM scan_reviews v ANTI JOIN scan_review_history h "
        "ON h.id = v.review_id AND h.job_id = v.job_id AND h.item_index = v.item_index",
    ),
    (
        "review history of records that do not exist",
        "SELECT count(*) FROM scan_review_history h ANTI JOIN scan_results r "
        "ON r.job_id = h.job_id AND r.item_index = h.item_index",
    ),
    (
        "review history of records without a current review",
        "SELECT count(*) FROM (SELECT DISTINCT job_id, item_index FROM scan_review_history) h "
        "ANTI JOIN scan_reviews v ON v.job_id = h.job_id AND v.item_index = h.item_index",
    ),
    (
        "backlog jobs that do not exist",
        "SELECT count(*) FROM backlog_jobs b ANTI JOIN scan_jobs j ON j.id = b.job_id",
    ),
    (
        "backlog records that do not exist",
        "SELECT count(*) FROM backlog_items b ANTI JOIN scan_results r "
        "ON r.job_id = b.job_id AND r.item_index = b.item_index",
    ),
    (
        "photo prunes of records that do not exist",
        "SELECT count(*) FROM photo_prunes p ANTI JOIN scan_results r "
        "ON r.job_id = p.job_id AND r.item_index = p.item_index",
    ),
    (
        "webhook deliveries of jobs that do not exist",
        "SELECT count(*) FROM webhook_deliveries d ANTI JOIN scan_jobs j ON j.id = d.job_id",
    ),
    (
        "webhook attempts of deliveries that do not exist",
        "SELECT count(*) FROM webhook_attempts a ANTI JOIN webhook_deliveries d "
        "ON d.id = a.delivery_id",
    ),
)


def check_store(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Every problem found, one sentence each (empty: the store is consistent)."""
    problems = []
    for what, sql in CHECKS:
        (n,) = cur.execute(sql).fetchone()
        if n:
            problems.append(f"{n} {what}")
    return problems


def check_rows(cur: duckdb.DuckDBPyConnection, expected: Mapping[str, int]) -> list[str]:
    """The tables whose row count is not the `expected` one (a backup's manifest)."""
    problems = []
    for table, rows in expected.items():
        (n,) = cur.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        if n != rows:
            problems.append(f"table {table} has {n} rows, the backup says {rows}")
    return problems
