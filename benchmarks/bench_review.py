"""Issue 9's measurements of the review API against a real server on loopback:

1. the review queue over 10,000 finished items: latency of a page of 20 (goal p99 < 20 ms),
   beside the station's job GET in the same run as the baseline;
2. a 512-px thumbnail of a 2048-px HEIC: made once (goal < 1.5 s), then served (goal < 5 ms);
3. exporting 500 reviewed items (1,500 photos, ~1 GB): server RSS growth while streaming
   (goal < 64 MiB);
4. issue 20's audit estimates at station size, 100,000 finished records and 2,000 reviews:
   the metrics route with estimates (goal p99 < 200 ms) beside groupBy=promptVersion, the
   queue in audit order (goal p99 < 20 ms per page of 20) beside the confidence order, and
   state=needsReview; then, in-process, where the metrics' time goes (the store's SQL, the
   estimates, the reviewed-only figures);
5. issue 21's reviewers at once, on the same 100,000 records: 20 reviewers each taking records
   with `POST /library/scan/review/next` (sort=audit) and saving them with their version (a
   pause of 0.2-1 s between records), while a 21st reads the queue page: p99 of `next` and of
   the page (goal < 20 ms each), beside the page with nobody saving, in the same run.

    .venv/bin/python benchmarks/bench_review.py [--quick] [--only audit] [--only leases]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psutil
import requests
from common import ROOT, MiB, header, line, noisy_photo, percentile, ratio

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


def timed(run, n: int) -> list[float]:
    """Milliseconds of each of `n` calls of `run`."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def timed_gets(url: str, token: str, n: int) -> list[float]:
    session = requests.Session()
    return timed(lambda: session.get(url, headers=bearer(token), timeout=30).raise_for_status(), n)


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


AUDIT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro")
AUDIT_PROMPTS = ("v1", "v2", "v3")  # one after the other over the 8 weeks
AUDIT_WEEKS = 8


def seed_audit_store(data_dir: Path, records: int, reviews: int) -> dict:
    """`records` finished records (1 % failed) in jobs of 10 over the last 8 weeks, each read
    with six fields (value and confidence) by a reader overconfident below 0.9, with a
    prompt version per period and two models; then `reviews` reviews as a station makes
    them: a fifth least-confident-first, a tenth job by job, the rest from the audit order.
    Written through DataFrames in a few statements (the store's own writes take an hour)."""
    import numpy as np
    import pandas as pd

    from scanbatch.store.jobs import field_confidences, item_confidence

    rng = np.random.default_rng(20)
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    tokens = keys(store)
    jobs = records // 10
    now = datetime.now(UTC)
    age = np.sort(rng.uniform(0, AUDIT_WEEKS * 7 * 86400, jobs))[::-1]  # oldest job first
    job_created = pd.to_datetime(now.timestamp() - age, unit="s", utc=True)
    job_ids = [str(uuid.uuid4()) for _ in range(jobs)]
    job_of = np.repeat(np.arange(jobs), 10)
    created = job_created[job_of]
    finished = created + pd.to_timedelta(rng.uniform(5, 60, records), unit="s")
    failed = rng.random(records) < 0.01
    period = np.minimum((age[job_of] / age.max() * len(AUDIT_PROMPTS)).astype(int), 2)
    prompt = np.array(AUDIT_PROMPTS)[::-1][period]
    model = np.where(rng.random(records) < 0.9, *AUDIT_MODELS)
    confidence = np.round(np.clip(rng.beta(8, 1.2, (records, len(FIELDS))), 0.05, 0.999), 3)
    empty = rng.random((records, len(FIELDS))) < (0.0, 0.0, 0.1, 0.2, 0.5, 0.6)
    # Overconfident below 0.9 (right less often than it says), right above: so with enough
    # audit reviews every field earns a threshold and state=needsReview filters in SQL.
    right = (confidence >= 0.9) | (rng.random((records, len(FIELDS))) < 0.3 + 0.68 * confidence)
    extractions, item_conf, field_conf = [], [], []
    for n in range(records):
        if failed[n]:
            extractions.append(None)
            item_conf.append(None)
            field_conf.append(None)
            continue
        extraction = {
            name: {
                "value": None if empty[n, k] else f"{name} {n}",
                "confidence": float(confidence[n, k]),
            }
            for k, name in enumerate(FIELDS)
        }
        extractions.append(json.dumps(extraction))
        item_conf.append(item_confidence(extraction))
        field_conf.append(field_confidences(extraction))
    album_ids = [
        int(line.split(",", 1)[0])
        for line in (ROOT / "data" / "catalog_sample.csv").read_text().splitlines()[1:]
    ]
    matched = np.where(rng.random(records) < 0.8, rng.choice(album_ids, records), -1)
    match_right = rng.random(records) < 0.85
    results = pd.DataFrame(
        {
            "job_id": np.array(job_ids)[job_of],
            "item_index": np.tile(np.arange(10), jobs).astype("int32"),
            "status": np.where(failed, "failed", "completed"),
            "image_count": 3,
            "photo_types": json.dumps(["front_cover", "back_cover", "center_label"]),
            "extraction": extractions,
            "matched_album_id": pd.array(np.where(matched < 0, None, matched), dtype="Int32"),
            "error_message": np.where(failed, "The model refused the photos", None),
            "error_code": np.where(failed, "blocked", None),
            "extractor": "gemini",
            "model": np.where(failed, None, model),
            "prompt_version": prompt,
            "created_at": created,
            "updated_at": finished,
            "completed_at": finished,
            "confidence": pd.array(item_conf, dtype="Float64"),
            "audit_key": rng.random(records),
            "field_confidence": field_conf,
        }
    )
    counts = pd.DataFrame({"job": job_of, "failed": failed}).groupby("job")["failed"].sum()
    job_rows = pd.DataFrame(
        {
            "id": job_ids,
            "user_id": "alice",
            "status": "completed",
            "total_items": 10,
            "completed_items": (10 - counts.to_numpy()).astype("int32"),
            "failed_items": counts.to_numpy().astype("int32"),
            "extractor": "gemini",
            "created_at": job_created,
            "updated_at": job_created,
            "completed_at": job_created,
        }
    )

    # Which records the reviews are of: least confident first (NULL, the failed, first, as
    # the queue sorts), whole jobs, then the audit order over the rest.
    order = np.lexsort((created.asi8, np.nan_to_num(results["confidence"].to_numpy(float), nan=-1)))
    least = order[: reviews // 5]
    taken = np.zeros(records, dtype=bool)
    taken[least] = True
    whole_jobs = rng.choice(jobs, reviews // 10 // 10, replace=False)
    for j in whole_jobs:
        taken[j * 10 : (j + 1) * 10] = True
    audit_order = np.argsort(results["audit_key"].to_numpy())
    rest = audit_order[~taken[audit_order]][: reviews - int(taken.sum())]
    taken[rest] = True
    reviewed = np.flatnonzero(taken)
    verdicts, truths, match_verdicts, truth_albums = [], [], [], []
    for n in reviewed:
        truth, verdict = {}, {}
        for k, name in enumerate(FIELDS):
            value = None if empty[n, k] or failed[n] else f"{name} {n}"
            ok = right[n, k] and not failed[n]
            truth[name] = value if ok else f"{name} {n} (corrected)"
            verdict[name] = "correct" if ok else ("missed" if value is None else "corrected")
        truths.append(json.dumps(truth))
        verdicts.append(json.dumps(verdict))
        good = bool(match_right[n] and matched[n] >= 0)
        truth_albums.append(int(matched[n]) if good else album_ids[n % len(album_ids)])
        match_verdicts.append("correct" if good else "corrected")
    reviewed_at = finished[reviewed] + pd.to_timedelta(rng.uniform(1, 72, len(reviewed)), "h")
    review_ids = [str(uuid.uuid4()) for _ in reviewed]
    history = pd.DataFrame(
        {
            "id": review_ids,
            "job_id": results["job_id"].to_numpy()[reviewed],
            "item_index": results["item_index"].to_numpy()[reviewed],
            "revision": 1,
            "reviewer": np.where(np.arange(len(reviewed)) % 2 == 0, "alice", "bob"),
            "reviewed_at": reviewed_at,
            "truth": truths,
            "matched_album_id": np.array(truth_albums, dtype="int32"),
            "verdicts": verdicts,
            "match_verdict": match_verdicts,
            "note": None,
        }
    )
    current = history[["job_id", "item_index", "id", "reviewed_at"]].rename(
        columns={"id": "review_id"}
    )
    with store.db.write() as cur:
        for table, frame in (
            ("scan_jobs", job_rows),
            ("scan_results", results),
            ("scan_review_history", history),
            ("scan_reviews", current),
        ):
            cur.register("seed", frame)
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM seed")
            cur.unregister("seed")
    store.close()
    return tokens


def fresh_metrics(url: str, token: str, n: int) -> list[float]:
    """The metrics GET, each time just after a review was saved (the next record of the audit
    order): what a director sees on the Dashboard after a save, computed anew."""
    session = requests.Session()
    truth = dict.fromkeys(FIELDS)
    out = []
    for _ in range(n):
        item = session.get(
            f"{url}/library/scan/review/items?sort=audit&limit=1", headers=bearer(token)
        ).json()["items"][0]
        session.put(
            f"{url}/library/scan/batch/{item['jobId']}/items/{item['itemIndex']}/review",
            json={"fields": truth, "matchedAlbumId": None},
            headers=bearer(token),
        ).raise_for_status()
        t = time.perf_counter()
        session.get(f"{url}/library/scan/review/metrics", headers=bearer(token)).raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return out


def p50_p99(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms"


def bench_audit(tmp: Path, quick: bool) -> None:
    records = 10_000 if quick else 100_000
    reviews = 200 if quick else 2_000
    header(f"4. Audit estimates over {records:,} finished records and {reviews:,} reviews")
    data_dir = tmp / "audit" / "data"
    data_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    tokens = seed_audit_store(data_dir, records, reviews)
    print(f"seeded in {time.perf_counter() - t0:.1f} s")
    metrics_runs = 20 if quick else 100
    queue_runs = 100 if quick else 300
    srv = ServerProcess(data_dir, extractor="ocr").start()
    try:
        token = tokens["director"]
        metrics_url = f"{srv.url}/library/scan/review/metrics"
        queue_url = f"{srv.url}/library/scan/review/items?limit=20"
        body = requests.get(metrics_url, headers=bearer(token), timeout=60).json()
        (group,) = body["groups"]
        est = group["fields"][FIELDS[0]]["estimate"]
        print(
            f"population {group['population']:,}, reviewed {group['reviewed']:,}, audit sample "
            f"{group['auditReviews']:,}; {FIELDS[0]} {est['accuracy']:.3f} "
            f"({est['low']:.3f}-{est['high']:.3f}), reviewed only "
            f"{group['fields'][FIELDS[0]]['reviewedAccuracy']:.3f}; "
            f"needsReview {group['planning']['needsReview']:,}; thresholds "
            f"{[group['fields'][f]['threshold']['confidence'] for f in FIELDS]}"
        )
        timed_gets(metrics_url, token, 3)  # warm
        fresh = fresh_metrics(srv.url, token, metrics_runs)
        line("metrics after each review saved", p50_p99(fresh) + "   (goal: p99 < 200 ms)")
        none = timed_gets(metrics_url, token, metrics_runs)
        by_prompt = timed_gets(f"{metrics_url}?groupBy=promptVersion", token, metrics_runs)
        last_week = (datetime.now(UTC) - timedelta(days=7)).isoformat()
        recent = timed_gets(f"{metrics_url}?since={quote(last_week)}", token, metrics_runs)
        line("metrics, nothing saved between (kept)", p50_p99(none))
        line("fresh p99 / kept p99", ratio(percentile(fresh, 99), percentile(none, 99)))
        line("metrics, groupBy=promptVersion", p50_p99(by_prompt))
        line("metrics, since a week ago", p50_p99(recent))
        line("none p99 / promptVersion p99", ratio(percentile(none, 99), percentile(by_prompt, 99)))

        timed_gets(queue_url, token, 10)  # warm
        audit = timed_gets(f"{queue_url}&sort=audit", token, queue_runs)
        deep = timed_gets(f"{queue_url}&sort=audit&offset=5000", token, queue_runs)
        confidence = timed_gets(f"{queue_url}&sort=confidence", token, queue_runs)
        needs = timed_gets(f"{queue_url}&sort=audit&state=needsReview", token, metrics_runs)
        line("queue, sort=audit, first page", p50_p99(audit) + "   (goal: p99 < 20 ms)")
        line("queue, sort=audit, offset 5000", p50_p99(deep))
        line("baseline: queue, sort=confidence", p50_p99(confidence))
        line("audit p99 / confidence p99", ratio(percentile(audit, 99), percentile(confidence, 99)))
        line("queue, state=needsReview, sort=audit", p50_p99(needs))
        line("needsReview p99 / audit p99", ratio(percentile(needs, 99), percentile(audit, 99)))
    finally:
        srv.stop()

    # The server is gone (one process per DuckDB file): the metrics' parts, in-process.
    from scanbatch import metrics
    from scanbatch.audit import GroupBy, Scope
    from scanbatch.estimates import group_figures
    from scanbatch.evaluate import evaluate

    store = JobStore.open(data_dir / "scanbatch.duckdb")
    try:
        reviews_store = store.reviews
        population = reviews_store.population()[None]
        judged = reviews_store.judged()[None]
        n = metrics_runs
        parts = {
            "ReviewStore.population (SQL, arrays)": timed(reviews_store.population, n),
            "estimates.group_figures": timed(lambda: group_figures(population), n),
            f"ReviewStore.judged ({len(judged[0]):,} rows)": timed(reviews_store.judged, n),
            "evaluate (reviewed-only figures)": timed(lambda: evaluate(*judged).metrics(), n),
            "metrics.compute_metrics (the whole)": timed(
                lambda: metrics.compute_metrics(reviews_store, GroupBy.NONE, Scope()), n
            ),
            "metrics.compute_thresholds (for needsReview)": timed(
                lambda: metrics.compute_thresholds(reviews_store), n
            ),
        }
        whole = percentile(parts["metrics.compute_metrics (the whole)"], 50)
        for label, values in parts.items():
            line(label, f"{p50_p99(values)}, {ratio(percentile(values, 50), whole)} of the whole")
    finally:
        store.close()


def bench_leases(tmp: Path, quick: bool) -> None:
    records = 10_000 if quick else 100_000
    reviewers, rounds = 20, (5 if quick else 15)
    header(f"5. {reviewers} reviewers at once over {records:,} finished records")
    data_dir = tmp / "leases" / "data"
    data_dir.mkdir(parents=True)
    tokens = seed_audit_store(data_dir, records, 200 if quick else 2_000)
    store = JobStore.open(data_dir / "scanbatch.duckdb")
    try:
        staff = [store.keys.create(f"r{n:02d}", "musicDirector")[1] for n in range(reviewers)]
    finally:
        store.close()
    srv = ServerProcess(data_dir, extractor="ocr").start()
    truth = dict.fromkeys(FIELDS)
    try:
        page_url = f"{srv.url}/library/scan/review/items?limit=20&sort=audit"
        timed_gets(page_url, tokens["director"], 10)  # warm
        quiet = timed_gets(page_url, tokens["director"], 100)
        nexts: list[float] = []
        saves: list[float] = []
        handed: list[tuple[str, int]] = []
        done = threading.Event()

        def review(token: str) -> None:
            session = requests.Session()
            pause = random.Random(token)
            for _ in range(rounds):
                # A person reads a record for half a minute or more; 0.2-1 s is 20 saves a
                # second from 20 reviewers, far beyond any station, without queueing them all
                # behind each other as a loop with no pause would (that is a throughput test).
                time.sleep(pause.uniform(0.2, 1.0))
                t = time.perf_counter()
                r = session.post(
                    f"{srv.url}/library/scan/review/next",
                    json={"sort": "audit"},
                    headers=bearer(token),
                )
                nexts.append((time.perf_counter() - t) * 1000)
                item = r.json()
                handed.append((item["jobId"], item["itemIndex"]))
                t = time.perf_counter()
                session.put(
                    f"{srv.url}/library/scan/batch/{item['jobId']}/items/{item['itemIndex']}"
                    "/review",
                    json={"fields": truth, "matchedAlbumId": None},
                    headers={**bearer(token), "If-Match": item["version"]},
                ).raise_for_status()
                saves.append((time.perf_counter() - t) * 1000)

        busy: list[float] = []

        def read_pages() -> None:
            session = requests.Session()
            while not done.is_set():
                t = time.perf_counter()
                session.get(page_url, headers=bearer(tokens["director"])).raise_for_status()
                busy.append((time.perf_counter() - t) * 1000)

        reader = threading.Thread(target=read_pages)
        reader.start()
        threads = [threading.Thread(target=review, args=(t,)) for t in staff]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        done.set()
        reader.join()
        print(
            f"{len(handed)} records handed out and saved in {elapsed:.1f} s "
            f"({len(set(handed))} different)"
        )
        line("next, 20 reviewers saving", p50_p99(nexts) + "   (goal: p99 < 20 ms)")
        line("save with If-Match, 20 reviewers", p50_p99(saves))
        line("queue page while they save", p50_p99(busy) + "   (goal: p99 < 20 ms)")
        line("baseline: queue page, nobody saving", p50_p99(quiet))
        line("busy page p99 / quiet page p99", ratio(percentile(busy, 99), percentile(quiet, 99)))
    finally:
        srv.stop()


SECTIONS = {
    "thumbnail": lambda tmp, quick: bench_thumbnail(tmp),
    "queue": bench_queue_and_export,
    "audit": bench_audit,
    "leases": bench_leases,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller store, fewer requests")
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only this section"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or SECTIONS:
            SECTIONS[name](Path(tmp), args.quick)


if __name__ == "__main__":
    main()
