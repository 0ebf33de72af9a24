"""`GET /admin/usage` and `scanbatch usage`: the data folder's bytes per part, checked against
the files the test wrote (the parts add up to the folder), the disk's room, and the store's
job and record counts; through a real server and on the store."""

import os
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from scanbatch.cli import cli
from scanbatch.retention import prune
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.testing.servers import ServerProcess, bearer, keys
from scanbatch.usage import UsageParts, human_bytes, usage
from tests.test_retention import DAYS, library

# Files beside the store and the job folders, as a station's data folder holds them.
EXTRA = {
    "experiments/cache/ab/abcdef.json": 1234,
    "experiments/run-1/records.jsonl": 4321,
    "backlog/batch-0001.jsonl": 20_000,
    "server.log": 700,
    "server.log.1": 10_000,
    "warm_kernels.log": 55,
    "catalog.parquet": 3000,
}


def part_of(relative: Path) -> str:
    """Which part a file of the data folder is, said from its path alone."""
    parts = relative.parts
    if parts[0] == "jobs":
        if len(parts) > 2 and parts[2] == "images":
            return "photos"
        if len(parts) > 2 and parts[2] == "thumbnails":
            return "thumbnails"
        return "notebooks" if parts[-1] == "process_batch.ipynb" else "job_files"
    if parts[0] in ("scanbatch.duckdb", "scanbatch.duckdb.wal"):
        return "store"
    if parts[0] in ("experiments", "backlog"):
        return parts[0]
    if parts[0].startswith(("server.log", "warm_kernels.log")):
        return "logs"
    return "other"


def measured(data: Path) -> dict[str, list[int]]:
    """Bytes and files per part, from a walk of the folder as the test sees it."""
    sizes = {name: [0, 0] for name in UsageParts.model_fields}
    for path in data.rglob("*"):
        if path.is_file():
            part = sizes[part_of(path.relative_to(data))]
            part[0] += path.stat().st_size
            part[1] += 1
    return sizes


def reported(parts) -> dict[str, list[int]]:
    return {name: [getattr(parts, name).bytes, getattr(parts, name).files] for name in sizes_of()}


def sizes_of():
    return list(UsageParts.model_fields)


def station(data: Path) -> tuple[Settings, dict[str, str], dict[str, str]]:
    """A data folder with the retention tests' library, some of it pruned, and the files of
    EXTRA; the library's jobs and the usual keys."""
    settings = Settings(data_dir=data, extractor="fake")
    store = JobStore.open(settings.store_path)
    try:
        jobs = library(store, settings)
        prune(store, settings, DAYS)
        tokens = keys(store)
    finally:
        store.close()
    for name, size in EXTRA.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return settings, jobs, tokens


def test_usage_parts_are_the_files_on_disk_and_add_up(tmp_path):
    settings, _jobs, _tokens = station(tmp_path / "data")
    store = JobStore.open(settings.store_path)
    try:
        report = usage(store, settings)
        on_disk = measured(settings.data_dir)
    finally:
        store.close()
    assert reported(report.parts) == on_disk
    assert report.total_bytes == sum(b for b, _ in on_disk.values())
    assert report.parts.logs.bytes == 700 + 10_000 + 55
    assert report.parts.experiments.bytes == 1234 + 4321
    assert (report.parts.backlog.bytes, report.parts.other.bytes) == (20_000, 3000)
    photos = sum(p.stat().st_size for p in settings.jobs_dir.glob("*/images/*"))
    assert report.parts.photos.bytes == photos > 0
    # The library's photos: 3 + 2 + 2 + 2 records of 2 photos, 1 of 3; pruned: 7 photos, 5
    # thumbnails (of 2 + 3 made), leaving 2 thumbnails of the reviewed record.
    assert report.parts.photos.files == 2 * (3 + 2 + 2) + 3 - 7
    assert report.parts.thumbnails.files == 2
    assert report.parts.notebooks.files == 4 and report.parts.store.files >= 1
    assert report.jobs.model_dump() == {"pending": 0, "processing": 1, "completed": 3, "failed": 0}
    assert (report.records, report.reviewed_records, report.pruned_records) == (8, 1, 3)
    assert 0 < report.disk_free_bytes <= report.disk_total_bytes
    assert report.keep_photos_days is None and report.data_dir == str(settings.data_dir)


def test_usage_of_an_empty_folder_is_zero_but_the_store(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", extractor="fake")
    store = JobStore.open(settings.store_path)
    try:
        report = usage(store, settings)
    finally:
        store.close()
    assert report.total_bytes == report.parts.store.bytes > 0
    assert report.records == 0 and report.jobs.completed == 0


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (12_345_678, "12.3 MB"),
        (1_500_000_000, "1.5 GB"),
        (3 * 10**12, "3.0 TB"),
    ],
)
def test_sizes_for_a_person(n, text):
    assert human_bytes(n) == text


def test_usage_through_the_running_server_and_scanbatch_usage(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _settings, jobs, tokens = station(data)
    server = ServerProcess(data, SCANBATCH_KEEP_PHOTOS_DAYS="3650").start()
    try:
        # The server resumes the job left running; its notebook is rewritten as it goes.
        server.wait_finished(jobs["running"], tokens["director"])
        r = requests.get(f"{server.url}/admin/usage", headers=bearer(tokens["manager"]), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        on_disk = measured(data)
        for name in ("photos", "thumbnails", "experiments", "backlog"):
            assert [body["parts"][name]["bytes"], body["parts"][name]["files"]] == on_disk[name]
        assert body["parts"]["notebooks"]["files"] == on_disk["notebooks"][1] == 4
        assert (
            body["records"] == 8 and body["prunedRecords"] == 3 and body["keepPhotosDays"] == 3650
        )
        assert body["jobs"] == {"pending": 0, "processing": 0, "completed": 4, "failed": 0}
        assert body["totalBytes"] == sum(p["bytes"] for p in body["parts"].values())
        monkeypatch.setenv("SCANBATCH_DATA_DIR", str(data))
        result = CliRunner().invoke(cli, ["usage"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == f"Data folder {data}"
        photos = next(line for line in lines if line.startswith("photos "))
        assert photos.split()[-1] == str(on_disk["photos"][1]) and "kB" in photos
        assert "Records: 8 (1 reviewed, 3 with their photos removed)" in lines
        assert "Jobs: 4 completed, 0 failed, 0 processing, 0 pending" in lines
        assert "Retention: photos of unreviewed records kept 3650 days" in lines
        assert any(line.startswith("Disk: ") and " free of " in line for line in lines)
    finally:
        server.stop()
