"""The backlog end to end: a real server (gemini extractor, the real google-genai SDK) against
the loopback fake of Google's Files and Batch APIs. Records posted as `mode=backlog` are packed
into Google batches, answered out of order, matched by key, read by each job's own notebook,
billed at the batch price; crashes and every way a batch ends are survived."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from scanbatch.prices import load_prices
from scanbatch.store import JobStore
from scanbatch.testing.fake_batch import FakeBatchAPI, LineError
from scanbatch.testing.fake_gemini import extraction_reply
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import FINISHED, ServerProcess, bearer, keys

pytestmark = pytest.mark.slow

# Albums of the sample catalog the server seeds, so that answers match.
SHELF = [
    ("Ruth Vega", "Tiny Whale"),
    ("Mia Hall", "Red Valley"),
    ("The Seas", "Violent Ladder"),
]
TOKENS_IN, TOKENS_OUT = 1500, 90


class Shelf:
    """What the fake answers per key: each record the album the test posted for it."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[str, str]] = {}

    def answer(self, key: str, request: dict) -> dict:
        artist, title = self.records.get(key, ("Unknown", "Unknown"))
        return extraction_reply(
            {
                "artistName": {"value": artist, "confidence": 0.93},
                "albumTitle": {"value": title, "confidence": 0.91},
            },
            prompt_tokens=TOKENS_IN,
            output_tokens=TOKENS_OUT,
        ).body


def server_for(data_dir: Path, fake: FakeBatchAPI, **env: str) -> ServerProcess:
    return ServerProcess(
        data_dir,
        "gemini",
        GEMINI_API_KEY="test-key",
        SCANBATCH_GEMINI_BASE_URL=fake.base_url,
        SCANBATCH_BACKLOG_WAIT_SECONDS=env.pop("wait", "0.3"),
        SCANBATCH_BACKLOG_POLL_SECONDS="0.2",
        SCANBATCH_BACKLOG_RETRIES=env.pop("retries", "1"),
        **env,
    )


def tokens_for(data_dir: Path) -> dict[str, str]:
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    try:
        return keys(store)
    finally:
        store.close()


def phone_photo(n: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG as a phone sends it; `size` (700, 500) of noise is about 300 KB, a real photo's
    weight in a batch file."""
    if size == (64, 48):
        return image_bytes("JPEG", size, ("red", "blue", "green")[n % 3])
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(n).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def post_backlog(
    server, token, records, shelf: Shelf | None = None, *, photos=2, size=(64, 48), **form
):
    """One job of `records` as the phone names its photos (IMG_4101.jpg, ...)."""
    items = [
        {
            "imageCount": photos,
            "photoTypes": ["front", "back"][:photos],
            "context": {"stickerText": f"shelf {n}"},
        }
        for n in range(len(records))
    ]
    files = [
        (
            "images",
            (f"IMG_{4101 + n}.jpg", phone_photo(n, size), "image/jpeg"),
        )
        for n in range(len(records) * photos)
    ]
    r = requests.post(
        f"{server.url}/library/scan/batch",
        data={"manifest": json.dumps(items), "mode": "backlog", **form},
        files=files,
        headers=bearer(token),
        timeout=30,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    if shelf is not None:
        for n, record in enumerate(records):
            shelf.records[f"{job_id}/{n}"] = record
    return job_id


def get_job(server, token, job_id) -> dict:
    r = requests.get(f"{server.url}/library/scan/batch/{job_id}", headers=bearer(token), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not met in {timeout} s")


def test_a_shelf_posted_as_backlog_is_read_matched_and_billed_at_the_batch_price(tmp_path):
    shelf = Shelf()
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    with FakeBatchAPI(answer=shelf.answer, finish_after=None) as fake:
        server = server_for(data_dir, fake, wait="1").start()
        try:
            records = [SHELF[n % 3] for n in range(10)]
            jobs = [post_backlog(server, token, records, shelf) for _ in range(3)]
            # Waiting for its batch: pending, with the backlog saying where it stands.
            r = requests.get(
                f"{server.url}/library/scan/batch/{jobs[0]}", headers=bearer(token), timeout=10
            )
            first = r.json()
            assert first["mode"] == "backlog" and first["status"] == "pending"
            # Google takes minutes to hours: the app is told to ask every minute, not 2 s.
            assert r.headers["Retry-After"] == "60"
            assert first["backlog"]["state"] in ("waiting", "sending", "submitted")
            wait_for(lambda: fake.creates, what="a Google batch")
            name = fake.creates[0].name
            wait_for(
                lambda: get_job(server, token, jobs[2])["backlog"]["state"] == "submitted",
                what="submitted",
            )
            # The three jobs' 30 records went in one Google batch, one line each, by key.
            assert len(fake.creates) == 1 and fake.uploads[0].lines == 30
            view = get_job(server, token, jobs[1])
            assert view["backlog"]["batch"] == name and view["backlog"]["submittedAt"]
            fake.finish(name)
            done = [server.wait_finished(job, token) for job in jobs]
            answered = [line["key"] for line in fake.result_lines(name)]
        finally:
            server.stop()
    # Google answered out of order (as it does: python-genai #1909); every record still has
    # its own album.
    assert sorted(answered) == sorted(shelf.records) and answered != sorted(answered)
    prices = load_prices()
    full = prices.cost("gemini", "gemini-3-flash-preview", TOKENS_IN, TOKENS_OUT)
    for job in done:
        assert job["status"] == "completed" and job["completedItems"] == 10
        assert job["backlog"]["state"] == "answered"
        for n, result in enumerate(job["results"]):
            artist, title = records[n]
            assert result["extraction"]["artistName"]["value"] == artist
            assert result["matchedAlbum"]["albumTitle"] == title
        # Billed at the Batch API's price: half the interactive price of the same tokens.
        assert job["cost"] == pytest.approx(10 * full * 0.5)
    # The job's notebook is its audit trail: what was sent, when, in which Google batch.
    notebook = (data_dir / "jobs" / jobs[0] / "process_batch.ipynb").read_text()
    assert name in notebook and "backlog" in notebook and "sent" in notebook
    # The records are reviewable like any other.
    again = ServerProcess(data_dir, "ocr").start()
    try:
        queue = requests.get(
            f"{again.url}/library/scan/review/items",
            params={"jobId": jobs[0]},
            headers=bearer(token),
            timeout=10,
        )
        assert queue.status_code == 200 and queue.json()["total"] == 10
    finally:
        again.stop()


def test_line_errors_fail_alone_and_retryable_ones_are_sent_again(tmp_path):
    shelf = Shelf()
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    tries: dict[str, int] = {}

    def answer(key: str, request: dict):
        tries[key] = tries.get(key, 0) + 1
        if key.endswith("/1"):
            return LineError(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
        if key.endswith("/2") and tries[key] == 1:
            return LineError(503, "The service is currently unavailable.", "UNAVAILABLE")
        return shelf.answer(key, request)

    with FakeBatchAPI(answer=answer) as fake:
        server = server_for(data_dir, fake).start()
        try:
            job_id = post_backlog(server, token, SHELF, shelf)
            job = server.wait_finished(job_id, token)
        finally:
            server.stop()
    assert [r["status"] for r in job["results"]] == ["completed", "failed", "completed"]
    assert job["results"][1]["errorCode"] == "backlog_line_error"
    assert "INVALID_ARGUMENT" in job["results"][1]["errorMessage"]
    # The 503 line went again in a second Google batch, and was answered there.
    assert len(fake.creates) == 2 and tries[f"{job_id}/2"] == 2
    assert fake.uploads[1].lines == 1


@pytest.mark.parametrize("outcome,code", [("expire", "expired"), ("fail", "failed")])
def test_a_batch_that_expires_or_fails_is_sent_again_then_its_records_fail(tmp_path, outcome, code):
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    with FakeBatchAPI() as fake:
        fake.set_outcome(outcome)
        fake.set_outcome(outcome)
        server = server_for(data_dir, fake, retries="1").start()
        try:
            job_id = post_backlog(server, token, SHELF[:2])
            job = server.wait_finished(job_id, token)
        finally:
            server.stop()
    assert len(fake.creates) == 2  # sent once, then once more (SCANBATCH_BACKLOG_RETRIES 1)
    assert job["status"] == "failed"
    for result in job["results"]:
        assert result["errorCode"] == f"backlog_batch_{code}"
        assert "sent 2 times" in result["errorMessage"]
        assert "SCANBATCH_BACKLOG_RETRIES" in result["errorMessage"]


def test_kill_9_after_google_created_the_batch_but_before_it_was_recorded(tmp_path):
    """The server dies the moment Google has made the batch: the restarted server finds it by
    its display name, makes no second, and every record is answered once."""
    shelf = Shelf()
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    with FakeBatchAPI(answer=shelf.answer, finish_after=None) as fake:
        first = server_for(data_dir, fake, SCANBATCH_TEST_BACKLOG_PAUSE="created").start()
        job_id = post_backlog(server := first, token, SHELF, shelf)
        wait_for(lambda: fake.creates, what="the batch created")
        time.sleep(0.3)
        first.kill()
        second = server_for(data_dir, fake).start()
        try:
            wait_for(
                lambda: get_job(second, token, job_id)["backlog"]["batch"],
                what="the batch found again",
            )
            fake.finish()
            job = second.wait_finished(job_id, token)
        finally:
            second.stop()
    assert server is first
    assert len(fake.creates) == 1 and len(fake.uploads) == 1
    assert job["status"] == "completed" and job["completedItems"] == 3
    lines = (data_dir / "jobs" / job_id / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["itemIndex"] for x in lines) == [0, 1, 2]


def test_kill_9_while_google_works_then_restart(tmp_path):
    shelf = Shelf()
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    with FakeBatchAPI(answer=shelf.answer, finish_after=None) as fake:
        first = server_for(data_dir, fake).start()
        job_id = post_backlog(first, token, SHELF, shelf)
        wait_for(
            lambda: get_job(first, token, job_id)["backlog"]["state"] == "submitted",
            what="submitted",
        )
        first.kill()
        fake.finish()  # Google finishes while no server runs
        second = server_for(data_dir, fake).start()
        try:
            job = second.wait_finished(job_id, token)
        finally:
            second.stop()
    assert len(fake.creates) == 1
    assert job["status"] == "completed" and job["backlog"]["state"] == "answered"
    assert [r["extraction"]["artistName"]["value"] for r in job["results"]] == [a for a, _ in SHELF]


def test_cancel_and_delete_reach_the_google_batch(tmp_path):
    data_dir = tmp_path / "data"
    tokens = tokens_for(data_dir)
    token = tokens["director"]
    # A batch file a killed server was writing, never recorded: swept at start.
    orphan = data_dir / "backlog" / "scanbatch-00000000-0000-0000-0000-000000000000.jsonl"
    orphan.parent.mkdir(parents=True)
    orphan.write_text('{"key": "x/0", "request": {}}\n')
    with FakeBatchAPI(finish_after=None) as fake:
        server = server_for(data_dir, fake).start()
        try:
            cancelled = post_backlog(server, token, SHELF[:2])
            wait_for(lambda: fake.creates, what="first batch")
            r = requests.post(
                f"{server.url}/library/scan/batch/{cancelled}/cancel",
                headers=bearer(token),
                timeout=30,
            )
            assert r.status_code == 200
            body = r.json()
            assert [x["errorMessage"] for x in body["results"]] == ["cancelled", "cancelled"]
            assert body["backlog"]["state"] == "stopped"
            wait_for(lambda: fake.cancels, what="cancelled at Google")
            assert not orphan.exists()
            assert fake.cancels == [fake.creates[0].name]
            deleted = post_backlog(server, token, SHELF[:1])
            wait_for(lambda: len(fake.creates) == 2, what="second batch")
            r = requests.delete(
                f"{server.url}/library/scan/batch/{deleted}", headers=bearer(token), timeout=30
            )
            assert r.status_code == 204
            wait_for(lambda: fake.creates[1].name in fake.cancels, what="cancelled at Google")
            # Once Google says it has ended, a batch no job is in any more is deleted there.
            wait_for(lambda: fake.creates[1].name in fake.deletes, what="deleted at Google")
        finally:
            server.stop()


def test_records_are_split_into_batches_under_the_file_limit(tmp_path):
    shelf = Shelf()
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    with FakeBatchAPI(answer=shelf.answer) as fake:
        server = server_for(data_dir, fake, SCANBATCH_BACKLOG_FILE_BYTES="1000000").start()
        try:
            records = [SHELF[n % 3] for n in range(10)]
            # Photos of ~300 KB (~400 KB in base64): two records per 1 MB file.
            job_id = post_backlog(server, token, records, shelf, photos=1, size=(700, 500))
            job = server.wait_finished(job_id, token, timeout=120)
        finally:
            server.stop()
    assert job["status"] == "completed" and job["completedItems"] == 10
    assert len(fake.creates) >= 3
    assert all(u.size <= 1_000_000 for u in fake.uploads)
    assert sum(u.lines for u in fake.uploads) == 10


def test_an_extractor_that_cannot_batch_runs_the_job_interactively_and_says_so(tmp_path):
    data_dir = tmp_path / "data"
    token = tokens_for(data_dir)["director"]
    server = ServerProcess(data_dir, "ocr").start()
    try:
        job_id = post_backlog(server, token, SHELF[:1], photos=1)
        job = server.wait_finished(job_id, token, timeout=120)
    finally:
        server.stop()
    assert job["mode"] == "backlog" and job["status"] in FINISHED
    assert job["backlog"]["state"] == "interactive"
    assert "ocr extractor cannot use a batch API" in job["backlog"]["note"]


@pytest.mark.parametrize(
    "form,manifest,message",
    [
        ({"mode": "later"}, None, "mode must be 'interactive' or 'backlog' (got 'later')"),
        (
            {"mode": "interactive"},
            {"mode": "backlog"},
            "mode is 'interactive' in the form but 'backlog' in the manifest",
        ),
        ({}, {"mode": 3}, "manifest 'mode' must be 'interactive' or 'backlog'"),
        ({"mode": "backlog"}, {"items": 11}, "Batch cannot exceed 10 items"),
    ],
)
def test_bad_backlog_input_is_a_400_naming_the_field(
    live_server, server_tokens, form, manifest, message
):
    count = 11 if manifest and manifest.get("items") == 11 else 1
    items = [{"imageCount": 1, "photoTypes": ["front"]}] * count
    body = {"items": items, **{k: v for k, v in (manifest or {}).items() if k != "items"}}
    r = requests.post(
        f"{live_server.url}/library/scan/batch",
        data={"manifest": json.dumps(body), **form},
        files=[("images", (f"IMG_{n}.jpg", image_bytes(), "image/jpeg")) for n in range(count)],
        headers=bearer(server_tokens["director"]),
        timeout=30,
    )
    assert r.status_code == 400
    assert message in r.json()["message"]
