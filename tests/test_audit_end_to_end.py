"""Issue 20's "done when", end to end: a reader of known accuracy on a real server, 15 records
reviewed least-confident-first and 40 from the audit sample through the HTTP API, and the
metrics' estimate over all 200 records checked against the truth the test made up.

The reader is the fake extractor: it reads what each record's context says, with the
confidences its `stickerText` scripts. So the test decides, with a seeded RNG, which artist
names and titles are read right (about 85 % and 70 %) and how confident the reader is about
each: overconfident when wrong, so the least confident records are the hardest and the
reviewed-only figure is well below the truth, as in the issue."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from dataclasses import dataclass

import pytest

from scanbatch.client import TOKEN_ENV, Client
from scanbatch.estimates import AUDIT_SAMPLE, MATCH, OVERALL
from scanbatch.evaluate import normalize
from scanbatch.metrics import format_table
from scanbatch.names import FIELDS
from scanbatch.settings import Settings
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ROOT

pytestmark = pytest.mark.slow

RECORDS = 200
BATCH = 10
ARTIST_RIGHT = 0.85
TITLE_RIGHT = 0.70
LABEL_ON_PHOTOS = 0.10  # the reader never reads a label: these are missed
FIRST_BY_CONFIDENCE = 15
AUDIT_REVIEWS = 40
ARTIST, TITLE, LABEL = FIELDS[:3]


@dataclass(frozen=True)
class Record:
    album_id: int
    truth: dict[str, str | None]  # the six fields
    read: dict[str, str]  # what the reader will say: artist and title
    confidence: tuple[float, float]  # the reader's, for artist and title


def _wrong(field: str, truth: str, others: list[str], rng: random.Random) -> str:
    """Another album's value, never one that compares equal to the truth."""
    while True:
        value = rng.choice(others)
        if normalize(field, value) != normalize(field, truth):
            return value


def _confidence(right: bool, rng: random.Random) -> float:
    # Overconfident when wrong: wrong reads reach 0.95, so confidence alone cannot sort them.
    return round(rng.uniform(0.75, 0.99) if right else rng.uniform(0.3, 0.95), 3)


def make_records(seed: int = 20) -> list[Record]:
    rng = random.Random(seed)
    with Settings().seed_catalog.open(newline="", encoding="utf-8") as f:
        albums = list(csv.DictReader(f))
    artists = [a["artist"] for a in albums]
    titles = [a["title"] for a in albums]
    out = []
    for album in rng.sample(albums, RECORDS):
        artist_right = rng.random() < ARTIST_RIGHT
        title_right = rng.random() < TITLE_RIGHT
        truth = dict.fromkeys(FIELDS)
        truth[ARTIST], truth[TITLE] = album["artist"], album["title"]
        if rng.random() < LABEL_ON_PHOTOS:
            truth[LABEL] = album["label"]
        read = {
            ARTIST: album["artist"]
            if artist_right
            else _wrong(ARTIST, album["artist"], artists, rng),
            TITLE: album["title"] if title_right else _wrong(TITLE, album["title"], titles, rng),
        }
        conf = (_confidence(artist_right, rng), _confidence(title_right, rng))
        out.append(Record(int(album["album_id"]), truth, read, conf))
    return out


def is_right(field: str, read: str | None, truth: str | None) -> bool:
    """The project's verdict: equal after normalisation (both empty included)."""
    return normalize(field, read) == normalize(field, truth)


def all_pages(client: Client, **query) -> list:
    items, offset = [], 0
    while True:
        page = client.review_items(limit=100, offset=offset, **query)
        items += page.items
        offset += len(page.items)
        if offset >= page.total or not page.items:
            assert len(items) == page.total
            return items


def key(item) -> tuple[str, int]:
    return item.job_id, item.item_index


def test_an_audit_of_40_records_estimates_a_reader_of_known_accuracy(live_server, server_tokens):
    alice = Client(live_server.url, server_tokens["director"])
    bob = Client(live_server.url, server_tokens["other"])
    records = make_records()

    # 20 batches of 10, posted one after the other: the second half is scanned after the first.
    jobs = []
    for start in range(0, RECORDS, BATCH):
        chunk = records[start : start + BATCH]
        manifest = [
            {
                "imageCount": 1,
                "photoTypes": ["front_cover"],
                "context": {
                    "artistName": r.read[ARTIST],
                    "albumTitle": r.read[TITLE],
                    "stickerText": f"confidence:{r.confidence[0]},{r.confidence[1]}",
                },
            }
            for r in chunk
        ]
        photos = [(f"IMG_{start + n:04d}.jpg", image_bytes()) for n in range(len(chunk))]
        jobs.append(alice.submit(photos, manifest))
    for job_id in jobs:
        assert alice.wait(job_id, max_interval=0.2).status == "completed"
    by_key = {
        (job_id, i): r
        for n, job_id in enumerate(jobs)
        for i, r in enumerate(records[n * BATCH : (n + 1) * BATCH])
    }

    # What the reader said about every record, from the queue.
    everything = {key(item): item for item in all_pages(alice, state="all")}
    assert set(everything) == set(by_key)
    for k, item in everything.items():
        assert item.extraction[ARTIST]["value"] == by_key[k].read[ARTIST]
        assert item.confidence == min(by_key[k].confidence)

    def truly_right(k, measure: str) -> float:
        r, item = by_key[k], everything[k]
        if measure == MATCH:
            return float(item.matched_album_id == r.album_id)
        read = {name: (item.extraction.get(name) or {}).get("value") for name in FIELDS}
        rights = [is_right(name, read[name], r.truth[name]) for name in FIELDS]
        return (
            sum(rights) / len(FIELDS)
            if measure == OVERALL
            else float(rights[FIELDS.index(measure)])
        )

    def review(client: Client, k) -> None:
        client.save_review(*k, by_key[k].truth, by_key[k].album_id)

    # The audit order is one order, the same for every reviewer.
    audit_order = [key(i) for i in all_pages(alice, sort="audit")]
    assert audit_order == [key(i) for i in all_pages(bob, sort="audit")]
    assert sorted(audit_order) == sorted(by_key)

    # What a director did before the audit sample existed: least confident first. Those
    # reviews describe the hardest records, and alone they give no estimate.
    first = alice.review_items(sort="confidence", limit=FIRST_BY_CONFIDENCE).items
    for item in first:
        review(alice, key(item))
    by_confidence = {key(i) for i in first}
    (early,) = alice.metrics()["groups"]
    for name in (ARTIST, TITLE):
        assert early["fields"][name]["estimate"] is None
        assert "more record(s) from the Audit sample" in early["fields"][name]["estimateNote"]
    early_title = early["fields"][TITLE]["reviewedAccuracy"]
    true_title = sum(truly_right(k, TITLE) for k in by_key) / RECORDS
    assert early_title < true_title - 0.2, (early_title, true_title)

    # Then the audit sample, as the workbench takes it: the first unreviewed of the audit
    # order, each time, by either reviewer; both see the same first one.
    audited = []
    for n in range(AUDIT_REVIEWS):
        reviewer, other = (alice, bob) if n % 2 == 0 else (bob, alice)
        (item,) = reviewer.review_items(sort="audit", limit=1).items
        assert [key(i) for i in other.review_items(sort="audit", limit=1).items] == [key(item)]
        review(reviewer, key(item))
        audited.append(key(item))
    assert audited == [k for k in audit_order if k not in by_confidence][:AUDIT_REVIEWS]
    reviewed = by_confidence | set(audited)

    body = alice.metrics()
    assert body["population"] == RECORDS and body["reviewedItems"] == len(reviewed)
    (group,) = body["groups"]
    assert group["population"] == RECORDS and group["reviewed"] == len(reviewed)
    assert group["planning"]["unreviewed"] == RECORDS - len(reviewed)
    # The audit sample as DESIGN.md defines it: the reviewed records before the first
    # unreviewed one in the audit order, less those the least-confident-first reviews
    # covered whole (less confident than every unreviewed record). An audited record may
    # fall among those: then the sample has fewer than 40.
    unreviewed = [k for k in by_key if k not in reviewed]
    least = min(everything[k].confidence for k in unreviewed)
    newest = max(everything[k].created_at for k in unreviewed)
    known = {
        k for k in reviewed if everything[k].confidence < least or everything[k].created_at > newest
    }
    frontier = next(n for n, k in enumerate(audit_order) if k not in reviewed)
    sample = set(audit_order[:frontier]) - known
    assert len(sample) >= AUDIT_REVIEWS - len(known & set(audited))
    figures = {name: group["fields"][name] for name in FIELDS}
    figures[MATCH], figures[OVERALL] = group[MATCH], group[OVERALL]
    report = []
    for measure, figure in figures.items():
        true = sum(truly_right(k, measure) for k in by_key) / RECORDS
        on_reviewed = sum(truly_right(k, measure) for k in reviewed) / len(reviewed)
        est = figure["estimate"]
        assert est is not None, (measure, figure["estimateNote"])
        assert est["method"] == AUDIT_SAMPLE and est["auditReviews"] == len(sample)
        assert figure["reviewedAccuracy"] == pytest.approx(on_reviewed)
        low, high = est["low"], est["high"]
        assert low <= est["accuracy"] <= high
        report.append(
            f"{measure}: true {true:.3f}, estimate {est['accuracy']:.3f} ({low:.3f}-{high:.3f}), "
            f"reviewed only {figure['reviewedAccuracy']:.3f}"
        )
        # Twice the 95 % interval: the interval itself misses the truth in 1 run of 20 by
        # design (tests/test_estimates.py checks its coverage over many simulated audits);
        # one run here must not fail that often.
        margin = (high - low) / 2
        assert low - margin <= true <= high + margin, "\n".join(report)
    print("\n".join(report))

    # What is left to review: the needsReview queue is the planning figure.
    planning = group["planning"]
    assert alice.review_items(state="needsReview").total == planning["needsReview"]
    assert planning["needsReview"] <= planning["unreviewed"]
    # The audit order over the reviewed: the same order as before the reviews.
    done = [key(i) for i in all_pages(alice, state="reviewed", sort="audit")]
    assert done == [k for k in audit_order if k in reviewed]

    # `scanbatch audit` prints this very body, through the client.
    env = {**os.environ, TOKEN_ENV: server_tokens["director"]}
    audit = [sys.executable, "-m", "scanbatch.cli", "audit", "--url", live_server.url]
    printed = subprocess.run(audit, cwd=ROOT, env=env, capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == format_table(body)
    artist = figures[ARTIST]["estimate"]
    assert f"{artist['accuracy']:.1%} ({artist['low']:.1%}-{artist['high']:.1%})" in printed.stdout

    # A time range: the first ten jobs, then the last ten.
    second_half = everything[(jobs[RECORDS // BATCH // 2], 0)].created_at
    halves = [
        ({"until": second_half}, set(list(by_key)[: RECORDS // 2])),
        ({"since": second_half}, set(list(by_key)[RECORDS // 2 :])),
    ]
    for query, members in halves:
        part = alice.metrics(**query)
        assert part["population"] == len(members), query
        (g,) = part["groups"]
        assert g["reviewed"] == len(members & reviewed), query
