"""Issue 9's measurements of the review API against a real server on loopback:

1. the review queue over 10,000 finished items: latency of a page of 20 (goal p99 < 20 ms),
   beside the station's job GET in the same run as the baseline;
2. a 512-px thumbnail of a 2048-px HEIC: made once (goal < 1.5 s), then served (goal < 5 ms);
3. exporting 500 reviewed items (1,500 photos, ~1 GB): server RSS growth while streaming
   (goal < 64 MiB).

    .venv/bin/python benchmarks/bench_review.py [--quick]

Nothing is asserted: figures are printed with their goal. Run it with nothing else running."""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests
from common import MiB, header, line, noisy_photo, percentile, ratio

from scanbatch.names import FIELDS
from scanbatch.store import JobStore
from scanbatch.store.jobs import item_confidence
from scanbatch.testing.servers import ServerProcess, bearer, keys


def seed_store(
    data_dir: Path, jobs: int, photo: Path, reviewed_jobs: int, photos_per_item: int = 3
) -> tuple[dict, list[str]]:
    """`jobs` finished jobs of 10 items, written straight into the store (fast); every
    photo is a hard link to `photo`, so 1,500 photos cost no disk. The first
    `reviewed_jobs` jobs get a review on every item."""
    rng = random.Random(9)
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    tokens = keys(store)
    now = datetime.now(UTC)
    job_ids = [str(uuid.uuid4()) for _ in range(jobs)]
    with store.db.write() as cur:
        cur.executemany(
            "INSERT INTO scan_jobs (id, user_id, status, total_items, completed_items, "
            "extractor, created_at, updated_at, completed_at) "
            "VALUES (?, 'alice', 'completed', 10, 10, 'ocr', ?, ?, ?)",
            [[j, now, now, now] for j in job_ids],
        )
        rows = []
        for j in job_ids:
            for i in range(10):
                extraction = {
                    name: {"value": f"{name} {i}", "confidence": round(rng.random(), 3)}
                    for name in FIELDS
                    if rng.random() < 0.8
                }
                rows.append(
                    [
                        j,
                        i,
                        json.dumps(["front_cover"] * 3),
                        json.dumps(extraction),
                        item_confidence(extraction),
                        now,
                        now,
                        now,
                    ]
                )
        cur.executemany(
            "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
            "extraction, confidence, extractor, prompt_version, created_at, updated_at, "
            "completed_at) VALUES (?, ?, 'completed', 3, ?, ?, ?, 'ocr', 'v1', ?, ?, ?)",
            rows,
        )
    for j in job_ids:
        images = data_dir / "jobs" / j / "images"
        images.mkdir(parents=True)
        for i in range(10):
            for p in range(photos_per_item):
                os.link(photo, images / f"item{i:02d}_{p}.jpg")
    from scanbatch.audit import ReviewInput

    reviews = store.reviews
    body = ReviewInput.model_validate(
        {"fields": dict.fromkeys(FIELDS, "x"), "matchedAlbumId": None}
    )
    for j in job_ids[:reviewed_jobs]:
        for i in range(10):
            reviews.save(j, i, "bob", body)
    store.close()
    return tokens, job_ids


def timed_gets(url: str, token: str, n: int) -> list[float]:
    session = requests.Session()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, headers=bearer(token), timeout=30)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return times


def bench_queue_and_export(tmp: Path, quick: bool) -> None:
    jobs = 200 if quick else 1000
    reviewed = 20 if quick else 50
    header(f"1. Review queue over {jobs * 10:,} finished items; 3. export {reviewed * 10} items")
    photo = tmp / "photo.jpg"
    photo.write_bytes(noisy_photo(1400, "JPEG"))
    print(f"photo: {photo.stat().st_size / MiB:.2f} MiB, hard-linked into every job folder")
    data_dir = tmp / "queue" / "data"
    data_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    tokens, job_ids = seed_store(data_dir, jobs, photo, reviewed)
    print(f"seeded in {time.perf_counter() - t0:.1f} s")
    srv = ServerProcess(data_dir, extractor="ocr").start()
    try:
        token = tokens["director"]
        runs = 100 if quick else 300
        timed_gets(f"{srv.url}/library/scan/review/items", token, 10)  # warm
        queue = timed_gets(f"{srv.url}/library/scan/review/items?limit=20", token, runs)
        deep = timed_gets(
            f"{srv.url}/library/scan/review/items?limit=20&offset=5000&state=all", token, runs
        )
        job = timed_gets(f"{srv.url}/library/scan/batch/{job_ids[-1]}", token, runs)
        for label, values in (
            ("queue, first page (unreviewed)", queue),
            ("queue, page at offset 5000 (all)", deep),
            ("baseline: one job GET", job),
        ):
            line(
                label,
                f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms",
            )
        line(
            "queue p99 / job GET p99",
            ratio(percentile(queue, 99), percentile(job, 99)) + "   (goal: queue p99 < 20 ms)",
        )

        proc = psutil.Process(srv.proc.pid)
        before = proc.memory_info().rss
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        size = 0
        with requests.get(
            f"{srv.url}/library/scan/review/dataset",
            headers=bearer(token),
            stream=True,
            timeout=600,
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_content(MiB):
                size += len(chunk)
        elapsed = time.perf_counter() - t0
        done.set()
        sampler.join()
        line(
            f"export of {reviewed * 10} items",
            f"{size / MiB:.0f} MiB in {elapsed:.1f} s ({size / MiB / elapsed:.0f} MiB/s)",
        )
        line(
            "server RSS while streaming",
            f"{before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB: "
            f"+{(peak - before) / MiB:.1f} MiB   (goal: < 64 MiB growth)",
        )
    finally:
        srv.stop()


def bench_thumbnail(tmp: Path) -> None:
    header("2. A 512-px thumbnail of a 2048-px HEIC: made once, then served")
    from scanbatch.jobfolder import JobFolder
    from scanbatch.thumbnails import cached_thumbnail

    heic = tmp / "item00_0.heic"
    heic.write_bytes(noisy_photo(2048, "HEIF"))
    made = []
    for n in range(3):  # each in a fresh cache folder: the cost of making it
        t0 = time.perf_counter()
        cached_thumbnail(heic, 512, JobFolder(tmp / f"cache{n}"))
        made.append((time.perf_counter() - t0) * 1000)
    served = []
    for _ in range(200):
        t0 = time.perf_counter()
        path = cached_thumbnail(heic, 512, JobFolder(tmp / "cache0"))
        path.read_bytes()
        served.append((time.perf_counter() - t0) * 1000)
    line("made (decode, resize, JPEG)", f"median {sorted(made)[1]:.0f} ms   (goal < 1500 ms)")
    line(
        "served from disk (lookup + read)",
        f"p50 {percentile(served, 50):.2f} ms, p99 {percentile(served, 99):.2f} ms "
        "(goal < 5 ms; add the HTTP round trip of a job GET above)",
    )
    line("made / served", ratio(sorted(made)[1], percentile(served, 50)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller store, fewer requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_thumbnail(Path(tmp))
        bench_queue_and_export(Path(tmp), args.quick)


if __name__ == "__main__":
    main()
