"""A full disk, on a real small filesystem each test mounts itself (a tmpfs: we are root here
and in CI; elsewhere run this file under `unshare -rm`, which makes the test root in a user and
mount namespace of its own). Nothing mocks `write`: the disk is filled with a file until the
kernel says ENOSPC, and the server, its store and its kernels meet that disk as a station's
would.

What each write raised, measured here, is in scanbatch/diskspace.py."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from scanbatch.backup import read_manifest
from scanbatch.errors import DiskFull
from scanbatch.jobfolder import ResultsWriter, read_results
from scanbatch.models import ItemOutcome, Status
from scanbatch.settings import Settings
from scanbatch.store import Database, JobStore
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess, bearer, keys, launcher_env
from scanbatch.web.uploads import StagedFile
from tests.test_backlog import tokens_for
from tests.test_retention import finished_job
from tests.test_web_review import TRUTH

MiB = 1024 * 1024


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` for the block, unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.fail(
            "mounting a tmpfs needs root: run `unshare -rm .venv/bin/python -m pytest "
            "tests/test_full_disk.py` (a mount namespace of the test's own)"
        )
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # a process still in it


def fill(disk: Path, leave: int = 0) -> Path:
    """A file taking the disk's free space but `leave` bytes; remove it to free them."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb", buffering=0) as fh:
        left = free - leave
        block = b"\0" * MiB
        while left > 0:
            try:
                left -= fh.write(block[: min(left, MiB)])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def test_a_commit_on_a_full_disk_is_507_and_the_store_takes_writes_once_space_is_freed(tmp_path):
    with small_disk(tmp_path / "disk", "4m") as disk:
        db = Database(disk / "store.duckdb")
        try:
            with db.write() as cur:
                cur.execute("CREATE TABLE t (n INTEGER, s VARCHAR)")
                cur.execute("INSERT INTO t VALUES (1, 'kept')")
            db.cursor().execute("CHECKPOINT")  # an empty WAL: the next commit needs space
            filler = fill(disk)
            with pytest.raises(DiskFull) as refused, db.write() as cur:
                cur.execute("INSERT INTO t SELECT range, repeat('x', 100) FROM range(1000)")
            assert refused.value.status == 507
            assert str(disk / "store.duckdb") in refused.value.message
            with db.read() as cur:  # nothing of it, and reads go on
                assert cur.execute("SELECT count(*) FROM t").fetchone() == (1,)

            filler.unlink()
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (2, 'after')")
            with db.read() as cur:
                assert cur.execute("SELECT n FROM t ORDER BY n").fetchall() == [(1,), (2,)]
        finally:
            db.close()


def test_the_store_opens_itself_again_after_a_checkpoint_on_a_full_disk_invalidated_it(
    tmp_path, caplog
):
    """A checkpoint that cannot grow the file makes DuckDB invalidate the database (every
    statement after it fails, reads too): `Database` opens the file again, with every commit
    acknowledged before, and other threads' cursors follow."""
    with small_disk(tmp_path / "disk", "4m") as disk:
        db = Database(disk / "store.duckdb")
        try:
            with db.write() as cur:
                cur.execute("CREATE TABLE t (n INTEGER, s VARCHAR)")
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (1, 'acknowledged')")
            other = {}
            seen = threading.Event()
            go_on = threading.Event()

            def reader() -> None:  # a thread with a cursor of the first connection
                with db.read() as cur:
                    other["before"] = cur.execute("SELECT count(*) FROM t").fetchone()
                seen.set()
                go_on.wait(30)
                with db.read() as cur:
                    other["after"] = cur.execute("SELECT count(*) FROM t").fetchone()

            thread = threading.Thread(target=reader)
            thread.start()
            seen.wait(30)
            # Every commit checkpoints, with room for the WAL but not for the file to grow.
            db.cursor().execute("SET checkpoint_threshold = '1KB'")
            filler = fill(disk, leave=64 * 1024)
            with pytest.raises(DiskFull), db.write() as cur:
                cur.execute(
                    "INSERT INTO t SELECT range, md5(range::VARCHAR) || md5((range * 7)::VARCHAR)"
                    " FROM range(20000)"
                )
            assert "Failed to create checkpoint" in caplog.text  # the path measured: fatal
            with db.read() as cur:  # a new connection: no "database has been invalidated"
                assert cur.execute("SELECT n, s FROM t").fetchall() == [(1, "acknowledged")]
            go_on.set()
            thread.join(30)
            assert other == {"before": (1,), "after": (1,)}

            filler.unlink()
            with db.write() as cur:
                cur.execute("INSERT INTO t VALUES (2, 'after')")
            with db.read() as cur:
                assert cur.execute("SELECT count(*) FROM t").fetchone() == (2,)
        finally:
            db.close()


def _outcome(index: int, error: str = "") -> ItemOutcome:
    return ItemOutcome(
        item_index=index,
        status=Status.FAILED,
        error_message=error or f"item {index}",
        finished_at=datetime.now(UTC),
    )


def test_a_result_line_that_does_not_fit_is_cut_back_and_the_next_one_follows_whole(tmp_path):
    """A full disk takes what fits of a write (a page here) before it refuses the rest: the
    line's part must not stay, or the next line would follow it, torn, mid-file."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        writer = ResultsWriter(disk / "results.jsonl")
        writer.append(_outcome(0))
        kept = writer.path.read_bytes()
        filler = fill(disk, leave=4096)
        with pytest.raises(DiskFull) as refused:
            writer.append(_outcome(1, "x" * 20_000))  # more than the page left
        assert str(disk) in refused.value.message
        assert writer.path.read_bytes() == kept

        filler.unlink()
        writer.append(_outcome(2))
        outcomes, _ = read_results(writer.path)
        assert [o.item_index for o in outcomes] == [0, 2]


def test_a_staged_photo_is_written_whole_or_refused_never_kept_short(tmp_path):
    """Werkzeug ignores the count a write returns: near a full disk a write takes only what
    fits, and a photo would be kept cut short without a word."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=4096)
        staged = StagedFile(disk / "00", 0)
        try:
            with pytest.raises(OSError) as refused:
                staged.write(b"\xff" * 12_000)
            assert refused.value.errno == errno.ENOSPC
        finally:
            staged.close()


def test_a_full_disk_no_route_expected_is_still_a_507(app, settings, tmp_path):
    """The error handler's net under every route: a real ENOSPC from a write nothing guards.
    A failed write names no file (only a failed open does): the message names the data
    folder."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk)

        def unguarded() -> str:
            (disk / "report.txt").write_bytes(b"x" * 8192)
            return "written"

        app.add_url_rule("/test/unguarded-write", view_func=unguarded)
        r = app.test_client().get("/test/unguarded-write")
        assert r.status_code == 507
        assert r.get_json() == DiskFull(settings.data_dir).to_dict()


# -- a real server ------------------------------------------------------------------------


@contextlib.contextmanager
def _serving(data: Path):
    """A real server on `data`, with the usual users' keys (made before it opens the store)."""
    tokens = tokens_for(data)
    srv = ServerProcess(data).start()
    try:
        yield srv, tokens
    finally:
        srv.stop()


def _post_batch(srv: ServerProcess, token: str, contexts: list[dict]) -> requests.Response:
    manifest = {
        "items": [{"imageCount": 1, "photoTypes": ["front"], "context": c} for c in contexts]
    }
    return requests.post(
        f"{srv.url}/library/scan/batch",
        data={"manifest": json.dumps(manifest)},
        files=[
            ("images", (f"IMG_{i}.jpg", image_bytes(), "image/jpeg")) for i in range(len(contexts))
        ],
        headers=bearer(token),
        timeout=30,
    )


def _scan(srv: ServerProcess, token: str) -> requests.Response:
    return requests.post(
        f"{srv.url}/library/scan",
        data={"artist_name": "Can"},
        files=[("images", ("front.jpg", image_bytes(), "image/jpeg"))],
        headers=bearer(token),
        timeout=30,
    )


def _get(srv: ServerProcess, token: str, path: str) -> requests.Response:
    return requests.get(f"{srv.url}{path}", headers=bearer(token), timeout=30)


def _gets_answer(srv: ServerProcess, token: str, job_id: str) -> None:
    """What a station and its reviewers keep reading, whatever the disk."""
    for path in (
        "/healthz",
        "/library/scan/batch",
        f"/library/scan/batch/{job_id}",
        "/library/scan/review/items",
        f"/library/scan/batch/{job_id}/items/0/reviews",
    ):
        r = _get(srv, token, path)
        assert r.status_code == 200, (path, r.status_code, r.text)


def _assert_full(r: requests.Response, disk: Path) -> None:
    assert r.status_code == 507, r.text
    body = r.json()
    assert set(body) == {"status", "message"} and body["status"] == 507
    assert str(disk) in body["message"] and "is full" in body["message"], body


def _job_count(srv: ServerProcess, token: str) -> int:
    return _get(srv, token, "/library/scan/batch").json()["total"]


def _review(srv: ServerProcess, token: str, job_id: str, note: str) -> requests.Response:
    # Over a tmpfs page (4 KiB) once in the WAL: a smaller commit may fit in the slack of the
    # WAL's last page on a disk that is otherwise full, and be saved (rightly).
    fields = {**TRUTH, "reviewText": "r" * 1000, "catalogNumber": "UAS 29 211 " + "c" * 900}
    return requests.put(
        f"{srv.url}/library/scan/batch/{job_id}/items/0/review",
        json={"fields": fields, "matchedAlbumId": None, "note": note + "n" * 1500},
        headers=bearer(token),
        timeout=30,
    )


def _revisions(srv: ServerProcess, token: str, job_id: str) -> list[tuple[int, str]]:
    reviews = _get(srv, token, f"/library/scan/batch/{job_id}/items/0/reviews").json()["reviews"]
    return [(r["revision"], r["note"][:7]) for r in reviews]


LONG = [{"stickerText": f"record {i} " + "s" * 2000, "artistName": "Can"} for i in range(3)]


@pytest.fixture
def jobs_on_small_disk(tmp_path):
    """A server whose job folders are on a small disk of their own (the store is not)."""
    data = tmp_path / "data"
    with small_disk(data / "jobs", "8m") as jobs, _serving(data) as (srv, tokens):
        yield srv, tokens, jobs


def test_a_full_jobs_disk_refuses_uploads_fails_a_running_job_in_words_and_serves_thumbnails(
    jobs_on_small_disk,
):
    srv, tokens, jobs = jobs_on_small_disk
    token = tokens["director"]
    done = _post_batch(srv, token, [{"artistName": "Can"}]).json()["jobId"]
    assert srv.wait_finished(done, token)["status"] == "completed"
    running = _post_batch(srv, token, [{"stickerText": "sleep:5"}, {"stickerText": "sleep:5"}])
    running = running.json()["jobId"]
    srv.poll(running, token, lambda b: b["status"] == "processing")

    filler = fill(jobs)
    before = sorted(p.name for p in jobs.iterdir())
    refused = _post_batch(srv, token, [{"artistName": "Can"}, {"artistName": "Neu!"}])
    _assert_full(refused, jobs)
    assert sorted(p.name for p in jobs.iterdir()) == before  # no folder, no staging left
    assert _job_count(srv, token) == 2  # no rows
    _assert_full(_scan(srv, token), jobs)
    assert sorted(p.name for p in jobs.iterdir()) == before

    # The thumbnail cannot be kept: it is served all the same, made in memory.
    thumb = _get(srv, token, f"/library/scan/batch/{done}/items/0/photos/0?size=200")
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    kept = jobs / done / "thumbnails"
    assert not kept.exists() or list(kept.iterdir()) == []  # nothing half-written to serve later

    # The running job's results cannot be written: it fails saying which disk is full.
    failed = srv.wait_finished(running, token)
    assert failed["status"] == "failed"
    for item in failed["results"]:
        assert item["status"] == "failed"
        assert "is full" in item["errorMessage"] and str(jobs) in item["errorMessage"], item
    assert not (jobs / running / ".process_batch.ipynb.partial").exists()
    _gets_answer(srv, token, done)

    # Space is freed: the same requests succeed, on the same server.
    filler.unlink()
    again = _post_batch(srv, token, [{"artistName": "Can"}, {"artistName": "Neu!"}])
    assert again.status_code == 202, again.text
    assert srv.wait_finished(again.json()["jobId"], token)["status"] == "completed"
    assert _scan(srv, token).status_code == 200
    thumb = _get(srv, token, f"/library/scan/batch/{done}/items/0/photos/0?size=200")
    assert thumb.status_code == 200 and [p.suffix for p in kept.iterdir()] == [".jpg"]


@pytest.fixture
def store_on_small_disk(tmp_path):
    """A server whose store is on a small disk; its job folders on another one."""
    data = tmp_path / "data"
    with small_disk(data, "24m"), small_disk(data / "jobs", "16m"), _serving(data) as served:
        yield (*served, data)


def test_a_full_store_disk_refuses_reviews_and_uploads_whole_and_ingests_once_space_is_freed(
    store_on_small_disk,
):
    srv, tokens, data = store_on_small_disk
    token = tokens["director"]
    store = data / "scanbatch.duckdb"
    done = _post_batch(srv, token, [{"artistName": "Can"}]).json()["jobId"]
    assert srv.wait_finished(done, token)["status"] == "completed"
    assert _review(srv, token, done, "first  ").status_code == 200
    running = _post_batch(srv, token, [{"stickerText": "sleep:3"}, {"stickerText": "sleep:3"}])
    running = running.json()["jobId"]
    srv.poll(running, token, lambda b: b["status"] == "processing")

    filler = fill(data)
    _assert_full(_review(srv, token, done, "refused"), store)
    assert _revisions(srv, token, done) == [(1, "first  ")]  # nothing half-saved
    folders = sorted(p.name for p in (data / "jobs").iterdir())
    _assert_full(_post_batch(srv, token, LONG), store)
    assert sorted(p.name for p in (data / "jobs").iterdir()) == folders  # its folder went too
    assert _job_count(srv, token) == 2
    _gets_answer(srv, token, running)

    # The running job's results wait in its folder; the store cannot take them yet.
    results = data / "jobs" / running / "results.jsonl"
    deadline = time.monotonic() + 60
    while not (results.exists() and results.read_bytes().count(b"\n") == 2):
        assert time.monotonic() < deadline, "the kernel wrote no results"
        time.sleep(0.2)
    time.sleep(1)  # the runner has tried to read them in (it wakes at each line)
    assert _get(srv, token, f"/library/scan/batch/{running}").json()["status"] != "completed"
    _gets_answer(srv, token, running)

    filler.unlink()  # no restart: the same server goes on
    finished = srv.wait_finished(running, token, timeout=60)
    assert finished["status"] == "completed"
    assert [i["status"] for i in finished["results"]] == ["completed", "completed"]
    saved = _review(srv, token, done, "second ")
    assert saved.status_code == 200 and saved.json()["revision"] == 2
    assert _revisions(srv, token, done) == [(1, "first  "), (2, "second ")]
    again = _post_batch(srv, token, LONG)
    assert again.status_code == 202, again.text
    assert srv.wait_finished(again.json()["jobId"], token)["status"] == "completed"


def test_a_server_restarted_on_a_full_disk_answers_and_takes_work_once_space_is_freed(tmp_path):
    """A station's machine rebooted with its disk full: the server still starts (its
    server.json cannot be written: it says so), GETs answer, writes are 507."""
    data = tmp_path / "data"
    with small_disk(data, "24m"):
        with _serving(data) as (srv, tokens):
            token = tokens["director"]
            done = _post_batch(srv, token, [{"artistName": "Can"}]).json()["jobId"]
            assert srv.wait_finished(done, token)["status"] == "completed"
        filler = fill(data)
        srv = ServerProcess(data).start()
        try:
            _gets_answer(srv, token, done)
            # What a station's monitoring reads: the data folder's disk is full.
            assert _get(srv, token, "/healthz").json()["diskFreeBytes"] < 64 * 1024
            _assert_full(_post_batch(srv, token, LONG), data)
            assert [p.name for p in (data / "jobs").iterdir()] == [done]
            assert not (data / "server.tmp").exists()

            filler.unlink()
            assert _get(srv, token, "/healthz").json()["diskFreeBytes"] > 1024 * 1024
            again = _post_batch(srv, token, [{"artistName": "Neu!"}])
            assert again.status_code == 202, again.text
            assert srv.wait_finished(again.json()["jobId"], token)["status"] == "completed"
        finally:
            srv.stop()
        assert "server.json not written" in (tmp_path / "server.log").read_text()


def test_a_prune_frees_a_full_disk_the_store_shares_with_the_photos(tmp_path):
    """What the 507 recommends must work on a disk 100 % full: marking records as pruned needs
    a little of the store's disk, so the prune makes that room from the records' own files."""
    data = tmp_path / "data"
    with small_disk(data, "24m"):
        settings = Settings(data_dir=data, extractor="fake")
        store = JobStore.open(settings.store_path)
        try:
            old = [finished_job(store, settings, days_ago=40) for _ in range(3)]
            tokens = keys(store)
        finally:
            store.close()
        srv = ServerProcess(data).start()
        try:
            manager = tokens["manager"]
            filler = fill(data)
            _assert_full(_post_batch(srv, tokens["director"], LONG), data)

            done = _scanbatch(data, "prune", "--older-than", "30")
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("Removed the photos of 6 record(s) of 3 job(s)")
            assert "12 photo(s)" in done.stdout
            gone = _get(srv, manager, f"/library/scan/batch/{old[0]}/items/0/photos/0")
            assert gone.status_code == 410, gone.text  # marked: said when and why
            assert [list((data / "jobs" / job / "images").iterdir()) for job in old] == [[]] * 3
            assert filler.exists()  # the prune made the room, nothing else did
        finally:
            srv.stop()
        assert "making room from the photos first" in (tmp_path / "server.log").read_text()


# -- backups ------------------------------------------------------------------------------


def _scanbatch(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scanbatch.cli", *args],
        env=launcher_env(SCANBATCH_DATA_DIR=str(data)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_backup_whose_target_disk_fills_leaves_no_file_and_the_server_unaffected(tmp_path):
    data = tmp_path / "data"
    with _serving(data) as (srv, tokens), small_disk(tmp_path / "usb", "2m") as usb:
        token = tokens["director"]
        done = _post_batch(srv, token, [{"artistName": "Can"}, {"artistName": "Neu!"}])
        done = done.json()["jobId"]
        assert srv.wait_finished(done, token)["status"] == "completed"
        whole = _scanbatch(data, "backup", str(tmp_path / "whole.tar"), "--photos")
        assert whole.returncode == 0, whole.stderr
        size = (tmp_path / "whole.tar").stat().st_size

        filler = fill(usb, leave=size // 2)  # it fills half-way through the archive
        cut = _scanbatch(data, "backup", str(usb / "nightly.tar"), "--photos")
        assert cut.returncode == 1, cut.stderr
        assert f"The disk holding {usb} is full" in cut.stderr, cut.stderr
        assert "Traceback" not in cut.stderr
        assert sorted(p.name for p in usb.iterdir()) == ["filler"]  # no FILE, no FILE.tmp
        _gets_answer(srv, token, done)
        assert not list(data.glob(".backup-*"))  # the server's copy went with the download
        again = _scanbatch(data, "backup", str(tmp_path / "again.tar"))
        assert again.returncode == 0, again.stderr  # the one-backup slot is free

        filler.unlink()
        nightly = _scanbatch(data, "backup", str(usb / "nightly.tar"), "--photos")
        assert nightly.returncode == 0, nightly.stderr
        assert read_manifest(usb / "nightly.tar")["tables"]["scan_results"] == 2


def test_a_backup_on_a_full_data_disk_is_507_and_leaves_no_copy_of_the_store(tmp_path):
    data = tmp_path / "data"
    with small_disk(data, "24m"), _serving(data) as (srv, tokens):
        token = tokens["director"]
        done = _post_batch(srv, token, [{"artistName": "Can"}]).json()["jobId"]
        assert srv.wait_finished(done, token)["status"] == "completed"
        filler = fill(data)
        refused = requests.get(
            f"{srv.url}/admin/backup", headers=bearer(tokens["manager"]), timeout=60
        )
        _assert_full(refused, data)
        cli = _scanbatch(data, "backup", str(tmp_path / "nightly.tar"))
        assert cli.returncode == 1 and f"The disk holding {data} is full" in cli.stderr
        assert not (tmp_path / "nightly.tar").exists()
        assert not list(data.glob(".backup-*"))
        _gets_answer(srv, token, done)

        filler.unlink()
        cli = _scanbatch(data, "backup", str(tmp_path / "nightly.tar"))
        assert cli.returncode == 0, cli.stderr
        assert read_manifest(tmp_path / "nightly.tar")["tables"]["scan_jobs"] == 1
