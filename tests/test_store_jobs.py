import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from scanbatch.errors import BadRequest, NotFound
from scanbatch.models import ItemOutcome, Manifest, ManifestItem, Status, Usage


def manifest(n=3):
    return Manifest.model_validate(
        {
            "items": [
                {"imageCount": 1, "photoTypes": ["front"], "context": {"artistName": f"A{i}"}}
                for i in range(n)
            ]
        }
    )


def done(i, ok=True, **kw):
    return ItemOutcome(
        item_index=i,
        status=Status.COMPLETED if ok else Status.FAILED,
        extraction={"artistName": {"value": f"A{i}", "confidence": 0.9}} if ok else None,
        error_message=None if ok else "unreadable photo",
        usage=Usage(extractor="fake", model="m", input_tokens=100, output_tokens=20),
        finished_at=datetime.now(UTC),
        **kw,
    )


def test_create_job_makes_pending_results_in_item_order(store):
    job_id = store.create_job("alice", manifest(3), extractor="fake")
    job = store.get_job(job_id, "alice")
    assert job.status == Status.PENDING
    assert (job.total_items, job.completed_items, job.failed_items) == (3, 0, 0)
    assert [r.item_index for r in job.results] == [0, 1, 2]
    assert all(r.status == Status.PENDING and r.extraction is None for r in job.results)
    assert job.created_at.tzinfo is not None
    body = job.to_json_dict()
    assert body["jobId"] == job_id and body["createdAt"].endswith("Z")
    assert set(body["results"][0]) >= {
        "itemIndex",
        "status",
        "extraction",
        "matchedAlbumId",
        "matchedAlbum",
        "errorMessage",
    }


def test_lifecycle_with_a_partial_failure_ends_completed(store):
    job_id = store.create_job("alice", manifest(3))
    store.mark_processing(job_id)
    assert store.get_job(job_id).status == Status.PROCESSING
    assert store.record_outcomes(job_id, [done(0), done(1, ok=False)]) == 2
    mid = store.get_job(job_id)
    assert (mid.completed_items, mid.failed_items) == (1, 1)
    assert mid.results[2].status == Status.PROCESSING
    assert store.finish_job(job_id) == Status.COMPLETED
    job = store.get_job(job_id)
    assert (job.completed_items, job.failed_items) == (1, 2)
    assert job.results[1].error_message == "unreadable photo"
    assert job.results[2].error_message == "Item was not processed"
    assert job.results[0].extraction == {"artistName": {"value": "A0", "confidence": 0.9}}
    assert (job.input_tokens, job.output_tokens) == (200, 40)


def test_all_items_failing_fails_the_job(store):
    job_id = store.create_job("alice", manifest(2))
    store.record_outcomes(job_id, [done(0, ok=False), done(1, ok=False)])
    assert store.finish_job(job_id) == Status.FAILED
    assert store.get_job(job_id).status == Status.FAILED


@pytest.mark.parametrize(("last_ok", "status"), [(True, Status.COMPLETED), (False, Status.FAILED)])
def test_the_last_result_recorded_finishes_the_job(store, last_ok, status):
    """Once every item is finished the job is too, in the same write: the app is answered
    without waiting for the notebook's report."""
    job_id = store.create_job("alice", manifest(2))
    store.mark_processing(job_id)
    store.record_outcomes(job_id, [done(0, ok=last_ok)])

    def completed_at():
        with store.db.read() as cur:
            return cur.execute(
                "SELECT completed_at FROM scan_jobs WHERE id = ?", [job_id]
            ).fetchone()[0]

    assert store.get_job(job_id).status == Status.PROCESSING
    assert completed_at() is None
    store.record_outcomes(job_id, [done(1, ok=last_ok)])
    assert store.get_job(job_id).status == status
    assert store.list_jobs("alice").jobs[0].status == status
    ended = completed_at()
    assert ended is not None
    # Finishing it again (the runner's end of the notebook) changes nothing.
    assert store.finish_job(job_id) == status
    assert completed_at() == ended


def test_ingestion_is_idempotent(store):
    job_id = store.create_job("alice", manifest(2))
    first = done(0)
    assert store.record_outcomes(job_id, [first]) == 1
    before = store.result_rows(job_id)
    # The same line read again, or a later duplicate, changes nothing.
    assert store.record_outcomes(job_id, [first, done(0, ok=False)]) == 0
    assert store.result_rows(job_id) == before
    assert store.get_job(job_id).completed_items == 1


def test_per_result_accounting_is_stored(store):
    job_id = store.create_job("alice", manifest(1))
    o = done(0, matched_album_id=None, match_score=None)
    o.usage.prompt_version, o.usage.latency_ms, o.usage.raw_response = "v1", 812.5, '{"a": 1}'
    store.record_outcomes(job_id, [o])
    row = store.result_rows(job_id)[0]
    assert (row["extractor"], row["model"], row["prompt_version"]) == ("fake", "m", "v1")
    assert (row["latency_ms"], row["input_tokens"], row["output_tokens"]) == (812.5, 100, 20)
    assert row["raw_response"] == '{"a": 1}'
    assert row["completed_at"] is not None


def test_another_users_job_is_not_found(store):
    job_id = store.create_job("alice", manifest(1))
    with pytest.raises(NotFound, match="Job not found"):
        store.get_job(job_id, "bob")
    with pytest.raises(NotFound, match="Job not found"):
        store.get_job(str(uuid.uuid4()), "alice")
    with pytest.raises(BadRequest, match="Invalid job ID format"):
        store.get_job("not-a-uuid", "alice")
    with pytest.raises(NotFound):
        store.delete_job(job_id, "bob")
    assert store.get_job(job_id, "alice").job_id == job_id


def test_list_is_newest_first_with_limit_offset_and_total(store):
    ids = []
    for _ in range(5):
        ids.append(store.create_job("alice", manifest(1)))
        time.sleep(0.002)
    store.create_job("bob", manifest(1))
    page = store.list_jobs("alice", limit=2, offset=1)
    assert page.total == 5 and (page.limit, page.offset) == (2, 1)
    assert [j.job_id for j in page.jobs] == [ids[3], ids[2]]
    assert [j.job_id for j in store.list_jobs("alice", 20, 4).jobs] == [ids[0]]
    assert store.list_jobs("carol").total == 0


def test_delete_removes_results_then_job(store):
    job_id = store.create_job("alice", manifest(2))
    store.record_outcomes(job_id, [done(0)])
    store.delete_job(job_id, "alice")
    with pytest.raises(NotFound):
        store.get_job(job_id)
    assert store.result_rows(job_id) == []


def test_unfinished_jobs_are_listed_for_recovery(store):
    a = store.create_job("alice", manifest(1))
    b = store.create_job("alice", manifest(2))
    store.mark_processing(b)
    store.record_outcomes(b, [done(0)])
    store.record_outcomes(a, [done(0)])
    store.finish_job(a)
    assert store.unfinished_jobs() == [b]
    assert store.unfinished_items(b) == [1]


def test_failed_write_leaves_no_partial_job(store):
    # The model refuses 11 items; construct one anyway to reach the database's own CHECK.
    item = ManifestItem(image_count=1, photo_types=["f"])
    bad = Manifest.model_construct(items=[item] * 11)
    with pytest.raises(Exception, match="CHECK constraint"):
        store.create_job("alice", bad)  # total_items CHECK fails after nothing else was written
    assert store.list_jobs("alice").total == 0
    assert store.db.cursor().execute("SELECT count(*) FROM scan_results").fetchone()[0] == 0


def test_idempotency_lookup_is_per_user_and_windowed(store):
    job_id = store.create_job("alice", manifest(1), idempotency_key="k1", request_hash="h")
    assert store.find_idempotent("alice", "k1", timedelta(hours=24)) == (job_id, "h")
    assert store.find_idempotent("bob", "k1", timedelta(hours=24)) is None
    assert store.find_idempotent("alice", "k1", timedelta(seconds=-1)) is None


def test_concurrent_writers_from_many_threads(store):
    """16 threads each create jobs and record outcomes at once: every write lands."""
    jobs = [store.create_job(f"user{i % 4}", manifest(3)) for i in range(16)]
    errors = []
    barrier = threading.Barrier(16)

    def worker(job_id):
        try:
            barrier.wait()
            store.mark_processing(job_id)
            for i in range(3):
                store.record_outcomes(job_id, [done(i, ok=i != 1)])
                store.get_job(job_id)
            store.create_job("extra", manifest(1))
            store.finish_job(job_id)
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for job_id in jobs:
        job = store.get_job(job_id)
        assert (job.status, job.completed_items, job.failed_items) == (Status.COMPLETED, 2, 1)
    assert store.list_jobs("extra").total == 16


def test_results_are_hydrated_from_the_catalog(store):
    from scanbatch.catalog import import_csv
    from scanbatch.settings import SHIPPED_DATA

    with store.db.write() as cur:
        import_csv(cur, SHIPPED_DATA / "catalog_sample.csv", own_transaction=False)
    album_id, artist = (
        store.db.cursor()
        .execute("SELECT id, artist_name FROM catalog_matched_album ORDER BY id LIMIT 1")
        .fetchone()
    )
    job_id = store.create_job("alice", manifest(2))
    store.record_outcomes(
        job_id,
        [done(0, matched_album_id=album_id, match_score=0.93), done(1, match_note="id 7 unknown")],
    )
    first, second = store.get_job(job_id).to_json_dict()["results"]
    assert first["matchedAlbumId"] == album_id and first["matchScore"] == 0.93
    assert first["matchedAlbum"]["id"] == album_id
    assert first["matchedAlbum"]["artistName"] == artist
    assert set(first["matchedAlbum"]) == {
        "id",
        "artistName",
        "albumTitle",
        "codeLetters",
        "codeArtistNumber",
        "codeNumber",
        "genreName",
        "formatName",
        "label",
    }
    assert second["matchedAlbum"] is None and second["matchNote"] == "id 7 unknown"


def test_finished_job_views_are_cached_until_the_job_changes(store):
    job_id = store.create_job("alice", manifest(1))
    store.record_outcomes(job_id, [done(0)])
    store.finish_job(job_id)
    first = store.get_job(job_id, "alice")
    assert store.get_job(job_id, "alice") is first  # served from the cache
    with pytest.raises(NotFound):
        store.get_job(job_id, "bob")  # the owner check still applies
    store.delete_job(job_id, "alice")
    with pytest.raises(NotFound):
        store.get_job(job_id, "alice")


def test_finishing_a_job_that_is_gone_says_so(store):
    with pytest.raises(NotFound, match="Job not found"):
        store.finish_job(str(uuid.uuid4()))
