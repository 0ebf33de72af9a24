"""Append-only schema migrations. Never edit a migration that has shipped: add a new one.
`tests/test_store_schema.py` pins the schema they produce.

DuckDB facts that shape this schema (measured on duckdb 2.0): foreign keys cannot CASCADE, so
children are deleted first; an UPDATE of an indexed column of a referenced parent raises a
foreign-key error, so `scan_jobs` indexes only columns that never change (id, user_id,
created_at); and a referenced parent cannot be altered at all (no DROP COLUMN, no DROP NOT
NULL), so changing one rebuilds it and its children (migration 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_CORE = """
CREATE TABLE api_keys (
    id VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    role VARCHAR NOT NULL CHECK (role IN ('dj', 'musicDirector', 'stationManager')),
    token_hash VARCHAR NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE scan_jobs (
    id UUID PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    total_items INTEGER NOT NULL CHECK (total_items BETWEEN 1 AND 10),
    completed_items INTEGER NOT NULL DEFAULT 0,
    failed_items INTEGER NOT NULL DEFAULT 0,
    manifest JSON NOT NULL,
    extractor VARCHAR,
    idempotency_key VARCHAR,
    request_hash VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ
);
CREATE INDEX scan_jobs_user_created ON scan_jobs (user_id, created_at);

CREATE TABLE scan_results (
    job_id UUID NOT NULL REFERENCES scan_jobs (id),
    item_index INTEGER NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    image_count INTEGER NOT NULL,
    photo_types JSON NOT NULL,
    context JSON,
    extraction JSON,
    matched_album_id INTEGER,
    match_score DOUBLE,
    match_method VARCHAR,
    match_note VARCHAR,
    error_message VARCHAR,
    error_code VARCHAR,
    retryable BOOLEAN,
    extractor VARCHAR,
    model VARCHAR,
    prompt_version VARCHAR,
    latency_ms DOUBLE,
    input_tokens INTEGER,
    output_tokens INTEGER,
    retries INTEGER,
    raw_response VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, item_index)
);
"""


# `scan_results.confidence` is the item's least confident field, kept at ingest: the review
# queue sorts by it, and reading it out of the extraction JSON of every row cost ~60 ms per
# page at 10,000 items.
_REVIEWS = """
CREATE TABLE scan_review_history (
    id VARCHAR PRIMARY KEY,
    job_id UUID NOT NULL,
    item_index INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    reviewer VARCHAR NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL,
    truth JSON NOT NULL,
    matched_album_id INTEGER,
    verdicts JSON NOT NULL,
    match_verdict VARCHAR NOT NULL,
    note VARCHAR,
    UNIQUE (job_id, item_index, revision)
);

CREATE TABLE scan_reviews (
    job_id UUID NOT NULL,
    item_index INTEGER NOT NULL,
    review_id VARCHAR NOT NULL,
    reviewed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, item_index)
);

ALTER TABLE scan_results ADD COLUMN confidence DOUBLE;

UPDATE scan_results SET confidence = list_min(json_extract_string(extraction, [
    '$.artistName.confidence', '$.albumTitle.confidence', '$.labelName.confidence',
    '$.catalogNumber.confidence', '$.reviewText.confidence', '$.upc.confidence'
])::DOUBLE[]) WHERE extraction IS NOT NULL;
"""


def _create_table(sql: str, table: str, *, drop: str = "", add: tuple[str, str] = ("", "")) -> str:
    """The `CREATE TABLE table` statement of a shipped migration's `sql`, with the column line
    `drop` taken out and `add[1]` put before the line `add[0]`: a later migration rebuilds a
    table from the DDL that made it (shipped migrations never change, so neither does this)."""
    start = sql.index(f"CREATE TABLE {table} (")
    statement = sql[start : sql.index(";", start)]
    for line in (drop, add[0]):
        if line and f"\n    {line}\n" not in statement + "\n":
            raise ValueError(f"{table} has no line {line!r}")
    if drop:
        statement = statement.replace(f"\n    {drop}\n", "\n")
    if add[0]:
        statement = statement.replace(f"\n    {add[0]}", f"\n    {add[1]}\n    {add[0]}")
    return statement


# `scan_jobs.manifest` was written and never read (the job folder's manifest.json is what the
# kernel reads). DuckDB 2.0 cannot drop it, nor make it nullable, while `scan_results`
# references `scan_jobs` ("Cannot alter entry ... because there are entries that depend on
# it"; measured), so both tables are rebuilt, in the one transaction of the migration:
# children copied and dropped first, then the parent; the same columns, checks, keys and index.
_RESULTS_V3 = _create_table(  # as migration 3 left it: confidence added last
    _CORE, "scan_results", add=("PRIMARY KEY (job_id, item_index)", "confidence DOUBLE,")
)
_NO_MANIFEST = f"""
CREATE TEMP TABLE scan_results_before AS SELECT * FROM scan_results;
DROP TABLE scan_results;
CREATE TEMP TABLE scan_jobs_before AS SELECT * FROM scan_jobs;
DROP TABLE scan_jobs;
{_create_table(_CORE, "scan_jobs", drop="manifest JSON NOT NULL,")};
CREATE INDEX scan_jobs_user_created ON scan_jobs (user_id, created_at);
INSERT INTO scan_jobs BY NAME SELECT * EXCLUDE (manifest) FROM scan_jobs_before;
{_RESULTS_V3};
INSERT INTO scan_results BY NAME SELECT * FROM scan_results_before;
DROP TABLE scan_results_before;
DROP TABLE scan_jobs_before;
"""


# The audit order: a uniform random key per finished record, drawn once when it finishes
# (scanbatch.estimates says why that makes the first k of it a random sample). Records that
# finished before this migration draw theirs here. And the confidence of each field, kept at
# ingest like `confidence`: the estimates read it for every finished record, and reading it
# out of the extraction JSON cost ~200 ms at 100,000 records, the struct ~10 ms (measured).
_AUDIT = """
ALTER TABLE scan_results ADD COLUMN audit_key DOUBLE;
UPDATE scan_results SET audit_key = random() WHERE status IN ('completed', 'failed');
ALTER TABLE scan_results ADD COLUMN field_confidence STRUCT(
    "artistName" DOUBLE, "albumTitle" DOUBLE, "labelName" DOUBLE,
    "catalogNumber" DOUBLE, "reviewText" DOUBLE, "upc" DOUBLE
);
UPDATE scan_results SET field_confidence = {
    'artistName': TRY_CAST(json_extract_string(extraction, '$.artistName.confidence') AS DOUBLE),
    'albumTitle': TRY_CAST(json_extract_string(extraction, '$.albumTitle.confidence') AS DOUBLE),
    'labelName': TRY_CAST(json_extract_string(extraction, '$.labelName.confidence') AS DOUBLE),
    'catalogNumber': TRY_CAST(
        json_extract_string(extraction, '$.catalogNumber.confidence') AS DOUBLE),
    'reviewText': TRY_CAST(json_extract_string(extraction, '$.reviewText.confidence') AS DOUBLE),
    'upc': TRY_CAST(json_extract_string(extraction, '$.upc.confidence') AS DOUBLE)
} WHERE extraction IS NOT NULL;
"""


# Completion webhooks (scanbatch.webhooks): a job's delivery is written with the job, waiting;
# it becomes due in the transaction that ends the job, with its body fixed then (the same bytes
# and webhook-id on every attempt). No foreign key: `scan_jobs` could not be rebuilt later with
# another table referencing it, and `delete_job` removes these rows itself.
_WEBHOOKS = """
CREATE TABLE webhook_deliveries (
    id VARCHAR PRIMARY KEY,
    job_id UUID NOT NULL,
    url VARCHAR NOT NULL,
    job_url VARCHAR NOT NULL,
    state VARCHAR NOT NULL CHECK (state IN ('waiting', 'due', 'delivered', 'failed')),
    event_type VARCHAR,
    payload VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    last_error VARCHAR
);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id);

CREATE TABLE webhook_attempts (
    delivery_id VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL,
    status_code INTEGER,
    error VARCHAR,
    duration_ms DOUBLE NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
"""


# The backlog (scanbatch.backlog): which jobs wait for Google's Batch API, each of their items'
# trip (waiting, sent in which Google batch, answered; attempts), and each Google batch we
# made, recorded under its display name before it is created, so a restart finds it again
# rather than making a second. New tables: `scan_jobs` cannot be altered (a referenced parent).
# And per result, how it was billed (`batch`: the Batch API's price) and what it cost.
_BACKLOG = """
CREATE TABLE backlog_jobs (
    job_id UUID PRIMARY KEY,
    extractor VARCHAR NOT NULL,
    batched BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE backlog_items (
    job_id UUID NOT NULL,
    item_index INTEGER NOT NULL,
    state VARCHAR NOT NULL CHECK (state IN ('waiting', 'sent', 'answered')),
    batch_id VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0,
    waiting_since TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, item_index)
);

CREATE TABLE backlog_batches (
    id VARCHAR PRIMARY KEY,
    extractor VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    state VARCHAR NOT NULL CHECK (state IN ('packed', 'uploaded', 'pending', 'running',
        'succeeded', 'failed', 'expired', 'cancelled', 'done')),
    google_name VARCHAR,
    file_name VARCHAR,
    items INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    error VARCHAR,
    polls INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    submitted_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    next_poll_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);

ALTER TABLE scan_results ADD COLUMN billing VARCHAR;
ALTER TABLE scan_results ADD COLUMN cost DOUBLE;
"""


# Photo retention (scanbatch.retention): the records whose photos were removed, when and why
# (the photo routes answer 410 with it), and what that freed. A row is written before any file
# goes; `removed_at` once they are gone, so a prune stopped between the two finishes the
# removal on its next run. No foreign key, as for the webhooks: `delete_job` removes these.
_RETENTION = """
CREATE TABLE photo_prunes (
    job_id UUID NOT NULL,
    item_index INTEGER NOT NULL,
    pruned_at TIMESTAMPTZ NOT NULL,
    reason VARCHAR NOT NULL,
    photos INTEGER NOT NULL,
    bytes BIGINT NOT NULL,
    removed_at TIMESTAMPTZ,
    PRIMARY KEY (job_id, item_index)
);
"""


def _migrations() -> list[Migration]:
    from scanbatch.catalog import CATALOG_MIGRATION_SQL

    return [
        Migration(1, "jobs, results and api keys", _CORE),
        Migration(2, "library catalog", CATALOG_MIGRATION_SQL),
        Migration(3, "reviews: the current truth per item and every review as history", _REVIEWS),
        Migration(4, "scan_jobs without manifest (never read)", _NO_MANIFEST),
        Migration(5, "scan_results.audit_key (the audit order) and field_confidence", _AUDIT),
        Migration(6, "completion webhooks: deliveries and their attempts", _WEBHOOKS),
        Migration(
            7, "the backlog (Batch API jobs, items, batches); results' billing, cost", _BACKLOG
        ),
        Migration(
            8, "photo retention: records whose photos were removed, when and why", _RETENTION
        ),
    ]


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""
