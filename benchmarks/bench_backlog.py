"""Issue 22's measurement: a shelf through the backlog. 5,000 records (15,000 photos of about
300 KB) posted as 500 backlog jobs to a real server whose Gemini is the loopback fake of
Google's Files and Batch APIs (scanbatch/testing/fake_batch.py), answering each batch at once.

    .venv/bin/python benchmarks/bench_backlog.py [--records 5000] [--quick]

Prints the server's RSS before, at its peak while it packs and ingests, and the growth; the
time from the last POST to every job completed, beside the interactive path's floor for the
same records at SCANBATCH_GEMINI_RPM (60 a minute: about 83 minutes, computed, not run); and
the cost per 1,000 records both ways from data/prices.json, for the tokens the fake reported.
A benchmark, not a test: nothing is asserted. Run it with nothing else on the machine: it
writes ~17 GB (the photos, the batch files, the fake's copy) under a temporary folder."""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests
from common import MiB, header, line, photo_of_size, ratio

from scanbatch.prices import load_prices
from scanbatch.store import JobStore
from scanbatch.testing.fake_batch import FakeBatchAPI
from scanbatch.testing.fake_gemini import extraction_reply
from scanbatch.testing.servers import ServerProcess, bearer, keys

RECORDS_PER_JOB = 10
PHOTOS_PER_RECORD = 3
TOKENS_IN, TOKENS_OUT = 1800, 120
ANSWER = extraction_reply(prompt_tokens=TOKENS_IN, output_tokens=TOKENS_OUT).body


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append((time.monotonic(), self.proc.memory_info().rss / MiB))
            except psutil.Error:
                return
            time.sleep(0.25)

    def peak(self, since: float = 0.0, until: float = float("inf")) -> float:
        return max((rss for at, rss in self.samples if since <= at <= until), default=float("nan"))


def list_jobs(url: str, token: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = requests.get(
            f"{url}/library/scan/batch",
            params={"limit": 100, "offset": offset},
            headers=bearer(token),
            timeout=30,
        ).json()
        out += page["jobs"]
        offset += len(page["jobs"])
        if not page["jobs"] or offset >= page["total"]:
            return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 records")
    parser.add_argument("--posters", type=int, default=4, help="clients posting at once")
    parser.add_argument("--log", type=Path, help="keep the server's log here")
    args = parser.parse_args()
    records = 500 if args.quick else args.records
    jobs = records // RECORDS_PER_JOB
    header(f"backlog: {records} records, {jobs} jobs of {RECORDS_PER_JOB}, 3 photos each")
    photos = [photo_of_size(seed, 300_000) for seed in range(30)]
    line("photo size", f"{sum(map(len, photos)) / len(photos) / 1000:.0f} kB (30 distinct)")
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        data_dir = Path(tmp) / "data"
        store = JobStore.open(data_dir / "scanbatch.duckdb")
        tokens = keys(store)
        store.close()
        token = tokens["director"]
        with FakeBatchAPI(answer=lambda key, request: ANSWER, root=Path(tmp) / "google") as fake:
            env = {
                "GEMINI_API_KEY": "bench-key",
                "SCANBATCH_GEMINI_BASE_URL": fake.base_url,
                # Google takes minutes to hours; the fake answers at once, so the poll schedule
                # would be all there is to measure: a short first look, and a short wait.
                "SCANBATCH_BACKLOG_POLL_SECONDS": "2",
                "SCANBATCH_BACKLOG_WAIT_SECONDS": "5",
            }
            for name, value in env.items():
                if name.startswith("SCANBATCH_BACKLOG"):
                    line(name, value)
            server = ServerProcess(data_dir, "gemini", **env).start()
            sampler = RssSampler(server.proc.pid)
            sampler.start()
            try:
                time.sleep(3)
                baseline = sampler.samples[-1][1]
                manifest = json.dumps(
                    [
                        {
                            "imageCount": PHOTOS_PER_RECORD,
                            "photoTypes": ["front", "back", "photo"],
                            "context": {"stickerText": f"shelf {n}"},
                        }
                        for n in range(RECORDS_PER_JOB)
                    ]
                )

                def post(job: int) -> str:
                    files = [
                        (
                            "images",
                            (
                                f"IMG_{job * 30 + n:05d}.jpg",
                                photos[(job + n) % len(photos)],
                                "image/jpeg",
                            ),
                        )
                        for n in range(RECORDS_PER_JOB * PHOTOS_PER_RECORD)
                    ]
                    r = requests.post(
                        f"{server.url}/library/scan/batch",
                        data={"manifest": manifest, "mode": "backlog"},
                        files=files,
                        headers=bearer(token),
                        timeout=300,
                    )
                    r.raise_for_status()
                    return r.json()["jobId"]

                started = time.monotonic()
                with ThreadPoolExecutor(args.posters) as pool:
                    ids = list(pool.map(post, range(jobs)))
                last_post = time.monotonic()
                last_post_at = datetime.now(UTC)
                line("posting", f"{jobs} POSTs in {last_post - started:.1f} s")
                # The list, a page of 100 a second, as an app polling many jobs would: not one
                # GET per job per second, which would make the server busier than its jobs.
                wanted = set(ids)
                while True:
                    summaries = list_jobs(server.url, token)
                    mine = [j for j in summaries if j["jobId"] in wanted]
                    if all(j["status"] in ("completed", "failed") for j in mine):
                        break
                    time.sleep(1)
                finished_at = max(datetime.fromisoformat(j["updatedAt"]) for j in mine)
                done = last_post + (finished_at - last_post_at).total_seconds()
                views = [
                    requests.get(
                        f"{server.url}/library/scan/batch/{job_id}",
                        headers=bearer(token),
                        timeout=30,
                    ).json()
                    for job_id in ids
                ]
            finally:
                sampler.stopping.set()
                server.stop()
                if args.log:
                    args.log.write_bytes((data_dir.parent / "server.log").read_bytes())
            peak = sampler.peak(started)
            line(
                "server RSS",
                f"{baseline:.0f} MiB before, peak {peak:.0f} MiB (while posting "
                f"{sampler.peak(started, last_post):.0f}, after {sampler.peak(last_post):.0f}); "
                f"at the end {sampler.samples[-1][1]:.0f}",
            )
            line("RSS growth", f"+{peak - baseline:.0f} MiB (goal < 128 MiB)")
            wall = done - last_post
            rpm = 60
            floor = records / rpm * 60
            line(
                "last POST -> every job completed",
                f"{wall:.1f} s (goal <= 120 s); interactive floor at {rpm} RPM: "
                f"{floor / 60:.0f} min ({ratio(wall, floor)})",
            )
            completed = sum(v["completedItems"] for v in views)
            line("records completed", f"{completed} of {records}")
            line(
                "Google batches",
                f"{len(fake.creates)} created, {len(fake.uploads)} files, "
                f"largest {max(u.size for u in fake.uploads) / 1e9:.2f} GB",
            )
            paid = sum(v["cost"] or 0 for v in views)
            prices = load_prices()
            interactive = prices.cost("gemini", "gemini-3-flash-preview", TOKENS_IN, TOKENS_OUT)
            per_1000_batch = paid / max(completed, 1) * 1000
            per_1000 = interactive * 1000
            line(
                "cost per 1,000 records",
                f"backlog {prices.currency} {per_1000_batch:.3f}, interactive "
                f"{prices.currency} {per_1000:.3f} ({ratio(per_1000_batch, per_1000)}) for "
                f"{TOKENS_IN} tokens in, {TOKENS_OUT} out (prices of {prices.date})",
            )


if __name__ == "__main__":
    main()
