"""Issue 23's long run: a real server on loopback takes job after job (10 records each, the fake
extractor) while polling apps poll, and its resources are sampled after every job: resident
memory, open file descriptors, threads, notebook processes and kernels.

    .venv/bin/python benchmarks/bench_longrun.py [--jobs 2000] [--pollers 20] [--quick]

The goal: flat after warm-up, the last quarter's mean within 10 % of the first's, for each
figure. The first quarter is the baseline measured in the same run. Nothing is asserted: it
prints the figures, per quarter, and each quarter's ratio to the first. Run it with nothing
else running (2 cores); 2,000 jobs took an hour here (1.8 s a job, the machine shared)."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from common import MiB, header, line, percentile, ratio

from scanbatch.store import JobStore
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess, bearer, keys

BATCH = "/library/scan/batch"
RECORDS = 10
WARM_UP_JOBS = 50  # the server's caches and DuckDB's buffers fill; figures start after these
IN_FLIGHT = 4  # jobs submitted and not yet finished at any time, as a busy app keeps them


@dataclass
class Sample:
    job: int
    rss_mib: float
    fds: int
    threads: int
    notebook_processes: int
    kernels: int
    children_rss_mib: float


def sample(server: psutil.Process, job: int) -> Sample:
    kids = server.children(recursive=True)
    notebooks = kernels = 0
    children_rss = 0.0
    for kid in kids:
        try:
            cmdline = " ".join(kid.cmdline())
            children_rss += kid.memory_info().rss / MiB
        except psutil.Error:
            continue
        notebooks += "scanbatch.warm_kernel" in cmdline
        kernels += "ipykernel" in cmdline
    return Sample(
        job,
        server.memory_info().rss / MiB,
        server.num_fds(),
        server.num_threads(),
        notebooks,
        kernels,
        children_rss,
    )


def manifest() -> str:
    items = [
        {
            "imageCount": 1,
            "photoTypes": ["front"],
            "context": {"artistName": f"Artist {i}", "albumTitle": f"Title {i}"},
        }
        for i in range(RECORDS)
    ]
    return json.dumps(items)


class Pollers:
    """Polling apps: each GETs a job it submitted lately and the job list, twice a second."""

    def __init__(self, url: str, token: str, count: int) -> None:
        self.url, self.token = url, token
        self.recent: list[str] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(n,)) for n in range(count)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _poll(self, n: int) -> None:
        with requests.Session() as session:
            session.headers.update(bearer(self.token))
            i = 0
            while not self._stop.wait(0.5):
                with self._lock:
                    recent = self.recent[-IN_FLIGHT * 2 :]
                target = (
                    f"{self.url}{BATCH}/{recent[(n + i) % len(recent)]}"
                    if recent and i % 2 == 0
                    else f"{self.url}{BATCH}?limit=20"
                )
                i += 1
                started = time.perf_counter()
                try:
                    resp = session.get(target, timeout=30)
                    ok = resp.status_code == 200
                    why = f"HTTP {resp.status_code}"
                except requests.RequestException as exc:
                    ok, why = False, type(exc).__name__
                with self._lock:
                    self.latencies.append(time.perf_counter() - started)
                    if not ok:
                        self.errors.append(why)


def run(jobs: int, pollers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-longrun-") as tmp:
        data_dir = Path(tmp) / "data"
        store = JobStore.open(data_dir / "scanbatch.duckdb")
        token = keys(store)["director"]
        store.close()
        srv = ServerProcess(data_dir, extractor="fake").start()
        header(f"Long run: {jobs} jobs of {RECORDS} records, {pollers} polling apps")
        proc = psutil.Process(srv.proc.pid)
        polling = Pollers(srv.url, token, pollers)
        photo = image_bytes("JPEG", size=(320, 320))
        samples: list[Sample] = []
        failed = 0
        started = time.monotonic()
        try:
            polling.start()
            with requests.Session() as session:
                session.headers.update(bearer(token))
                waiting: list[str] = []
                submitted = finished = 0
                while finished < jobs:
                    while submitted < jobs and len(waiting) < IN_FLIGHT:
                        resp = session.post(
                            f"{srv.url}{BATCH}",
                            data={"manifest": manifest()},
                            files=[
                                ("images", (f"IMG_{4000 + i}.jpg", photo, "image/jpeg"))
                                for i in range(RECORDS)
                            ],
                            timeout=60,
                        )
                        if resp.status_code != 202:
                            raise SystemExit(f"submit: {resp.status_code} {resp.text[:300]}")
                        waiting.append(resp.json()["jobId"])
                        with polling._lock:
                            polling.recent.append(waiting[-1])
                        submitted += 1
                    body = session.get(f"{srv.url}{BATCH}/{waiting[0]}", timeout=30).json()
                    if body.get("status") in ("completed", "failed"):
                        failed += body.get("failedItems", 0)
                        waiting.pop(0)
                        finished += 1
                        samples.append(sample(proc, finished))
                        if finished % max(1, jobs // 20) == 0:
                            s = samples[-1]
                            print(
                                f"  job {finished:>5}: RSS {s.rss_mib:6.1f} MiB, {s.fds} fds, "
                                f"{s.threads} threads, {s.notebook_processes} notebook "
                                f"processes, {s.kernels} kernels "
                                f"({time.monotonic() - started:.0f} s)",
                                flush=True,
                            )
                    else:
                        time.sleep(0.05)
        finally:
            polling.stop()
            srv.stop()
        report(samples, jobs, failed, polling, time.monotonic() - started)


def report(samples: list[Sample], jobs: int, failed: int, polling: Pollers, took: float) -> None:
    after = [s for s in samples if s.job > WARM_UP_JOBS] or samples
    size = max(1, len(after) // 4)
    quarters = [after[i * size : (i + 1) * size] for i in range(4)]
    quarters = [q for q in quarters if q]
    line("jobs, records, failed records", f"{jobs}, {jobs * RECORDS}, {failed}")
    line("wall time", f"{took:.0f} s ({took / jobs:.2f} s a job)")
    line(
        "poll GETs, p50 / p99, errors",
        f"{len(polling.latencies)}, {percentile(polling.latencies, 50) * 1000:.0f} / "
        f"{percentile(polling.latencies, 99) * 1000:.0f} ms, {len(polling.errors)}",
    )
    # Memory is judged by each quarter's mean; counts by their peak, as they are counted at
    # each job's end, when a kernel may be starting or stopping (the mean moves with timing;
    # the peak says whether they pile up).
    for label, value, by_peak in (
        ("server RSS (MiB)", lambda s: s.rss_mib, False),
        ("open file descriptors", lambda s: s.fds, True),
        ("threads", lambda s: s.threads, True),
        ("notebook processes", lambda s: s.notebook_processes, True),
        ("kernels", lambda s: s.kernels, True),
        ("notebook processes' RSS (MiB)", lambda s: s.children_rss_mib, False),
    ):
        means = [statistics.fmean(value(s) for s in q) for q in quarters]
        peaks = [max(value(s) for s in q) for q in quarters]
        figures = ", ".join(f"{m:.1f}" for m in means)
        judged = peaks if by_peak else means
        change = judged[-1] / judged[0] - 1 if judged[0] else 0.0
        verdict = "flat" if abs(change) <= 0.10 else "GROWING" if change > 0 else "lower"
        line(
            label,
            f"quarters {figures} (peaks {', '.join(f'{p:.0f}' for p in peaks)}); "
            f"last/first {ratio(judged[-1], judged[0])} {'(peaks)' if by_peak else ''} "
            f"({verdict}; goal within 10 %)",
        )
    if len(after) >= 2:
        first, last = after[0], after[-1]
        per_job = (last.rss_mib - first.rss_mib) / max(1, last.job - first.job)
        line("server RSS growth after warm-up", f"{per_job * 1024:+.1f} KiB a job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to run (default 2000)")
    parser.add_argument("--pollers", type=int, default=20, help="polling apps (default 20)")
    parser.add_argument("--quick", action="store_true", help="200 jobs")
    args = parser.parse_args()
    run(200 if args.quick else args.jobs, args.pollers)


if __name__ == "__main__":
    main()
