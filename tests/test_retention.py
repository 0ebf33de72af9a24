"""Photo retention on a real store with reviewed and unreviewed records of several ages: what a
prune removes (exactly the photos and thumbnails of finished, unreviewed records of jobs that
ended long enough ago), what stays (readings, results.jsonl, notebooks, reviewed and young
records' photos), a prune stopped halfway, the server's periodic prune, the 410 and the queue
through a real server, bad input, and `scanbatch prune` through the running server."""

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from scanbatch.audit import ReviewInput, ReviewState
from scanbatch.cli import cli
from scanbatch.jobfolder import JobFolder
from scanbatch.models import ItemOutcome, Manifest, Status
from scanbatch.names import FIELDS
from scanbatch.retention import PhotoPruner, prune, reason
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess, bearer, copy_work_tree, keys, launcher_env
from scanbatch.thumbnails import cached_thumbnail

PHOTO_TYPES = ["front_cover", "back_cover", "center_label"]
DAYS = 30


def finished_job(store, settings, *, days_ago, statuses=("completed", "completed"), photos=2):
    """A job whose records were read (`statuses`; "processing" leaves one unfinished), with
    its photos, results.jsonl and notebook in its folder, ended `days_ago` days ago."""
    manifest = Manifest.model_validate(
        {"items": [{"imageCount": photos, "photoTypes": PHOTO_TYPES[:photos]}] * len(statuses)}
    )
    job = store.create_job("alice", manifest, extractor="fake")
    folder = JobFolder.for_job(settings.jobs_dir, job)
    folder.create(manifest)
    for i in range(len(statuses)):
        for n in range(photos):
            folder.write_image(i, n, image_bytes(size=(200 + 10 * n, 150 + i)), "image/jpeg")
    store.mark_processing(job)
    now = datetime.now(UTC)
    outcomes = [
        ItemOutcome(
            item_index=i,
            status=Status(status),
            extraction={"artistName": {"value": f"Artist {i}", "confidence": 0.5}}
            if status == "completed"
            else None,
            error_message=None if status == "completed" else "unreadable",
            finished_at=now,
        )
        for i, status in enumerate(statuses)
        if status != "processing"
    ]
    writer = folder.results_writer()
    for outcome in outcomes:
        writer.append(outcome)
    folder.notebook_path.write_text('{"cells": []}')
    store.record_outcomes(job, outcomes)
    if all(s != "processing" for s in statuses):
        # As if it had ended that long ago (created_at is indexed: DuckDB cannot update it).
        with store.db.write() as cur:
            cur.execute(
                "UPDATE scan_jobs SET completed_at = ? WHERE id = ?",
                [now - timedelta(days=days_ago), job],
            )
    return job


def review(store, job, item, reviewer="alice"):
    truth = ReviewInput.model_validate(
        {"fields": {**dict.fromkeys(FIELDS), "artistName": "Can"}, "matchedAlbumId": None}
    )
    return store.reviews.save(job, item, reviewer, truth)


def library(store, settings):
    """Jobs of several ages: `old` (45 days) with an unreviewed, a reviewed and a failed record;
    `young` (10 days); `running` (60 days old, one record still being read: its job has not
    ended); `ancient` (100 days) with thumbnails made. What a 30-day prune takes: old 0 and 2,
    ancient 0."""
    jobs = {
        "old": finished_job(
            store, settings, days_ago=45, statuses=("completed",) * 2 + ("failed",)
        ),
        "young": finished_job(store, settings, days_ago=10),
        "running": finished_job(store, settings, days_ago=60, statuses=("completed", "processing")),
        "ancient": finished_job(store, settings, days_ago=100, statuses=("completed",), photos=3),
    }
    review(store, jobs["old"], 1)
    for job in (jobs["ancient"], jobs["old"]):
        folder = JobFolder.for_job(settings.jobs_dir, job)
        for i in range(2 if job == jobs["old"] else 1):
            for photo in folder.image_paths(i):
                cached_thumbnail(photo, 160, folder)
    return jobs


def expected_pruned(jobs):
    return {(jobs["old"], 0), (jobs["old"], 2), (jobs["ancient"], 0)}


def all_records(jobs):
    return {
        (jobs["old"], 0),
        (jobs["old"], 1),
        (jobs["old"], 2),
        (jobs["young"], 0),
        (jobs["young"], 1),
        (jobs["running"], 0),
        (jobs["running"], 1),
        (jobs["ancient"], 0),
    }


def files_of(settings, key):
    files = JobFolder.for_job(settings.jobs_dir, key[0]).item_files([key[1]])[key[1]]
    return files.photos, files.thumbnails


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def photo_lister(settings):
    def photos(job_id, item_index, types):
        folder = JobFolder.for_job(settings.jobs_dir, job_id)
        return [
            (t, f.mime_type) for t, f in zip(types, folder.photo_files(item_index), strict=False)
        ]

    return photos


def queue(store, settings):
    page = store.reviews.items(
        state=ReviewState.ALL,
        limit=100,
        photos=photo_lister(settings),
        photo_url=lambda j, i, n: f"/{j}/{i}/{n}",
    )
    return {(it.job_id, it.item_index): it for it in page.items}


def test_a_dry_run_removes_nothing_and_gives_the_summary_the_prune_then_gives(store, settings):
    jobs = library(store, settings)
    gone = expected_pruned(jobs)
    sizes = {k: files_of(settings, k) for k in gone}
    photos = sum(len(p) for p, _ in sizes.values())
    thumbnails = sum(len(t) for _, t in sizes.values())
    freed = sum(size for p, t in sizes.values() for _, size in p + t)
    assert (photos, thumbnails) == (2 + 2 + 3, 2 + 3)  # the failed record had no thumbnail made
    before = snapshot(settings.jobs_dir)
    rows_before = {job: store.result_rows(job) for job in jobs.values()}

    dry = prune(store, settings, DAYS, dry_run=True)
    assert snapshot(settings.jobs_dir) == before
    assert store.retention.unremoved() == [] and not any(
        store.retention.pruned(*k) for k in all_records(jobs)
    )
    assert (dry.records, dry.photos, dry.thumbnails, dry.bytes, dry.jobs) == (
        3,
        photos,
        thumbnails,
        freed,
        2,
    )
    assert dry.dry_run and dry.older_than_days == DAYS

    done = prune(store, settings, DAYS)
    assert done.model_dump(exclude={"dry_run", "cutoff"}) == dry.model_dump(
        exclude={"dry_run", "cutoff"}
    )
    assert not done.dry_run
    after = snapshot(settings.jobs_dir)
    for key in all_records(jobs):
        photos_now, thumbs_now = files_of(settings, key)
        if key in gone:
            assert (photos_now, thumbs_now) == ([], []), key
            pruned = store.retention.pruned(*key)
            assert pruned.why == reason(DAYS) == "older than 30 days, never reviewed"
            assert abs((pruned.at - datetime.now(UTC)).total_seconds()) < 60
        else:
            assert store.retention.pruned(*key) is None
            assert photos_now, key
    # Only the pruned records' photos and thumbnails went: everything else is byte for byte.
    removed = set(before) - set(after)
    assert all("/images/" in name or "/thumbnails/" in name for name in removed)
    assert {name: before[name] for name in after} == after
    for job in jobs.values():
        folder = JobFolder.for_job(settings.jobs_dir, job)
        assert folder.results_path.exists() and folder.notebook_path.exists()
        assert store.result_rows(job) == rows_before[job]  # the readings stay
    # Nothing is left to take, and the store says what went.
    again = prune(store, settings, DAYS)
    assert (again.records, again.photos, again.bytes) == (0, 0, 0)
    assert store.retention.counts()["pruned_records"] == 3


def test_the_queue_says_photos_were_pruned_and_a_pruned_record_can_still_be_reviewed(
    store, settings
):
    jobs = library(store, settings)
    prune(store, settings, DAYS)
    items = queue(store, settings)
    for key, item in items.items():
        if key in expected_pruned(jobs):
            assert item.photos == [] and item.photos_pruned.why == reason(DAYS), key
            assert item.extraction == (
                {"artistName": {"value": f"Artist {key[1]}", "confidence": 0.5}}
                if item.status is Status.COMPLETED
                else None
            )
        else:
            assert item.photos_pruned is None and len(item.photos) >= 2, key
    saved = review(store, jobs["old"], 0, reviewer="bob")
    assert saved.revision == 1
    item = queue(store, settings)[(jobs["old"], 0)]
    assert item.review is not None and item.photos_pruned is not None and item.photos == []
    assert prune(store, settings, DAYS).records == 0


def test_a_prune_stopped_halfway_is_finished_by_the_next_and_reviews_win(store, settings):
    jobs = library(store, settings)
    old0, old1, old2 = ((jobs["old"], i) for i in range(3))
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=DAYS)
    # Marked in the store, then the process died before removing anything.
    assert store.retention.mark({old0: (2, 1)}, cutoff, reason(DAYS), now) == [old0]
    assert store.retention.unremoved() == [old0]
    photos, _ = files_of(settings, old0)
    Path(photos[0][0]).unlink()  # and one photo already gone: fine
    # A record reviewed after the prune picked it keeps its photos: the mark checks again.
    assert store.retention.mark({old1: (2, 1)}, cutoff, reason(DAYS), now) == []
    # A record someone is reviewing right now is left for the next prune.
    store.reviews.leases.grant(old2, "bob", 600)
    summary = prune(store, settings, DAYS)
    assert store.retention.unremoved() == []
    assert files_of(settings, old0) == ([], [])
    assert files_of(settings, old2)[0] and store.retention.pruned(*old2) is None
    assert summary.records == 1  # ancient 0; old 0 was finished, not counted again
    store.reviews.leases.release(old2, "bob")
    assert prune(store, settings, DAYS).records == 1
    assert files_of(settings, old2) == ([], [])
    assert files_of(settings, old1)[0]  # reviewed: kept


def test_deleting_a_job_forgets_its_pruned_records(store, settings):
    jobs = library(store, settings)
    prune(store, settings, DAYS)
    store.delete_job(jobs["ancient"])
    assert store.retention.counts()["pruned_records"] == 2


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("not in time")


def test_the_periodic_prune_runs_at_start_and_again_while_the_setting_is_set(store, settings):
    jobs = library(store, settings)
    off = PhotoPruner(store, settings, every=0.2)
    off.start()  # SCANBATCH_KEEP_PHOTOS_DAYS unset: photos are kept forever
    time.sleep(0.5)
    off.stop()
    assert store.retention.counts()["pruned_records"] == 0
    kept = settings.model_copy(update={"keep_photos_days": DAYS})
    pruner = PhotoPruner(store, kept, every=0.2)
    pruner.start()
    try:
        wait_for(lambda: all(store.retention.pruned(*k) for k in expected_pruned(jobs)))
        later = finished_job(store, settings, days_ago=31)
        wait_for(lambda: store.retention.pruned(later, 1) is not None)
        # Marked first, then removed: the files go right after.
        wait_for(lambda: files_of(settings, (later, 1)) == ([], []))
        assert store.retention.unremoved() == [] or wait_for(
            lambda: store.retention.unremoved() == []
        )
    finally:
        pruner.stop()
    assert files_of(settings, (jobs["young"], 0))[0]


def test_keep_photos_days_is_a_setting_with_bounds(monkeypatch):
    from scanbatch.errors import ConfigError
    from scanbatch.settings import load_settings

    for raw, expected in (("", None), ("30", 30)):
        monkeypatch.setenv("SCANBATCH_KEEP_PHOTOS_DAYS", raw)
        assert load_settings().keep_photos_days == expected
    for raw in ("0", "-3", "100000", "1.5", "a month"):
        monkeypatch.setenv("SCANBATCH_KEEP_PHOTOS_DAYS", raw)
        with pytest.raises(ConfigError, match="SCANBATCH_KEEP_PHOTOS_DAYS"):
            load_settings()
    assert Settings.model_fields["keep_photos_days"].description


# -- through a real server --------------------------------------------------------------------


def built(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The library in a data folder, with the usual keys, before a server opens it."""
    settings = Settings(data_dir=data_dir, extractor="fake")
    store = JobStore.open(settings.store_path)
    try:
        return library(store, settings), keys(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("retention") / "data"
    jobs, tokens = built(data)
    server = ServerProcess(data).start()
    yield server, jobs, tokens
    server.stop()


def photo_url(server, key, n=0, size=None):
    job, item = key
    url = f"{server.url}/library/scan/batch/{job}/items/{item}/photos/{n}"
    return url + (f"?size={size}" if size else "")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"olderThanDays": -1}, "olderThanDays must be at least 1"),
        ({"olderThanDays": 0}, "olderThanDays must be at least 1"),
        ({"olderThanDays": 10**6}, "olderThanDays must be at most 36500"),
        ({"olderThanDays": 1.5}, "olderThanDays"),
        ({"olderThanDays": "30"}, "olderThanDays"),
        ({"olderThanDays": True}, "olderThanDays"),
        ({}, "olderThanDays is required"),
        ({"olderThanDays": 30, "dryRun": "yes"}, "dryRun"),
        ({"olderThanDays": 30, "olderThan": 30}, "unknown key 'olderThan'"),
        ([30], "must be an object"),
    ],
)
def test_bad_prune_bodies_are_400_naming_the_field(served, body, words):
    server, _jobs, tokens = served
    r = requests.post(
        f"{server.url}/admin/prune", json=body, headers=bearer(tokens["manager"]), timeout=30
    )
    assert r.status_code == 400, r.text
    assert words in r.json()["message"] and r.json()["status"] == 400


def test_only_a_station_manager_prunes_or_sees_the_usage(served):
    server, _jobs, tokens = served
    for who in ("dj", "director"):
        for method, path, body in (
            ("POST", "/admin/prune", {"olderThanDays": 30, "dryRun": True}),
            ("GET", "/admin/usage", None),
        ):
            r = requests.request(
                method, server.url + path, json=body, headers=bearer(tokens[who]), timeout=30
            )
            assert r.status_code == 403 and "stationManager" in r.json()["message"], r.text
    assert requests.post(f"{server.url}/admin/prune", json={}, timeout=30).status_code == 401


def test_a_prune_through_the_server_answers_410_saying_when_and_why(served):
    server, jobs, tokens = served
    manager, director = bearer(tokens["manager"]), bearer(tokens["director"])
    old0, reviewed, young = (jobs["old"], 0), (jobs["old"], 1), (jobs["young"], 0)
    assert requests.get(photo_url(server, old0), headers=director, timeout=30).status_code == 200
    prune_url = f"{server.url}/admin/prune"
    dry = requests.post(
        prune_url, json={"olderThanDays": 30, "dryRun": True}, headers=manager, timeout=60
    )
    assert dry.status_code == 200, dry.text
    assert requests.get(photo_url(server, old0), headers=director, timeout=30).status_code == 200
    done = requests.post(prune_url, json={"olderThanDays": 30}, headers=manager, timeout=60)
    assert done.status_code == 200, done.text
    ignore = ("dryRun", "cutoff")
    assert {k: v for k, v in done.json().items() if k not in ignore} == {
        k: v for k, v in dry.json().items() if k not in ignore
    }
    assert (done.json()["records"], done.json()["jobs"], dry.json()["dryRun"]) == (3, 2, True)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for url in (photo_url(server, old0), photo_url(server, old0, 1, size=160)):
        gone = requests.get(url, headers=director, timeout=30)
        assert gone.status_code == 410, gone.text
        body = gone.json()
        assert body["status"] == 410
        assert f"removed on {today} (older than 30 days, never reviewed)" in body["message"]
        assert "reading stays" in body["message"]
    for key in (reviewed, young):
        kept = requests.get(photo_url(server, key, size=160), headers=director, timeout=30)
        assert kept.status_code == 200 and kept.headers["Content-Type"] == "image/jpeg"
    page = requests.get(
        f"{server.url}/library/scan/review/items",
        params={"state": "all", "jobId": jobs["old"]},
        headers=director,
        timeout=30,
    ).json()
    by_index = {it["itemIndex"]: it for it in page["items"]}
    assert by_index[0]["photosPruned"]["why"] == "older than 30 days, never reviewed"
    assert by_index[0]["photosPruned"]["at"].startswith(today) and by_index[0]["photos"] == []
    assert by_index[1]["photosPruned"] is None and len(by_index[1]["photos"]) == 2
    # The job's results stay as they were.
    job = requests.get(
        f"{server.url}/library/scan/batch/{jobs['old']}", headers=director, timeout=30
    ).json()
    assert job["results"][0]["extraction"]["artistName"]["value"] == "Artist 0"
    # A pruned record is still reviewed (through the queue), with no photos to show.
    lease = requests.post(
        f"{server.url}/library/scan/batch/{jobs['old']}/items/0/lease", headers=director, timeout=30
    )
    assert lease.status_code == 200 and lease.json()["photosPruned"] is not None


def test_the_golden_set_export_leaves_out_a_record_reviewed_without_its_photos(served):
    import io
    import json
    import zipfile

    server, jobs, tokens = served
    director = bearer(tokens["director"])
    requests.post(
        f"{server.url}/admin/prune",
        json={"olderThanDays": 30},
        headers=bearer(tokens["manager"]),
        timeout=60,
    )
    body = {"fields": {**dict.fromkeys(FIELDS), "artistName": "Can"}, "matchedAlbumId": None}
    saved = requests.put(
        f"{server.url}/library/scan/batch/{jobs['old']}/items/2/review",
        json=body,
        headers=director,
        timeout=30,
    )
    assert saved.status_code == 200, saved.text
    export = requests.get(f"{server.url}/library/scan/review/dataset", headers=director, timeout=60)
    assert export.status_code == 200, export.text
    with zipfile.ZipFile(io.BytesIO(export.content)) as z:
        truth = json.loads(z.read("truth.json"))
        names = set(z.namelist())
    sources = [(t["source"]["jobId"], t["source"]["itemIndex"]) for t in truth["items"]]
    assert (jobs["old"], 1) in sources and (jobs["old"], 2) not in sources
    assert all(set(t["photos"]) <= names and t["photos"] for t in truth["items"])
    assert export.headers["X-Reviewed-Items"] == str(len(sources))


def test_the_server_prunes_by_itself_with_keep_photos_days(tmp_path):
    data = tmp_path / "data"
    jobs, tokens = built(data)
    server = ServerProcess(data, SCANBATCH_KEEP_PHOTOS_DAYS="30").start()
    try:
        director = bearer(tokens["director"])

        def status(key):
            return requests.get(photo_url(server, key), headers=director, timeout=30).status_code

        wait_for(lambda: all(status(k) == 410 for k in expected_pruned(jobs)))
        assert status((jobs["old"], 1)) == status((jobs["young"], 0)) == 200
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_scanbatch_prune_goes_through_the_running_server_on_the_relative_data_folder(
    tmp_path,
):
    """As the README says it, from a checkout whose data folder is the relative `data`."""
    root = copy_work_tree(tmp_path / "checkout")
    data = root / "data"
    jobs, _tokens = built(data)
    server = ServerProcess(data).start()
    env = launcher_env(root)

    def scanbatch(*args):
        return subprocess.run(
            [sys.executable, "-m", "scanbatch.cli", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        dry = scanbatch("prune", "--older-than", "30", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("Would remove the photos of 3 record(s) of 2 job(s)")
        assert "7 photo(s) and 5 thumbnail(s)" in dry.stdout
        assert files_of(Settings(data_dir=data), (jobs["old"], 0))[0]
        done = scanbatch("prune", "--older-than", "30")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Removed the photos of 3 record(s) of 2 job(s)")
        assert files_of(Settings(data_dir=data), (jobs["old"], 0)) == ([], [])
        bad = scanbatch("prune", "--older-than", "-2")
        assert bad.returncode == 2 and "--older-than" in bad.stderr
    finally:
        server.stop()


def test_scanbatch_prune_on_the_store_when_no_server_runs(tmp_path, monkeypatch):
    data = tmp_path / "data"
    jobs, _tokens = built(data)
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(data))
    runner = CliRunner()
    result = runner.invoke(cli, ["prune", "--older-than", "50"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Removed the photos of 1 record(s) of 1 job(s)")
    assert files_of(Settings(data_dir=data), (jobs["ancient"], 0)) == ([], [])
    assert files_of(Settings(data_dir=data), (jobs["old"], 0))[0]


def test_the_review_tab_shows_a_pruned_record_with_a_sentence_instead_of_photos(served):
    from scanbatch.workbench import Workbench

    server, jobs, tokens = served
    r = requests.post(
        f"{server.url}/admin/prune",
        json={"olderThanDays": 30},
        headers=bearer(tokens["manager"]),
        timeout=60,
    )
    assert r.status_code == 200  # taken already by an earlier test, or now
    wb = Workbench(server.url, tokens["other"], sign_in=True)
    assert wb.client is not None, wb.signin.message.value
    wb.tabs.selected_index = 1
    review = wb.review
    review.job.value = jobs["ancient"]
    assert review.shown is not None, review.message.value
    assert review.shown.photos_pruned is not None
    assert wb.join()
    note = review.photo_note.value
    assert "No photos" in note and "older than 30 days, never reviewed" in note
    assert review.thumbs.children == () and review.large.layout.display == "none"
    assert "no photos" in review.queue.options[0][0]
    assert review.fields["artistName"].value == "Artist 0"  # the reading stays
    review.save_button.click()
    assert "Saved job" in review.message.value, review.message.value
    assert "error" not in review.message.value.lower()
