"""Several reviewers on one queue, on a real server: leases from `POST /library/scan/review/next`
(twenty at once get twenty records, expiry, release, 409 naming the holder) and versions on the
review PUT (ETag, If-Match, If-None-Match: *, 412 naming who saved and when)."""

import threading
import time

import pytest
import requests

from scanbatch.client import ApiError, Client, StaleVersion
from scanbatch.names import Role
from scanbatch.store import JobStore
from scanbatch.testing.servers import ServerProcess, bearer, keys
from tests.webutil import batch_files

LEASE_SECONDS = 6
REVIEWERS = 20
FIELDS = {
    "artistName": "Nina Simone",
    "albumTitle": "Pastel Blues",
    "labelName": "Philips",
    "catalogNumber": "PHS 600-187",
    "reviewText": None,
    "upc": None,
}


@pytest.fixture(scope="module")
def tokens(server_data_dir):
    store = JobStore.open(server_data_dir / "scanbatch.duckdb")
    try:
        out = keys(store)
        out["reviewers"] = [
            store.keys.create(f"reviewer{n:02d}", Role.MUSIC_DIRECTOR)[1] for n in range(REVIEWERS)
        ]
        return out
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(server_data_dir, tokens):
    srv = ServerProcess(server_data_dir, SCANBATCH_REVIEW_LEASE_SECONDS=str(LEASE_SECONDS)).start()
    yield srv
    srv.stop()


def submit(server, token, n_items, sticker=None):
    contexts = None if sticker is None else [{"stickerText": sticker}] * n_items
    manifest, files = batch_files(n_items=n_items, contexts=contexts)
    client = Client(server.url, token)
    return client, client.submit(files, manifest)


@pytest.fixture(scope="module")
def jobs(server, tokens):
    """Three finished jobs of ten records (30 records to review)."""
    ids = []
    for _ in range(3):
        client, job_id = submit(server, tokens["manager"], 10)
        ids.append(job_id)
    for job_id in ids:
        assert client.wait(job_id, timeout=120).status.value == "completed"
    return ids


def clients(server, tokens):
    return Client(server.url, tokens["director"]), Client(server.url, tokens["other"])


def test_two_reviewers_never_hold_the_same_record(server, tokens, jobs):
    alice, bob = clients(server, tokens)
    a = alice.next_review(job_id=jobs[0])
    b = bob.next_review(job_id=jobs[0])
    assert (a.job_id, a.item_index) != (b.job_id, b.item_index)
    assert a.lease.holder == "alice" and b.lease.holder == "bob"
    assert a.version == '"0"' and a.review is None
    # Asking again hands back the caller's own lease, not a third record.
    again = alice.next_review(job_id=jobs[0])
    assert (again.job_id, again.item_index) == (a.job_id, a.item_index)
    assert again.lease.until >= a.lease.until
    # ...but only within the queue asked for: another job's queue gives another record.
    elsewhere = alice.next_review(job_id=jobs[2])
    assert elsewhere.job_id == jobs[2] and elsewhere.lease.holder == "alice"
    alice.release_lease(elsewhere.job_id, elsewhere.item_index)
    # The queue shows who is on what.
    page = alice.review_items(job_id=jobs[0], limit=20)
    holders = {(i.job_id, i.item_index): i.lease.holder for i in page.items if i.lease}
    assert holders == {(a.job_id, a.item_index): "alice", (b.job_id, b.item_index): "bob"}

    # Bob cannot save or take Alice's record: 409 naming her.
    with pytest.raises(ApiError) as held:
        bob.save_review(a.job_id, a.item_index, FIELDS, None, version=a.version)
    assert held.value.status == 409 and held.value.message.startswith("alice is reviewing")
    with pytest.raises(ApiError) as take:
        bob.take_lease(a.job_id, a.item_index)
    assert take.value.status == 409 and "alice" in take.value.message
    with pytest.raises(ApiError) as release:
        bob.release_lease(a.job_id, a.item_index)
    assert release.value.status == 409

    # Alice saves: her lease ends with it, and next gives her a new record.
    saved = alice.save_review(a.job_id, a.item_index, FIELDS, None, version=a.version)
    assert saved.version == '"1"' and saved.reviewer == "alice"
    after = alice.next_review(job_id=jobs[0])
    assert (after.job_id, after.item_index) not in {
        (a.job_id, a.item_index),
        (b.job_id, b.item_index),
    }
    bob.release_lease(b.job_id, b.item_index)
    alice.release_lease(after.job_id, after.item_index)
    assert not [i for i in alice.review_items(job_id=jobs[0], limit=20).items if i.lease]


def test_a_station_manager_may_release_anyones_lease(server, tokens, jobs):
    alice, bob = clients(server, tokens)
    manager = Client(server.url, tokens["manager"])
    a = alice.next_review(job_id=jobs[1])
    manager.release_lease(a.job_id, a.item_index)
    taken = bob.take_lease(a.job_id, a.item_index)
    assert taken.lease.holder == "bob"
    bob.release_lease(a.job_id, a.item_index)


def test_twenty_reviewers_asking_at_once_get_twenty_records(server, tokens, jobs):
    got, errors = [], []
    start = threading.Barrier(REVIEWERS)

    def ask(token):
        client = Client(server.url, token)
        start.wait()
        try:
            item = client.next_review(sort="audit", job_id=None)
            got.append((item.job_id, item.item_index, item.lease.holder))
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=ask, args=(t,)) for t in tokens["reviewers"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(got) == REVIEWERS
    assert len({(j, i) for j, i, _ in got}) == REVIEWERS  # no record handed out twice
    assert sorted(h for _, _, h in got) == [f"reviewer{n:02d}" for n in range(REVIEWERS)]
    # Each saves (plain PUTs and versioned ones mixed); every save lands.
    for n, (job, index, holder) in enumerate(got):
        client = Client(server.url, tokens["reviewers"][int(holder[-2:])])
        client.save_review(job, index, FIELDS, None, version='"0"' if n % 2 else None)
    page = Client(server.url, tokens["director"]).review_items(state="reviewed", limit=100)
    assert {(i.job_id, i.item_index) for i in page.items} >= {(j, i) for j, i, _ in got}


def test_when_others_hold_everything_left_next_says_so(server, tokens):
    alice, bob = clients(server, tokens)
    client, job_id = submit(server, tokens["director"], 2)
    client.wait(job_id, timeout=120)
    first, second = alice.next_review(job_id=job_id), bob.next_review(job_id=job_id)
    assert {first.item_index, second.item_index} == {0, 1}
    r = requests.post(
        f"{server.url}/library/scan/review/next",
        json={"jobId": job_id},
        headers=bearer(tokens["manager"]),
        timeout=30,
    )
    assert r.status_code == 204 and r.content == b""
    alice.release_lease(job_id, first.item_index)
    bob.release_lease(job_id, second.item_index)


def test_an_expired_lease_frees_the_record_and_the_late_save_is_refused(server, tokens):
    """Alice opened a record and left for longer than the lease; Bob took it and saved. Her
    save, of the version she opened, is refused with 412 naming Bob, not stored over his."""
    alice, bob = clients(server, tokens)
    client, job_id = submit(server, tokens["director"], 1)
    client.wait(job_id, timeout=120)
    a = alice.next_review(job_id=job_id)
    assert bob.next_review(job_id=job_id) is None  # hers while the lease lasts
    time.sleep(LEASE_SECONDS + 0.5)
    b = bob.next_review(job_id=job_id)
    assert (b.job_id, b.item_index, b.lease.holder) == (a.job_id, a.item_index, "bob")
    bobs = bob.save_review(
        b.job_id, b.item_index, {**FIELDS, "labelName": "Fontana"}, None, version=b.version
    )
    with pytest.raises(StaleVersion) as stale:
        alice.save_review(a.job_id, a.item_index, FIELDS, None, version=a.version)
    assert stale.value.status == 412
    assert stale.value.message.startswith("bob saved a review of item 0 at ")
    assert stale.value.current.reviewer == "bob"
    assert stale.value.current.fields["labelName"] == "Fontana"
    assert stale.value.current.version == bobs.version == '"1"'
    history = alice.review_history(job_id, 0)
    assert [r.reviewer for r in history] == ["bob"]  # nothing of hers was written


def test_if_match_refuses_a_save_over_a_newer_review(server, tokens):
    alice, bob = clients(server, tokens)
    client, job_id = submit(server, tokens["director"], 1)
    client.wait(job_id, timeout=120)
    first = alice.save_review(job_id, 0, FIELDS, None)  # a plain PUT still works
    assert first.version == '"1"'
    # Both open the reviewed record at version "1"; Alice saves first.
    second = alice.save_review(job_id, 0, {**FIELDS, "upc": "602547"}, None, version='"1"')
    assert second.version == '"2"'
    with pytest.raises(StaleVersion) as stale:
        bob.save_review(job_id, 0, FIELDS, None, version='"1"')
    assert "alice saved a review of item 0" in stale.value.message
    assert '(version "2")' in stale.value.message
    assert stale.value.current.fields["upc"] == "602547"
    # Reloaded at "2", Bob's save goes through.
    assert bob.save_review(job_id, 0, FIELDS, None, version='"2"').version == '"3"'

    url = f"{server.url}/library/scan/batch/{job_id}/items/0/review"
    body = {"fields": FIELDS, "matchedAlbumId": None}
    head = requests.get(
        f"{server.url}/library/scan/batch/{job_id}/items/0/reviews",
        headers=bearer(tokens["director"]),
        timeout=30,
    )
    assert head.headers["ETag"] == '"3"'
    r = requests.put(
        url, json=body, headers={**bearer(tokens["director"]), "If-None-Match": "*"}, timeout=30
    )
    assert r.status_code == 412 and "bob saved" in r.json()["message"]
    r = requests.put(
        url, json=body, headers={**bearer(tokens["director"]), "If-None-Match": '"3"'}, timeout=30
    )
    assert r.status_code == 400 and "If-None-Match takes only *" in r.json()["message"]
    r = requests.put(
        url, json=body, headers={**bearer(tokens["director"]), "If-Match": '"3"'}, timeout=30
    )
    assert r.status_code == 200 and r.headers["ETag"] == '"4"' == r.json()["version"]


def test_bad_lease_requests_are_answered_in_words(server, tokens, jobs):
    alice, _ = clients(server, tokens)
    with pytest.raises(ApiError) as out_of_range:
        alice.take_lease(jobs[0], 99)
    assert out_of_range.value.status == 400 and "itemIndex" in out_of_range.value.message
    with pytest.raises(ApiError) as unknown_job:
        alice.take_lease("00000000-0000-4000-8000-000000000000", 0)
    assert unknown_job.value.status == 404
    with pytest.raises(ApiError) as bad_id:
        alice.take_lease("not-a-job", 0)
    assert bad_id.value.status == 400
    client, job_id = submit(server, tokens["director"], 1, sticker="sleep:20")
    with pytest.raises(ApiError) as unfinished:
        alice.take_lease(job_id, 0)
    assert unfinished.value.status == 409 and "still" in unfinished.value.message
    with pytest.raises(ApiError) as unknown_item:
        alice.take_lease(job_id, 5)
    assert unknown_item.value.status == 404
    client.cancel(job_id)
    with pytest.raises(ApiError) as dj:
        Client(server.url, tokens["dj"]).next_review()
    assert dj.value.status == 403
    bare = requests.post(
        f"{server.url}/library/scan/review/next", headers=bearer(tokens["manager"]), timeout=30
    )
    assert bare.status_code in (200, 204), bare.text  # no body: the queue's defaults
    if bare.status_code == 200:
        item = bare.json()
        Client(server.url, tokens["manager"]).release_lease(item["jobId"], item["itemIndex"])
    empty = requests.post(
        f"{server.url}/library/scan/review/next",
        data=b"",
        headers={**bearer(tokens["director"]), "Content-Type": "application/json"},
        timeout=30,
    )
    assert empty.status_code == 400 and "JSON" in empty.json()["message"]
    for body, field in (
        ({"sort": "random"}, "sort"),
        ({"state": "reviewed"}, "state"),
        ({"jobId": "x"}, "jobId"),
        ({"limit": 3}, "limit"),
    ):
        r = requests.post(
            f"{server.url}/library/scan/review/next",
            json=body,
            headers=bearer(tokens["director"]),
            timeout=30,
        )
        assert r.status_code == 400 and field in r.json()["message"], (body, r.text)
