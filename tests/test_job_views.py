"""Job views answered from memory (issue 14): after every kind of write the view the store
serves equals a fresh read of the DuckDB file, and the job GET answers 304 to an ETag only
while the job is unchanged."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from scanbatch.errors import NotFound
from scanbatch.models import ItemOutcome, Manifest, Status, Usage
from scanbatch.store import JobStore
from scanbatch.store.db import Database
from scanbatch.testing.servers import bearer, keys
from scanbatch.web.services import services_of


def manifest(n: int = 3) -> Manifest:
    return Manifest.model_validate(
        {"items": [{"imageCount": 1, "photoTypes": ["front"]} for _ in range(n)]}
    )


def outcome(i: int, ok: bool = True, album: int | None = None) -> ItemOutcome:
    return ItemOutcome(
        item_index=i,
        status=Status.COMPLETED if ok else Status.FAILED,
        extraction={"artistName": {"value": f"A{i}", "confidence": 0.9}} if ok else None,
        matched_album_id=album,
        match_score=0.9 if album else None,
        error_message=None if ok else "unreadable photo",
        usage=Usage(extractor="fake", model="m", input_tokens=100, output_tokens=20),
        finished_at=datetime.now(UTC),
    )


class Fresh:
    """Reads through a new store on the same DuckDB file each time, with nothing in memory:
    what is committed."""

    def __init__(self, path) -> None:
        self.path = path

    def get_job(self, job_id: str, user: str | None = None):
        other = JobStore(Database(self.path))
        try:
            return other.get_job(job_id, user)
        finally:
            other.close()

    def list_jobs(self, user: str, limit: int = 20, offset: int = 0):
        other = JobStore(Database(self.path))
        try:
            return other.list_jobs(user, limit, offset)
        finally:
            other.close()

    def create_job(self, *args, **kwargs) -> str:
        other = JobStore(Database(self.path))
        try:
            return other.create_job(*args, **kwargs)
        finally:
            other.close()


@pytest.fixture
def fresh(store) -> Fresh:
    return Fresh(store.db.path)


def same_as_committed(store: JobStore, fresh: Fresh, job_id: str, user: str = "alice"):
    served = store.get_job(job_id, user)
    assert served is store.get_job(job_id, user)  # answered from memory, not rebuilt
    assert served == fresh.get_job(job_id, user)
    return served


def test_every_kind_of_write_leaves_the_served_view_equal_to_a_fresh_read(store, fresh):
    album = store.db.cursor().execute("SELECT min(id) FROM catalog_matched_album").fetchone()[0]
    job_id = store.create_job("alice", manifest(4), extractor="fake")
    assert same_as_committed(store, fresh, job_id).status == Status.PENDING

    store.mark_processing(job_id)
    assert same_as_committed(store, fresh, job_id).status == Status.PROCESSING

    assert store.record_outcomes(job_id, [outcome(0, album=album), outcome(1, ok=False)]) == 2
    view = same_as_committed(store, fresh, job_id)
    assert (view.completed_items, view.failed_items) == (1, 1)
    if album is not None:  # hydrated from the catalog view, as a fresh read does
        assert view.results[0].matched_album is not None

    assert store.record_outcomes(job_id, [outcome(0, ok=False)]) == 0  # already finished
    assert same_as_committed(store, fresh, job_id).results[0].status == Status.COMPLETED

    assert store.fail_unfinished(job_id, "cancelled", "cancelled") == 2  # what cancel does
    view = same_as_committed(store, fresh, job_id)
    assert [r.error_code for r in view.results] == [None, None, "cancelled", "cancelled"]

    assert store.finish_job(job_id) == Status.COMPLETED
    assert same_as_committed(store, fresh, job_id).status == Status.COMPLETED

    store.delete_job(job_id, "alice")
    for reader in (store, fresh):
        with pytest.raises(NotFound):
            reader.get_job(job_id)


def lists_as_committed(store: JobStore, fresh: Fresh, user: str = "alice") -> list[str]:
    for limit, offset in ((20, 0), (2, 1), (3, 4), (5, 99)):
        assert store.list_jobs(user, limit, offset) == fresh.list_jobs(user, limit, offset)
    return [j.job_id for j in store.list_jobs(user, 100, 0).jobs]


def test_the_job_list_served_from_memory_equals_a_fresh_read_after_every_write(store, fresh):
    older = fresh.create_job("alice", manifest(1))  # written before this server started
    first = store.create_job("alice", manifest(2))
    assert lists_as_committed(store, fresh) == [first, older]  # loaded from DuckDB here
    second = store.create_job("alice", manifest(2))
    third = store.create_job("bob", manifest(1))
    assert lists_as_committed(store, fresh) == [second, first, older]
    assert lists_as_committed(store, fresh, "bob") == [third]
    store.mark_processing(first)
    store.record_outcomes(first, [outcome(0)])
    listed = lists_as_committed(store, fresh)
    summary = store.list_jobs("alice").jobs[listed.index(first)]
    assert (summary.status, summary.completed_items) == (Status.PROCESSING, 1)
    store.fail_unfinished(second, "cancelled", "cancelled")
    store.finish_job(second)
    store.finish_job(first)
    assert lists_as_committed(store, fresh) == [second, first, older]
    store.delete_job(first, "alice")
    assert lists_as_committed(store, fresh) == [second, older]
    assert lists_as_committed(store, fresh, "carol") == []
    later = store.create_job("carol", manifest(1))
    assert lists_as_committed(store, fresh, "carol") == [later]


def test_a_failed_write_leaves_the_list_as_committed(store, fresh):
    from scanbatch.models import ManifestItem

    job_id = store.create_job("alice", manifest(1))
    assert lists_as_committed(store, fresh) == [job_id]
    bad = Manifest.model_construct(items=[ManifestItem(image_count=1, photo_types=["f"])] * 11)
    with pytest.raises(Exception, match="CHECK constraint"):
        store.create_job("alice", bad)
    assert lists_as_committed(store, fresh) == [job_id]


def test_finish_without_outcomes_fails_every_item_in_memory_too(store, fresh):
    job_id = store.create_job("alice", manifest(2))
    store.get_job(job_id)  # in memory before the write
    assert store.finish_job(job_id, "Job folder is missing") == Status.FAILED
    view = same_as_committed(store, fresh, job_id)
    assert [r.error_message for r in view.results] == ["Job folder is missing"] * 2


def test_a_view_read_before_a_restart_is_not_stale_after_writes(store, fresh, settings):
    # A job the server did not write since it started (recovered on start) is read once from
    # DuckDB, then kept current by the writes.
    job_id = fresh.create_job("alice", manifest(2))
    assert store.get_job(job_id) == fresh.get_job(job_id)
    store.mark_processing(job_id)
    store.record_outcomes(job_id, [outcome(1)])
    assert same_as_committed(store, fresh, job_id).results[1].status == Status.COMPLETED


def test_another_users_job_is_not_found_from_memory_either(store):
    job_id = store.create_job("alice", manifest(1))
    assert store.get_job(job_id, "alice").job_id == job_id
    with pytest.raises(NotFound, match="Job not found"):
        store.get_job(job_id, "bob")


def test_readers_racing_a_writer_never_see_a_job_go_back(store, fresh):
    """A GET that read DuckDB just before a write commits must not put its older view back
    in memory: every reader sees the count of finished items only grow, and the view served
    at the end is the committed one."""
    job_id = store.create_job("alice", manifest(10))
    store.mark_processing(job_id)
    stop = threading.Event()
    regressions: list[tuple[int, int]] = []

    def reader() -> None:
        seen = 0
        while not stop.is_set():
            done = store.get_job(job_id, "alice").completed_items
            if done < seen:
                regressions.append((seen, done))
            seen = done

    def evicting_reader() -> None:
        # Forces the read-from-DuckDB path over and over, racing the writer.
        while not stop.is_set():
            store._cache.forget(job_id)
            store.get_job(job_id, "alice")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    threads.append(threading.Thread(target=evicting_reader))
    for t in threads:
        t.start()
    try:
        for i in range(10):
            store.record_outcomes(job_id, [outcome(i)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert regressions == []
    assert same_as_committed(store, fresh, job_id).completed_items == 10


def test_a_miss_that_reads_a_newer_commit_than_memory_holds_answers_memory(store, fresh):
    """The interleaving behind a rare failure of the test above, made exact: a GET misses,
    a write commits while it reads, and that writer has not yet replaced the view in memory.
    Answering the newer read would let the same client's next GET (a hit on the older view)
    go back in time; so the view in memory wins."""
    job_id = store.create_job("alice", manifest(3))
    store.mark_processing(job_id)
    store.record_outcomes(job_id, [outcome(0)])
    original = store._read_view
    reader_may_read, writer_committed, writer_may_cache = (threading.Event() for _ in range(3))
    roles: dict[int, str] = {}

    def paused_read(jid):
        role = roles.get(threading.get_ident())
        if role == "reader":
            reader_may_read.wait(10)
        if role == "writer":  # its commit is done: this is its re-read
            writer_committed.set()
            writer_may_cache.wait(10)
        return original(jid)

    store._read_view = paused_read
    answers: list[int] = []

    def reader() -> None:
        roles[threading.get_ident()] = "reader"
        answers.append(store.get_job(job_id, "alice").completed_items)  # a miss
        answers.append(store.get_job(job_id, "alice").completed_items)  # then a hit

    def writer() -> None:
        roles[threading.get_ident()] = "writer"
        store.record_outcomes(job_id, [outcome(2)])

    store._cache.forget(job_id)
    r = threading.Thread(target=reader)
    r.start()
    time.sleep(0.1)  # the reader has missed and waits to read
    store.record_outcomes(job_id, [outcome(1)])  # cached after the reader's look-up: 2 done
    w = threading.Thread(target=writer)
    w.start()
    assert writer_committed.wait(10)  # 3 done in DuckDB, 2 in memory
    reader_may_read.set()
    time.sleep(0.2)  # the reader's miss answers, its hit too
    writer_may_cache.set()
    r.join()
    w.join()
    store._read_view = original
    assert answers == sorted(answers) == [2, 2], answers
    assert same_as_committed(store, fresh, job_id).completed_items == 3


# -- the job GET: ETag and If-None-Match ------------------------------------------------------


def test_job_get_answers_304_only_while_the_job_is_unchanged(app):
    store = services_of(app).store
    tokens = keys(store)
    client = app.test_client()
    job_id = store.create_job("alice", manifest(2))
    url = f"/library/scan/batch/{job_id}"
    auth = bearer(tokens["director"])

    first = client.get(url, headers=auth)
    assert first.status_code == 200 and first.headers["Retry-After"] == "2"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Cache-Control"] == "private, no-cache"
    assert first.get_json()["jobId"] == job_id

    # Unchanged: 304 with no body, whether the app sends the tag as given or weak.
    for sent in (etag, f"W/{etag}", f'"other", {etag}'):
        again = client.get(url, headers={**auth, "If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.data == b"" and again.headers["ETag"] == etag
        assert again.headers["Retry-After"] == "2"
    # Without the header, or with another tag, the full body as before.
    assert client.get(url, headers=auth).data == first.data
    other_tag = client.get(url, headers={**auth, "If-None-Match": '"not-it"'})
    assert other_tag.status_code == 200 and other_tag.data == first.data

    # Any change gives a new body and tag; the old tag no longer matches.
    store.mark_processing(job_id)
    changed = client.get(url, headers={**auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["status"] == "processing"
    assert changed.headers["ETag"] != etag
    store.record_outcomes(job_id, [outcome(0)])
    finished_one = client.get(url, headers={**auth, "If-None-Match": changed.headers["ETag"]})
    assert finished_one.status_code == 200
    assert finished_one.get_json()["results"][0]["status"] == "completed"

    # Finished: no Retry-After, and 304 for its tag.
    store.finish_job(job_id)
    done = client.get(url, headers=auth)
    assert done.status_code == 200 and "Retry-After" not in done.headers
    not_modified = client.get(url, headers={**auth, "If-None-Match": done.headers["ETag"]})
    assert not_modified.status_code == 304 and "Retry-After" not in not_modified.headers


def test_an_etag_does_not_open_another_users_job(app):
    store = services_of(app).store
    tokens = keys(store)
    client = app.test_client()
    job_id = store.create_job("alice", manifest(1))
    url = f"/library/scan/batch/{job_id}"
    etag = client.get(url, headers=bearer(tokens["director"])).headers["ETag"]
    for sent in (etag, "*"):
        r = client.get(url, headers={**bearer(tokens["other"]), "If-None-Match": sent})
        assert r.status_code == 404
        assert r.get_json() == {"status": 404, "message": "Job not found"}
