"""The metrics body and the audit queue on a real DuckDB store: the audit order is one random
order for everyone, `needsReview` follows the fields' thresholds, the body carries estimates
beside the reviewed-only figures, and `scanbatch audit`'s table says which is which."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from scanbatch import metrics
from scanbatch.audit import GroupBy, ReviewInput, ReviewSort, ReviewState, Scope
from scanbatch.estimates import MIN_AUDIT_REVIEWS
from scanbatch.models import ItemOutcome, Manifest, Status, Usage
from scanbatch.names import FIELDS

ONE = Manifest.model_validate({"items": [{"imageCount": 1, "photoTypes": ["front"]}] * 10})
WORDS = ["Can", "Tago Mago", "United Artists", "UAS 29211", "Great", "5099"]


def no_photos(job, index, types):
    return []


def url(job, index, n):
    return f"/photos/{job}/{index}/{n}"


def fill(store, jobs: int, *, seed: int = 1, prompt: str = "v1"):
    """`jobs` finished jobs of 10 records; each field read right (the truth is WORDS) with
    probability 0.9 and confidence 0.95, else wrong with confidence 0.6."""
    rng = random.Random(seed)
    truth = {}
    for _ in range(jobs):
        job = store.create_job("alice", ONE)
        store.mark_processing(job)
        outcomes = []
        for i in range(10):
            extraction = {}
            for name, word in zip(FIELDS, WORDS, strict=True):
                right = rng.random() < 0.9
                extraction[name] = {
                    "value": word if right else "wrong",
                    "confidence": 0.95 if right else 0.6,
                }
            outcomes.append(
                ItemOutcome(
                    item_index=i,
                    status=Status.COMPLETED,
                    extraction=extraction,
                    usage=Usage(extractor="fake", model="m", prompt_version=prompt),
                    finished_at=datetime.now(UTC),
                )
            )
            truth[(job, i)] = extraction
        store.record_outcomes(job, outcomes)
        store.finish_job(job)
    return truth


def review(store, job, index, who="director"):
    fields = dict(zip(FIELDS, WORDS, strict=True))
    body = ReviewInput.model_validate({"fields": fields, "matchedAlbumId": None})
    store.reviews.save(job, index, who, body)


def page(store, **kw):
    return store.reviews.items(photos=no_photos, photo_url=url, **kw)


def test_the_audit_order_is_random_the_same_for_everyone_and_skips_the_reviewed(store):
    fill(store, 6)
    first = page(store, sort=ReviewSort.AUDIT, limit=60)
    again = page(store, sort=ReviewSort.AUDIT, limit=60)
    keys = [(i.job_id, i.item_index) for i in first.items]
    assert keys == [(i.job_id, i.item_index) for i in again.items] and len(keys) == 60
    by_confidence = [(i.job_id, i.item_index) for i in page(store, limit=60).items]
    newest = [(i.job_id, i.item_index) for i in page(store, sort=ReviewSort.NEWEST, limit=60).items]
    assert keys != by_confidence and keys != newest and sorted(keys) == sorted(by_confidence)
    review(store, *keys[0])
    after = page(store, sort=ReviewSort.AUDIT, limit=59)
    assert [(i.job_id, i.item_index) for i in after.items] == keys[1:]
    reviewed = page(store, sort=ReviewSort.AUDIT, state=ReviewState.REVIEWED)
    assert [(i.job_id, i.item_index) for i in reviewed.items] == [keys[0]]


def test_the_body_has_estimates_beside_the_reviewed_only_figures(store):
    truth = fill(store, 12)
    order = [(i.job_id, i.item_index) for i in page(store, sort=ReviewSort.AUDIT, limit=40).items]
    for key in order:
        review(store, *key)
    body = metrics.review_metrics(store.reviews)
    assert (body["population"], body["reviewedItems"]) == (120, 40)
    (group,) = body["groups"]
    assert (group["population"], group["reviewed"], group["auditReviews"]) == (120, 40, 40)
    for name in FIELDS:
        right = sum(truth[k][name]["value"] != "wrong" for k in truth) / len(truth)
        est = group["fields"][name]["estimate"]
        assert est["method"] == "audit-sample" and est["auditReviews"] == 40
        assert est["low"] <= est["accuracy"] <= est["high"]
        # 40 of 120 reviewed: the interval is narrower than 40 reviews alone would allow
        assert est["high"] - est["low"] < 0.25
        assert abs(est["accuracy"] - right) < 0.2, (name, est, right)
        assert group["fields"][name]["reviewedAccuracy"] == pytest.approx(
            sum(truth[k][name]["value"] != "wrong" for k in order) / 40
        )
        assert group["fields"][name]["threshold"]["confidence"] is None
    assert group["planning"]["unreviewed"] == 80
    assert group["planning"]["needsReview"] == 80  # no field has a 99 % threshold yet
    left = group["planning"]["wrongFieldsLeft"]
    assert left["low"] <= left["expected"] <= left["high"]
    assert sum(b["n"] for b in group["auditCalibration"]) == 40 * len(FIELDS)
    assert [w["population"] for w in group["weekly"]] == [120]
    table = metrics.format_table(body)
    assert "all records (95 % interval)" in table and "reviewed only" in table
    assert "120 finished, 40 reviewed, 40 in the audit sample" in table


def test_too_few_audit_reviews_say_how_many_more(store):
    fill(store, 5)
    # Least confident first: the hardest, not a sample; the estimate waits for the audit.
    for item in page(store, limit=20).items:
        review(store, item.job_id, item.item_index)
    (group,) = metrics.review_metrics(store.reviews)["groups"]
    artist = group["fields"]["artistName"]
    assert artist["estimate"] is None
    assert artist["reviewedAccuracy"] is not None
    more = int(artist["estimateNote"].split("Review at least ")[1].split(" ")[0])
    assert 0 < more <= MIN_AUDIT_REVIEWS
    assert "no estimate yet" in metrics.format_table({"groupBy": "none", "groups": [group]})


def test_groups_and_the_time_range_scope_the_population(store):
    fill(store, 3, prompt="v1")
    cut = datetime.now(UTC)
    fill(store, 2, prompt="v2", seed=2)
    body = metrics.review_metrics(store.reviews, GroupBy.PROMPT_VERSION)
    assert [(g["group"], g["population"]) for g in body["groups"]] == [("v1", 30), ("v2", 20)]
    later = metrics.review_metrics(store.reviews, scope=Scope(since=cut))
    assert later["population"] == 20
    earlier = metrics.review_metrics(store.reviews, scope=Scope(until=cut))
    assert earlier["population"] == 30
    only = metrics.review_metrics(store.reviews, scope=Scope(prompt_version="v2"))
    assert only["population"] == 20
    nothing = metrics.review_metrics(store.reviews, scope=Scope(since=cut + timedelta(days=1)))
    assert nothing["groups"] == [] and "No finished records" in metrics.format_table(nothing)


def test_needs_review_leaves_out_records_every_field_threshold_clears(store):
    fill(store, 3)
    thresholds = dict.fromkeys(FIELDS, 0.9)
    listed = page(store, state=ReviewState.NEEDS_REVIEW, thresholds=thresholds, limit=100)
    everything = page(store, limit=100).items
    low = [
        (i.job_id, i.item_index)
        for i in everything
        if any(i.extraction[f]["confidence"] < 0.9 for f in FIELDS)
    ]
    assert sorted((i.job_id, i.item_index) for i in listed.items) == sorted(low)
    assert 0 < listed.total < 30
    # A field without a threshold: every unreviewed record needs a person.
    none = page(store, state=ReviewState.NEEDS_REVIEW, thresholds={**thresholds, "upc": None})
    assert none.total == 30
