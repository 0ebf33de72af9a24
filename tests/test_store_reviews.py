"""The review store below the HTTP layer: the confidence the queue sorts by, kept at ingest
and back-filled by migration 3 for results stored before it."""

import json
from datetime import UTC, datetime

import duckdb

from scanbatch.models import ItemOutcome, Manifest, Status
from scanbatch.store import JobStore
from scanbatch.store.db import _statements
from scanbatch.store.jobs import item_confidence
from scanbatch.store.migrations import MIGRATIONS_TABLE, _migrations

READ = {"artistName": {"value": "Can", "confidence": 0.9}, "upc": {"value": "1", "confidence": 0.3}}


def test_item_confidence_is_the_least_confident_field():
    assert item_confidence(READ) == 0.3
    assert item_confidence({}) is None
    assert item_confidence(None) is None


def test_ingest_keeps_the_confidence(store):
    manifest = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}]})
    job = store.create_job("alice", manifest)
    now = datetime.now(UTC)
    store.record_outcomes(
        job, [ItemOutcome(item_index=0, status=Status.COMPLETED, extraction=READ, finished_at=now)]
    )
    assert store.result_rows(job)[0]["confidence"] == 0.3


def test_migration_3_backfills_confidence_of_older_results(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(MIGRATIONS_TABLE)
    for m in _migrations()[:2]:  # a store as the previous release left it
        for statement in _statements(m.sql):
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [m.version, m.name])
    now = datetime.now(UTC)
    job = "6f1c1f3e-7d3a-4a53-9a43-0a8a9f0b1c11"
    con.execute(
        "INSERT INTO scan_jobs (id, user_id, status, total_items, manifest, created_at, "
        "updated_at) VALUES (?, 'alice', 'completed', 2, '{}', ?, ?)",
        [job, now, now],
    )
    for i, extraction in enumerate([json.dumps(READ), None]):
        con.execute(
            "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
            "extraction, created_at, updated_at) VALUES (?, ?, 'completed', 1, '[]', ?, ?, ?)",
            [job, i, extraction, now, now],
        )
    con.close()
    store = JobStore.open(path)
    try:
        assert [r["confidence"] for r in store.result_rows(job)] == [0.3, None]
    finally:
        store.close()
