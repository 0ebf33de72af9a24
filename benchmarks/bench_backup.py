"""Issue 23's measurement of backups: a store of 100,000 records and 5,000 reviews (written
straight into DuckDB with bulk SQL), served by a real server on loopback.

    .venv/bin/python benchmarks/bench_backup.py [--records 100000] [--reviews 5000] [--quick]

Prints the time `GET /admin/backup` takes (the store's snapshot and its stream, without photos;
the median of --backups taken back to back) and the archive's size; the p50 and p99 of a
poller's `GET /library/scan/batch/<id>` while the backups run, beside the same poller with
nothing else running for as long, in the same run (the ratio is what counts on a shared
machine); and the time `scanbatch restore` takes on the archive.
Nothing is asserted."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import MiB, header, line, percentile, ratio

from scanbatch.backup import restore
from scanbatch.cli.through_server import ServerClient
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.testing.servers import ServerProcess, bearer, keys

RECORDS_PER_JOB = 10
EXTRACTION = (
    "json_object("
    + ", ".join(
        f"'{name}', json_object('value', '{name} ' || j.n || '-' || i.range, "
        "'confidence', round(random(), 3))"
        for name in ("artistName", "albumTitle", "labelName", "catalogNumber", "upc")
    )
    + ", 'reviewText', json_object('value', repeat('a review of the record ', 8), "
    "'confidence', 0.5))"
)


def seed(data_dir: Path, records: int, reviews: int) -> tuple[dict, str]:
    """The store, with `records` finished records and `reviews` of them reviewed; the tokens
    and a job id to poll."""
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    tokens = keys(store)
    jobs = records // RECORDS_PER_JOB
    with store.db.write() as cur:
        cur.execute(
            f"CREATE TEMP TABLE seed_jobs AS SELECT range AS n, uuid() AS id FROM range({jobs})"
        )
        cur.execute(
            "INSERT INTO scan_jobs (id, user_id, status, total_items, completed_items, "
            "extractor, created_at, updated_at, completed_at) SELECT id, 'alice', 'completed', "
            f"{RECORDS_PER_JOB}, {RECORDS_PER_JOB}, 'fake', now(), now(), now() FROM seed_jobs"
        )
        cur.execute(
            "INSERT INTO scan_results (job_id, item_index, status, image_count, photo_types, "
            "extraction, confidence, extractor, model, prompt_version, latency_ms, created_at, "
            "updated_at, completed_at, audit_key) SELECT j.id, i.range, 'completed', 3, "
            '\'["front_cover", "back_cover", "center_label"]\', '
            f"{EXTRACTION}, 0.5, 'fake', 'fake-1', 'v1', 800, now(), now(), now(), random() "
            f"FROM seed_jobs j, range({RECORDS_PER_JOB}) i"
        )
        cur.execute(
            "CREATE TEMP TABLE seed_reviews AS SELECT job_id, item_index, "
            f"uuid()::VARCHAR AS id FROM scan_results USING SAMPLE {reviews} ROWS"
        )
        truth = (
            "json_object('artistName', 'A', 'albumTitle', 'B', 'labelName', 'C', "
            "'catalogNumber', 'D', 'reviewText', NULL, 'upc', NULL)"
        )
        verdicts = (
            "json_object('artistName', 'correct', 'albumTitle', 'corrected', "
            "'labelName', 'correct', 'catalogNumber', 'correct', 'reviewText', 'correct', "
            "'upc', 'correct')"
        )
        cur.execute(
            "INSERT INTO scan_review_history (id, job_id, item_index, revision, reviewer, "
            f"reviewed_at, truth, verdicts, match_verdict) SELECT id, job_id, item_index, 1, "
            f"'bob', now(), {truth}, {verdicts}, 'correct' FROM seed_reviews"
        )
        cur.execute(
            "INSERT INTO scan_reviews SELECT job_id, item_index, id, now() FROM seed_reviews"
        )
        (job_id,) = cur.execute("SELECT id::VARCHAR FROM seed_jobs LIMIT 1").fetchone()
        cur.execute("DROP TABLE seed_jobs")
        cur.execute("DROP TABLE seed_reviews")
    store.close()
    return tokens, job_id


class Poller(threading.Thread):
    """GETs one job as fast as it is answered until stopped; each GET's milliseconds."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.times: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            t = time.perf_counter()
            session.get(self.url, headers=bearer(self.token), timeout=30).raise_for_status()
            self.times.append((time.perf_counter() - t) * 1000)
            time.sleep(0.005)

    def stop(self) -> list[float]:
        self.stopping.set()
        self.join()
        return self.times


def polled(url: str, token: str, seconds: float | None = None, during=None) -> list[float]:
    poller = Poller(url, token)
    poller.start()
    if during is None:
        time.sleep(seconds or 0)
    else:
        during()
    return poller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--reviews", type=int, default=5_000)
    parser.add_argument("--backups", type=int, default=3, help="backups taken back to back")
    parser.add_argument("--quick", action="store_true", help="10,000 records, 500 reviews")
    args = parser.parse_args()
    records, reviews = (10_000, 500) if args.quick else (args.records, args.reviews)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        header(f"backup of {records:,} records and {reviews:,} reviews")
        t = time.perf_counter()
        tokens, job_id = seed(data, records, reviews)
        line("store seeded", f"{time.perf_counter() - t:.1f} s")
        srv = ServerProcess(data).start()
        archive = Path(tmp) / "backup.tar"
        took: list[float] = []

        def backup() -> None:
            t = time.perf_counter()
            client = ServerClient(srv.url, tokens["manager"])  # what `scanbatch backup` uses
            with client.stream("GET", "/admin/backup?photos=false") as r, open(archive, "wb") as fh:
                for chunk in r.iter_content(MiB):
                    fh.write(chunk)
            took.append(time.perf_counter() - t)

        try:
            job_url = f"{srv.url}/library/scan/batch/{job_id}"
            polled(job_url, tokens["director"], 1.0)  # warm-up
            during = polled(
                job_url, tokens["director"], during=lambda: [backup() for _ in range(args.backups)]
            )
            baseline = polled(job_url, tokens["director"], max(sum(took), 2.0))
        finally:
            srv.stop()
        line(
            "backup (GET /admin/backup, no photos)",
            f"{statistics.median(took):.2f} s (median of {len(took)})",
        )
        line("archive", f"{archive.stat().st_size / MiB:.1f} MiB")
        for pct in (50, 99):
            quiet, busy = percentile(baseline, pct), percentile(during, pct)
            line(
                f"job GET p{pct} during / without",
                f"{busy:.1f} ms / {quiet:.1f} ms ({ratio(busy, quiet)}; "
                f"{len(during)} / {len(baseline)} GETs)",
            )
        t = time.perf_counter()
        restore(archive, Settings(data_dir=Path(tmp) / "restored", extractor="fake"))
        line("restore into an empty folder", f"{time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
