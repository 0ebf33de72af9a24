"""Backups taken while a real server works (20 reviewers saving, jobs ingesting), restored into
a new folder and served again; and every way a restore must refuse."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from scanbatch.backup import BackupError, restore, schema_version
from scanbatch.cli.through_server import ServerClient
from scanbatch.client import Client
from scanbatch.errors import Conflict, Unprocessable
from scanbatch.names import FIELDS, Role
from scanbatch.settings import Settings
from scanbatch.store import Database, JobStore
from scanbatch.store.check import check_store
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess, bearer, keys
from tests.test_retention import finished_job
from tests.webutil import post_batch

REVIEWERS = 20
SEEDED_JOBS = 4  # of 10 records: two records per reviewer
SCANBATCH = str(Path(sys.executable).parent / "scanbatch")


def _batch(url: str, token: str, items: int) -> str:
    manifest = [{"imageCount": 1, "photoTypes": ["front"]} for _ in range(items)]
    files = [(f"p{i}.jpg", image_bytes(), "image/jpeg") for i in range(items)]
    return post_batch(url, token, manifest, files)


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, extractor="fake")


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    """A server whose store has the usual keys, 20 reviewers' and a revoked one, and
    SEEDED_JOBS finished jobs; and a job of 45 days ago whose photos were pruned."""
    data = tmp_path_factory.mktemp("station") / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    tokens = keys(store)
    reviewers = [
        store.keys.create(f"reviewer{n:02d}", Role.MUSIC_DIRECTOR)[1] for n in range(REVIEWERS)
    ]
    gone, revoked = store.keys.create("gone", Role.MUSIC_DIRECTOR)
    store.keys.revoke(gone.id)
    pruned = finished_job(store, _settings(data), days_ago=45)
    store.close()
    srv = ServerProcess(data).start()
    prune = ServerClient(srv.url, tokens["manager"]).call(
        "POST", "/admin/prune", json={"olderThanDays": 30, "dryRun": False}
    )
    assert prune["records"] == 2
    jobs = [_batch(srv.url, tokens["director"], 10) for _ in range(SEEDED_JOBS)]
    for job_id in jobs:
        assert srv.wait_finished(job_id, tokens["director"])["status"] == "completed"
    station = SimpleNamespace(srv=srv, data=data, tokens=tokens, reviewers=reviewers)
    station.revoked, station.jobs, station.pruned = revoked, jobs, pruned
    yield station
    srv.stop()


@dataclass(frozen=True)
class Ack:
    job_id: str
    item_index: int
    revision: int
    reviewer: str
    fields: dict
    at: float  # time.monotonic() when the 200 arrived


def _download(url: str, token: str, target: Path) -> None:
    """GET /admin/backup?photos=true into `target`, with the CLI's own client."""
    with ServerClient(url, token).stream("GET", "/admin/backup?photos=true") as r:
        assert r.headers["Content-Type"] == "application/x-tar"
        target.write_bytes(b"".join(r.iter_content(65536)))


def _cli(*args: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SCANBATCH_TOKEN"}
    return subprocess.run(
        [SCANBATCH, *args],
        cwd=cwd,
        env={**env, "SCANBATCH_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def backup_under_load(station, tmp_path_factory):
    """The backup of the issue: taken while 20 reviewers save and jobs ingest. Which saves and
    batches were acknowledged before the backup's request began."""
    url = station.srv.url
    records = [(j, i) for j in station.jobs for i in range(10)]
    acks: list[Ack] = []
    posted: list[tuple[str, float]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def review(n: int) -> None:
        client = Client(url, station.reviewers[n])
        mine = records[2 * n : 2 * n + 2]
        round_ = 0
        try:
            while not stop.is_set():
                job_id, index = mine[round_ % 2]
                fields = {name: f"r{n} round {round_} {name}" for name in FIELDS}
                saved = client.save_review(job_id, index, fields, None)
                acks.append(
                    Ack(job_id, index, saved.revision, saved.reviewer, fields, time.monotonic())
                )
                round_ += 1
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    def ingest() -> None:
        try:
            while not stop.is_set():
                job_id = _batch(url, station.tokens["other"], 3)
                posted.append((job_id, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=review, args=(n,)) for n in range(REVIEWERS)]
    threads.append(threading.Thread(target=ingest))
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while (len(acks) < 3 * REVIEWERS or len(posted) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        archive = tmp_path_factory.mktemp("backups") / "during-load.tar"
        began = time.monotonic()
        _download(url, station.tokens["manager"], archive)
        acks_during = sum(1 for a in acks if a.at > began)
        time.sleep(0.5)  # the writers go on after it too
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    return SimpleNamespace(
        archive=archive,
        acked=[a for a in acks if a.at < began],
        posted=[j for j, at in posted if at < began],
        acks_during=acks_during,
        all_acks=acks,
    )


@pytest.fixture(scope="module")
def restored(backup_under_load, station, tmp_path_factory):
    """The archive restored into a new folder (checked), and a server started on it."""
    data = tmp_path_factory.mktemp("restored") / "data"
    done = restore(backup_under_load.archive, _settings(data))
    db = Database(data / "scanbatch.duckdb")
    try:
        problems = check_store(db.cursor())
    finally:
        db.close()
    srv = ServerProcess(data).start()
    yield SimpleNamespace(srv=srv, data=data, done=done, problems=problems)
    srv.stop()


def test_reviews_saved_before_the_backup_began_are_all_restored_with_their_history(
    backup_under_load, restored, station
):
    acked = backup_under_load.acked
    assert len(acked) >= 3 * REVIEWERS
    assert backup_under_load.acks_during > 0, "no save went on while the backup was taken"
    assert restored.problems == []
    by_item: dict[tuple[str, int], list[Ack]] = {}
    for ack in acked:
        by_item.setdefault((ack.job_id, ack.item_index), []).append(ack)
    manager = Client(restored.srv.url, station.tokens["manager"])
    for (job_id, index), saves in by_item.items():
        history = {r.revision: r for r in manager.review_history(job_id, index)}
        for ack in saves:
            got = history.get(ack.revision)
            assert got is not None, f"{job_id}/{index} revision {ack.revision} lost"
            assert got.fields == ack.fields
            assert got.reviewer == ack.reviewer
        # The history has no gap: every revision from 1 up to the newest restored one.
        assert sorted(history) == list(range(1, max(history) + 1))


def test_jobs_and_results_are_the_same_on_the_restored_server(backup_under_load, restored, station):
    director, other = station.tokens["director"], station.tokens["other"]
    for job_id in station.jobs:  # finished before the backup: the same, field for field
        before = requests.get(
            f"{station.srv.url}/library/scan/batch/{job_id}", headers=bearer(director)
        ).json()
        after = requests.get(
            f"{restored.srv.url}/library/scan/batch/{job_id}", headers=bearer(director)
        ).json()
        assert after == before
    for job_id in backup_under_load.posted:  # accepted before the backup began: there
        r = requests.get(f"{restored.srv.url}/library/scan/batch/{job_id}", headers=bearer(other))
        assert r.status_code == 200, r.text
    assert restored.done.jobs >= SEEDED_JOBS + len(backup_under_load.posted)


def test_keys_work_on_the_restored_server_and_a_revoked_one_stays_revoked(restored, station):
    url = restored.srv.url
    for name in ("director", "dj", "manager"):
        r = requests.get(f"{url}/library/scan/batch", headers=bearer(station.tokens[name]))
        assert r.status_code == 200, (name, r.text)
    r = requests.get(f"{url}/library/scan/batch", headers=bearer(station.revoked))
    assert r.status_code == 401
    assert set(r.json()) == {"status", "message"}


def test_photos_are_restored_private(restored, station):
    job_id = station.jobs[0]
    photo = requests.get(
        f"{restored.srv.url}/library/scan/batch/{job_id}/items/0/photos/0",
        headers=bearer(station.tokens["director"]),
    )
    assert photo.status_code == 200
    (original,) = (station.data / "jobs" / job_id / "images").glob("item00_*")
    assert photo.content == original.read_bytes()
    assert (restored.data / "scanbatch.duckdb").stat().st_mode & 0o777 == 0o600
    for path in (restored.data / "jobs").rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert not [p for p in restored.data.iterdir() if p.name.startswith(".restore-")]
    # A pruned photo is still gone, saying when and why.
    gone = requests.get(
        f"{restored.srv.url}/library/scan/batch/{station.pruned}/items/0/photos/0",
        headers=bearer(station.tokens["director"]),
    )
    assert gone.status_code == 410
    assert "older than 30 days" in gone.json()["message"]


def test_a_dj_or_no_token_may_not_take_a_backup(station):
    url = f"{station.srv.url}/admin/backup"
    r = requests.get(url, headers=bearer(station.tokens["dj"]))
    assert r.status_code == 403
    assert r.json()["status"] == 403 and "stationManager" in r.json()["message"]
    r = requests.get(url)
    assert r.status_code == 401
    assert set(r.json()) == {"status", "message"}
    r = requests.get(url + "?photos=maybe", headers=bearer(station.tokens["manager"]))
    assert r.status_code == 400
    assert "photos" in r.json()["message"]
    assert not [p for p in station.data.iterdir() if p.name.startswith(".backup-")]


def test_restore_refuses_a_folder_that_is_not_empty_and_leaves_it_untouched(
    backup_under_load, station, tmp_path
):
    data = tmp_path / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    store.keys.create("someone", Role.DJ)
    store.close()
    before = _listing(data)
    with pytest.raises(Conflict) as err:
        restore(backup_under_load.archive, _settings(data))
    assert str(data) in err.value.message and "empty folder" in err.value.message
    assert _listing(data) == before
    # A running server's folder: said so.
    with pytest.raises(Conflict) as err:
        restore(backup_under_load.archive, _settings(station.data))
    assert "running" in err.value.message and "Stop it" in err.value.message


def test_a_truncated_or_damaged_archive_restores_nothing(backup_under_load, tmp_path):
    whole = backup_under_load.archive.read_bytes()
    cases = {
        "truncated.tar": whole[: len(whole) // 2],
        "no-manifest.tar": whole[: whole.rfind(b"manifest.json") - 512 + 1],
        "not-a-tar.tar": b"hello" * 1000,
    }
    # A parquet file's bytes damaged inside an otherwise whole archive.
    at = whole.index(b"PAR1", whole.index(b"store/scan_results.parquet")) + 600
    cases["damaged.tar"] = (
        whole[:at] + bytes(b ^ 0xFF for b in whole[at : at + 64]) + whole[at + 64 :]
    )
    for name, data in cases.items():
        archive = tmp_path / name
        archive.write_bytes(data)
        target = tmp_path / f"into-{name}"
        with pytest.raises(BackupError) as err:
            restore(archive, _settings(target))
        assert str(archive) in err.value.message, name
        assert "damaged" in err.value.message or "cut short" in err.value.message, name
        assert not target.exists(), f"{name}: {list(target.rglob('*'))}"


def _repacked(archive: Path, out: Path, change=lambda manifest: None, drop=()) -> Path:
    """`archive` with its manifest changed by `change(manifest)`, without the members named
    in `drop`."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if member.name in drop:
                continue
            if member.isdir():
                dst.addfile(member)
                continue
            data = src.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def test_an_archive_of_a_newer_schema_is_refused(backup_under_load, tmp_path):
    newer = _repacked(
        backup_under_load.archive,
        tmp_path / "newer.tar",
        lambda m: m.update(schemaVersion=schema_version() + 1),
    )
    target = tmp_path / "data"
    with pytest.raises(Unprocessable) as err:
        restore(newer, _settings(target))
    assert "newer scanbatch" in err.value.message
    assert not target.exists()


# 4: the oldest schema whose scan_jobs is today's (no manifest); 7: before photo_prunes.
@pytest.mark.parametrize("version", sorted({4, 7, schema_version() - 1}))
def test_an_archive_of_an_older_schema_is_migrated_after_loading(tmp_path, version):
    from scanbatch.backup import Backup

    old = _settings(tmp_path / "old")
    db = Database(old.store_path, target=version)
    store = JobStore(db)
    with db.write() as cur:  # a job as that schema holds it (only the columns of schema 1)
        cur.execute(
            "INSERT INTO scan_jobs (id, user_id, status, total_items, created_at, updated_at) "
            "VALUES ('6f1a2b3c-0000-4000-8000-000000000001', 'alice', 'pending', 1, now(), now())"
        )
        cur.execute(
            "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
            "created_at, updated_at) VALUES ('6f1a2b3c-0000-4000-8000-000000000001', 0, "
            "'pending', 1, '[\"front\"]', now(), now())"
        )
    archive = tmp_path / "old.tar"
    Backup.take(store, old, photos=False).write(archive)
    store.close()
    done = restore(archive, _settings(tmp_path / "new"))
    assert (done.schema_from, done.schema_to) == (version, schema_version())
    restored = JobStore.open(tmp_path / "new" / "scanbatch.duckdb")
    try:
        versions = [
            r[0]
            for r in restored.db.cursor()
            .execute("SELECT version FROM schema_migrations ORDER BY version")
            .fetchall()
        ]
        assert versions == list(range(1, schema_version() + 1))
        assert restored.get_job("6f1a2b3c-0000-4000-8000-000000000001", None).total_items == 1
    finally:
        restored.close()


def test_the_cli_backs_up_through_the_running_server_as_the_readme_says(station, tmp_path):
    """`scanbatch backup FILE` with a relative FILE, the server running; then restored with
    `scanbatch restore FILE` into an empty folder."""
    (tmp_path / "backups").mkdir()
    out = _cli("backup", "backups/nightly.tar", "--photos", cwd=tmp_path, data_dir=station.data)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("wrote backups/nightly.tar: ")
    assert " records, " in out.stdout and " reviews" in out.stdout
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == ["nightly.tar"]
    restored = tmp_path / "restored"
    out = _cli("restore", "backups/nightly.tar", cwd=tmp_path, data_dir=restored)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("restored backups/nightly.tar into ")
    # Again: the folder is not empty now.
    out = _cli("restore", "backups/nightly.tar", cwd=tmp_path, data_dir=restored)
    assert out.returncode == 1
    assert out.stderr.startswith("scanbatch: error: ") and "is not empty" in out.stderr


def test_the_cli_backs_up_a_store_no_server_holds(tmp_path):
    data = tmp_path / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    store.keys.create("alice", Role.MUSIC_DIRECTOR)
    store.close()
    out = _cli("backup", "local.tar", cwd=tmp_path, data_dir=data)
    assert out.returncode == 0, out.stderr
    assert "0 records, 0 reviews" in out.stdout
    assert (tmp_path / "local.tar").stat().st_mode & 0o777 == 0o600


def test_a_client_that_goes_away_leaves_no_copy_and_the_next_backup_starts(tmp_path):
    """A backup larger than the server's send buffer, its client gone after 1 KiB: the
    stream is abandoned, its copy of the store removed, and the next backup may start."""
    data = tmp_path / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    token = keys(store)["manager"]
    job_id = _batch_in_store(store, data)
    store.close()
    (data / "jobs" / job_id / "images" / "item00_0.jpg").write_bytes(os.urandom(8 * 1024 * 1024))
    (data / ".backup-left-by-a-killed-server" / "store").mkdir(parents=True)
    srv = ServerProcess(data, SCANBATCH_HTTP_SEND_BUFFER=str(64 * 1024)).start()
    try:
        assert not (data / ".backup-left-by-a-killed-server").exists()  # removed at start
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                f"GET /admin/backup?photos=true HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.5)
            # The stream waits for this client: its copy of the store is still there.
            assert [p for p in data.iterdir() if p.name.startswith(".backup-")]
        deadline = time.monotonic() + 60
        while [p for p in data.iterdir() if p.name.startswith(".backup-")]:
            assert time.monotonic() < deadline, "the backup's copy of the store stayed"
            time.sleep(0.1)
        r = requests.get(f"{srv.url}/admin/backup?photos=false", headers=bearer(token))
        assert r.status_code == 200, r.text
    finally:
        srv.stop()


def _batch_in_store(store: JobStore, data: Path) -> str:
    """A pending one-photo job written straight into the store, with its job folder."""
    from scanbatch.jobfolder import JobFolder
    from scanbatch.models import Manifest

    manifest = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}]})
    job_id = store.create_job("alice", manifest)
    JobFolder.for_job(data / "jobs", job_id).create(manifest)
    return job_id


def test_a_snapshot_holds_the_store_as_at_its_first_statement(tmp_path):
    """DuckDB fixes a transaction's snapshot at its first statement, not at BEGIN: writes
    committed after that (from other threads, as the server's) are not in what it copies."""
    db = Database(tmp_path / "s.duckdb")
    store = JobStore(db)
    store.keys.create("before", Role.DJ)
    try:
        with db.snapshot() as cur:
            (version,) = cur.execute("SELECT max(version) FROM schema_migrations").fetchone()
            writer = threading.Thread(target=store.keys.create, args=("after", Role.DJ))
            writer.start()
            writer.join()
            target = tmp_path / "keys.parquet"
            cur.execute(f"COPY (SELECT * FROM api_keys) TO '{target}' (FORMAT parquet)")
            copied = cur.execute(f"SELECT user_id FROM read_parquet('{target}')").fetchall()
        assert version == schema_version()
        assert copied == [("before",)]
        assert len(store.keys.list_all()) == 2
    finally:
        store.close()


def test_an_archive_missing_a_photo_it_lists_restores_nothing(backup_under_load, station, tmp_path):
    job_id = station.jobs[0]
    with tarfile.open(backup_under_load.archive) as tar:
        photo = next(n for n in tar.getnames() if n.startswith(f"jobs/{job_id}/images/"))
    archive = _repacked(backup_under_load.archive, tmp_path / "short.tar", drop={photo})
    target = tmp_path / "data"
    with pytest.raises(BackupError) as err:
        restore(archive, _settings(target))
    assert f"{job_id} (" in err.value.message and "miss files" in err.value.message
    assert not target.exists()
