"""Pins the schema the migrations produce. A change here must come with a new migration
(migrations are append-only); update the pin in the same change."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from scanbatch.models import ItemOutcome, Manifest, Status
from scanbatch.names import FIELDS
from scanbatch.store import JobStore
from scanbatch.store.db import _statements
from scanbatch.store.jobs import field_confidences
from scanbatch.store.migrations import MIGRATIONS_TABLE, _migrations

EXPECTED = """
api_keys.id VARCHAR NOT NULL
api_keys.user_id VARCHAR NOT NULL
api_keys.role VARCHAR NOT NULL
api_keys.token_hash VARCHAR NOT NULL
api_keys.created_at TIMESTAMP WITH TIME ZONE NOT NULL
api_keys.revoked_at TIMESTAMP WITH TIME ZONE
backlog_batches.id VARCHAR NOT NULL
backlog_batches.extractor VARCHAR NOT NULL
backlog_batches.model VARCHAR NOT NULL
backlog_batches.state VARCHAR NOT NULL
backlog_batches.google_name VARCHAR
backlog_batches.file_name VARCHAR
backlog_batches.items INTEGER NOT NULL
backlog_batches.bytes BIGINT NOT NULL
backlog_batches.error VARCHAR
backlog_batches.polls INTEGER NOT NULL
backlog_batches.created_at TIMESTAMP WITH TIME ZONE NOT NULL
backlog_batches.submitted_at TIMESTAMP WITH TIME ZONE
backlog_batches.finished_at TIMESTAMP WITH TIME ZONE
backlog_batches.next_poll_at TIMESTAMP WITH TIME ZONE
backlog_batches.updated_at TIMESTAMP WITH TIME ZONE NOT NULL
backlog_items.job_id UUID NOT NULL
backlog_items.item_index INTEGER NOT NULL
backlog_items.state VARCHAR NOT NULL
backlog_items.batch_id VARCHAR
backlog_items.attempts INTEGER NOT NULL
backlog_items.waiting_since TIMESTAMP WITH TIME ZONE NOT NULL
backlog_jobs.job_id UUID NOT NULL
backlog_jobs.extractor VARCHAR NOT NULL
backlog_jobs.batched BOOLEAN NOT NULL
backlog_jobs.created_at TIMESTAMP WITH TIME ZONE NOT NULL
catalog_albums.id INTEGER NOT NULL
catalog_albums.artist_id INTEGER NOT NULL
catalog_albums.title VARCHAR NOT NULL
catalog_albums.label VARCHAR
catalog_albums.code_number INTEGER
catalog_albums.genre VARCHAR
catalog_albums.format VARCHAR
catalog_albums.added_on DATE
catalog_albums.updated_at TIMESTAMP NOT NULL
catalog_artists.id INTEGER NOT NULL
catalog_artists.artist_key VARCHAR NOT NULL
catalog_artists.name VARCHAR NOT NULL
catalog_artists.code_letters VARCHAR
catalog_artists.code_artist_number INTEGER
catalog_matched_album.id INTEGER
catalog_matched_album.artist_name VARCHAR
catalog_matched_album.album_title VARCHAR
catalog_matched_album.code_letters VARCHAR
catalog_matched_album.code_artist_number INTEGER
catalog_matched_album.code_number INTEGER
catalog_matched_album.genre_name VARCHAR
catalog_matched_album.format_name VARCHAR
catalog_matched_album.label VARCHAR
photo_prunes.job_id UUID NOT NULL
photo_prunes.item_index INTEGER NOT NULL
photo_prunes.pruned_at TIMESTAMP WITH TIME ZONE NOT NULL
photo_prunes.reason VARCHAR NOT NULL
photo_prunes.photos INTEGER NOT NULL
photo_prunes.bytes BIGINT NOT NULL
photo_prunes.removed_at TIMESTAMP WITH TIME ZONE
scan_jobs.id UUID NOT NULL
scan_jobs.user_id VARCHAR NOT NULL
scan_jobs.status VARCHAR NOT NULL
scan_jobs.total_items INTEGER NOT NULL
scan_jobs.completed_items INTEGER NOT NULL
scan_jobs.failed_items INTEGER NOT NULL
scan_jobs.extractor VARCHAR
scan_jobs.idempotency_key VARCHAR
scan_jobs.request_hash VARCHAR
scan_jobs.created_at TIMESTAMP WITH TIME ZONE NOT NULL
scan_jobs.updated_at TIMESTAMP WITH TIME ZONE NOT NULL
scan_jobs.completed_at TIMESTAMP WITH TIME ZONE
scan_results.job_id UUID NOT NULL
scan_results.item_index INTEGER NOT NULL
scan_results.status VARCHAR NOT NULL
scan_results.image_count INTEGER NOT NULL
scan_results.photo_types JSON NOT NULL
scan_results.context JSON
scan_results.extraction JSON
scan_results.matched_album_id INTEGER
scan_results.match_score DOUBLE
scan_results.match_method VARCHAR
scan_results.match_note VARCHAR
scan_results.error_message VARCHAR
scan_results.error_code VARCHAR
scan_results.retryable BOOLEAN
scan_results.extractor VARCHAR
scan_results.model VARCHAR
scan_results.prompt_version VARCHAR
scan_results.latency_ms DOUBLE
scan_results.input_tokens INTEGER
scan_results.output_tokens INTEGER
scan_results.retries INTEGER
scan_results.raw_response VARCHAR
scan_results.created_at TIMESTAMP WITH TIME ZONE NOT NULL
scan_results.updated_at TIMESTAMP WITH TIME ZONE NOT NULL
scan_results.completed_at TIMESTAMP WITH TIME ZONE
scan_results.confidence DOUBLE
scan_results.audit_key DOUBLE
scan_results.field_confidence STRUCT(artistName DOUBLE, albumTitle DOUBLE, labelName DOUBLE, catalogNumber DOUBLE, reviewText DOUBLE, upc DOUBLE)
scan_results.billing VARCHAR
scan_results.cost DOUBLE
scan_review_history.id VARCHAR NOT NULL
scan_review_history.job_id UUID NOT NULL
scan_review_history.item_index INTEGER NOT NULL
scan_review_history.revision INTEGER NOT NULL
scan_review_history.reviewer VARCHAR NOT NULL
scan_review_history.reviewed_at TIMESTAMP WITH TIME ZONE NOT NULL
scan_review_history.truth JSON NOT NULL
scan_review_history.matched_album_id INTEGER
scan_review_history.verdicts JSON NOT NULL
scan_review_history.match_verdict VARCHAR NOT NULL
scan_review_history.note VARCHAR
scan_reviews.job_id UUID NOT NULL
scan_reviews.item_index INTEGER NOT NULL
scan_reviews.review_id VARCHAR NOT NULL
scan_reviews.reviewed_at TIMESTAMP WITH TIME ZONE NOT NULL
schema_migrations.version INTEGER NOT NULL
schema_migrations.name VARCHAR NOT NULL
schema_migrations.applied_at TIMESTAMP WITH TIME ZONE NOT NULL
webhook_attempts.delivery_id VARCHAR NOT NULL
webhook_attempts.attempt INTEGER NOT NULL
webhook_attempts.attempted_at TIMESTAMP WITH TIME ZONE NOT NULL
webhook_attempts.status_code INTEGER
webhook_attempts.error VARCHAR
webhook_attempts.duration_ms DOUBLE NOT NULL
webhook_deliveries.id VARCHAR NOT NULL
webhook_deliveries.job_id UUID NOT NULL
webhook_deliveries.url VARCHAR NOT NULL
webhook_deliveries.job_url VARCHAR NOT NULL
webhook_deliveries.state VARCHAR NOT NULL
webhook_deliveries.event_type VARCHAR
webhook_deliveries.payload VARCHAR
webhook_deliveries.attempts INTEGER NOT NULL
webhook_deliveries.created_at TIMESTAMP WITH TIME ZONE NOT NULL
webhook_deliveries.due_at TIMESTAMP WITH TIME ZONE
webhook_deliveries.next_attempt_at TIMESTAMP WITH TIME ZONE
webhook_deliveries.finished_at TIMESTAMP WITH TIME ZONE
webhook_deliveries.last_error VARCHAR
api_keys PRIMARY KEY (id)
api_keys UNIQUE (token_hash)
backlog_batches PRIMARY KEY (id)
backlog_items PRIMARY KEY (job_id, item_index)
backlog_jobs PRIMARY KEY (job_id)
catalog_albums PRIMARY KEY (id)
catalog_artists PRIMARY KEY (id)
catalog_artists UNIQUE (artist_key)
photo_prunes PRIMARY KEY (job_id, item_index)
scan_jobs PRIMARY KEY (id)
scan_results FOREIGN KEY (job_id)
scan_results PRIMARY KEY (job_id, item_index)
scan_review_history PRIMARY KEY (id)
scan_review_history UNIQUE (job_id, item_index, revision)
scan_reviews PRIMARY KEY (job_id, item_index)
schema_migrations PRIMARY KEY (version)
webhook_attempts PRIMARY KEY (delivery_id, attempt)
webhook_deliveries PRIMARY KEY (id)
index scan_jobs_user_created ON scan_jobs
index webhook_deliveries_job ON webhook_deliveries
view catalog_matched_album
"""  # noqa: E501 (a column type as duckdb names it)


def describe(cur) -> str:
    lines = [
        f"{t}.{c} {dt}{'' if nullable == 'YES' else ' NOT NULL'}"
        for t, c, dt, nullable in cur.execute(
            "SELECT table_name, column_name, data_type, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'main' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    ]
    lines += [
        f"{t} {kind} ({', '.join(cols)})"
        for kind, t, cols in cur.execute(
            "SELECT constraint_type, table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE') "
            "ORDER BY table_name, constraint_type, constraint_column_names::VARCHAR"
        ).fetchall()
    ]
    lines += [
        f"index {name} ON {t}"
        for name, t in cur.execute(
            "SELECT index_name, table_name FROM duckdb_indexes() ORDER BY index_name"
        ).fetchall()
    ]
    lines += [
        f"view {name}"
        for (name,) in cur.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
        ).fetchall()
    ]
    return "\n".join(lines)


def test_final_schema_is_pinned(tmp_path):
    store = JobStore.open(tmp_path / "s.duckdb")
    try:
        assert describe(store.db.cursor()) == EXPECTED.strip()
    finally:
        store.close()


# A shipped migration never changes (stores in the field already ran it): a new one is added.
SHIPPED = {
    1: "965f2c62995ae60b",
    2: "39ab3d1709148a96",
    3: "188f9c000029c88d",
    4: "a85cd79b0510afac",
    5: "09ed5e8adf0b2727",
    6: "865110e5965fa587",
    7: "ae7effb674649144",
    8: "134c778bde61b976",
}


def test_shipped_migrations_are_unchanged_and_append_only():
    import hashlib

    migrations = _migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        if m.version in SHIPPED:
            assert hashlib.sha256(m.sql.encode()).hexdigest()[:16] == SHIPPED[m.version], (
                f"migration {m.version} was edited: add a new migration instead"
            )


def store_at(path, version: int) -> duckdb.DuckDBPyConnection:
    """A real DuckDB file as a release whose last migration was `version` left it."""
    con = duckdb.connect(str(path))
    con.execute(MIGRATIONS_TABLE)
    for m in _migrations()[:version]:
        for statement in _statements(m.sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [m.version, m.name])
    return con


def test_migration_4_drops_the_manifest_and_keeps_every_row(tmp_path):
    path = tmp_path / "v3.duckdb"
    con = store_at(path, 3)
    now = datetime.now(UTC)
    jobs = [str(uuid.uuid4()) for _ in range(3)]
    for n, job in enumerate(jobs):
        con.execute(
            "INSERT INTO scan_jobs (id, user_id, status, total_items, completed_items, "
            "failed_items, manifest, extractor, idempotency_key, request_hash, created_at, "
            "updated_at, completed_at) VALUES (?, ?, 'completed', 2, 1, 1, ?, 'fake', ?, 'h', "
            "?, ?, ?)",
            [job, f"user{n}", json.dumps({"items": []}), f"k{n}", now, now, now],
        )
        for i in range(2):
            con.execute(
                "INSERT INTO scan_results (job_id, item_index, status, image_count, "
                "photo_types, context, extraction, matched_album_id, error_message, "
                "input_tokens, raw_response, confidence, created_at, updated_at, completed_at) "
                "VALUES (?, ?, ?, 1, '[\"front\"]', '{}', ?, ?, ?, 10, 'raw', ?, ?, ?, ?)",
                [
                    job,
                    i,
                    "completed" if i == 0 else "failed",
                    json.dumps({"artistName": {"value": "Can", "confidence": 0.5}}),
                    None,
                    None if i == 0 else "unreadable",
                    0.5 if i == 0 else None,
                    now,
                    now,
                    now,
                ],
            )
    con.execute(
        "INSERT INTO scan_reviews VALUES (?, 0, 'r1', ?)",
        [jobs[0], now],
    )
    columns = "* EXCLUDE (manifest)"
    before_jobs = con.execute(f"SELECT {columns} FROM scan_jobs ORDER BY id").fetchall()
    before_results = con.execute(
        "SELECT * FROM scan_results ORDER BY job_id, item_index"
    ).fetchall()
    con.close()

    store = JobStore.open(path)
    try:
        cur = store.db.cursor()
        assert describe(cur) == EXPECTED.strip()
        assert cur.execute("SELECT * FROM scan_jobs ORDER BY id").fetchall() == before_jobs
        assert (
            cur.execute(
                # The columns later migrations add (5: audit order; 7: billing) are not v3's.
                "SELECT * EXCLUDE (audit_key, field_confidence, billing, cost) FROM scan_results "
                "ORDER BY job_id, item_index"
            ).fetchall()
            == before_results
        )
        assert cur.execute("SELECT count(*) FROM scan_reviews").fetchone()[0] == 1
        # The checks and the foreign key came back with the tables.
        with pytest.raises(duckdb.ConstraintException):
            cur.execute(
                "INSERT INTO scan_jobs (id, user_id, status, total_items, created_at, "
                "updated_at) VALUES (uuid(), 'u', 'lost', 1, now(), now())"
            )
        with pytest.raises(duckdb.ConstraintException):
            cur.execute(
                "INSERT INTO scan_results (job_id, item_index, status, image_count, "
                "photo_types, created_at, updated_at) "
                "VALUES (uuid(), 0, 'pending', 1, '[]', now(), now())"
            )
        # And the store works on them: read, write (an update of a referenced parent), delete.
        assert store.get_job(jobs[1], "user1").failed_items == 1
        assert store.find_idempotent("user2", "k2", within=timedelta(days=1))
        store.delete_job(jobs[1])
        one = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}]})
        job = store.create_job("alice", one)
        store.mark_processing(job)
        store.record_outcomes(
            job, [ItemOutcome(item_index=0, status=Status.COMPLETED, finished_at=now)]
        )
        assert store.get_job(job).status is Status.COMPLETED
        assert store.list_jobs("user2").total == 1
    finally:
        store.close()
    again = JobStore.open(path)  # reopened: nothing left to apply
    try:
        assert again.db.migrate() == []
    finally:
        again.close()


def test_migration_5_draws_an_audit_key_for_every_finished_record(tmp_path):
    path = tmp_path / "v4.duckdb"
    con = store_at(path, 4)
    now = datetime.now(UTC)
    job = str(uuid.uuid4())
    con.execute(
        "INSERT INTO scan_jobs (id, user_id, status, total_items, created_at, updated_at) "
        "VALUES (?, 'u', 'processing', 10, ?, ?)",
        [job, now, now],
    )
    statuses = ["completed"] * 6 + ["failed"] * 2 + ["pending", "processing"]
    read = {
        "artistName": {"value": "Can", "confidence": 0.5},
        "upc": {"value": "", "confidence": 1},
    }
    con.executemany(
        "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
        "extraction, created_at, updated_at) VALUES (?, ?, ?, 1, '[]', ?, ?, ?)",
        [
            [job, i, status, json.dumps(read) if i == 0 else None, now, now]
            for i, status in enumerate(statuses)
        ],
    )
    con.close()
    store = JobStore.open(path)
    try:
        cur = store.db.cursor()
        keys = dict(cur.execute("SELECT item_index, audit_key FROM scan_results").fetchall())
        finished = [keys[i] for i in range(8)]
        assert all(0 <= k < 1 for k in finished) and len(set(finished)) == 8
        assert keys[8] is None and keys[9] is None  # drawn when they finish
        (confidences,) = cur.execute(
            "SELECT field_confidence FROM scan_results WHERE item_index = 0"
        ).fetchone()
        assert confidences == field_confidences(read)
        assert list(confidences) == list(FIELDS)  # the struct's fields are the fields, in order
        extraction = {"albumTitle": {"value": "Tago Mago", "confidence": 0.25}}
        store.record_outcomes(
            job,
            [
                ItemOutcome(
                    item_index=8, status=Status.COMPLETED, extraction=extraction, finished_at=now
                )
            ],
        )
        (kept,) = cur.execute(
            "SELECT field_confidence FROM scan_results WHERE item_index = 8"
        ).fetchone()
        assert kept == {**dict.fromkeys(FIELDS), "albumTitle": 0.25}
        store.fail_unfinished(job, "stopped", "cancelled")
        drawn = dict(cur.execute("SELECT item_index, audit_key FROM scan_results").fetchall())
        assert 0 <= drawn[8] < 1 and 0 <= drawn[9] < 1
        assert {i: drawn[i] for i in range(8)} == {i: keys[i] for i in range(8)}
    finally:
        store.close()
