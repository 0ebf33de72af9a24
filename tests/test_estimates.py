"""The audit estimate is honest: simulated audits with known truth and a reader whose confidence
is miscalibrated on purpose, reviewed in four mixes of queue orders. The 95 % interval must cover
the true accuracy over all records in at least 90 % of audits, and the point estimate's mean
bias must stay under 1 point, for every field, the match and all fields together."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scanbatch import estimates
from scanbatch.estimates import MATCH, MEASURES, OVERALL, Records
from scanbatch.names import FIELDS

AUDITS = 240
RECORDS = 500
DAY = 86400.0


def scans(rng: np.random.Generator, n: int = RECORDS) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """(truth per measure, field confidences, record confidence, created) of n scans.
    Hard records are hard for every field; newer scans are harder (a later crate is worse),
    so an order by time is as biased as an order by confidence. The reader is overconfident:
    a field right 70 % of the time is given about 0.9."""
    created = np.sort(rng.uniform(0, 28 * DAY, n))
    hardness = rng.beta(1.2, 6, n) + 0.15 * created / (28 * DAY)
    truth, confidence = {}, {}
    for k, name in enumerate(FIELDS):
        p = np.clip(0.99 - (0.6 + 0.1 * k) * hardness, 0.02, 0.995)
        truth[name] = (rng.random(n) < p).astype(float)
        conf = np.clip(0.55 + 0.45 * p**0.3 + rng.normal(0, 0.03, n), 0, 1)
        conf[rng.random(n) < 0.03] = np.nan  # the reader gave no confidence at all
        confidence[name] = conf
    truth[MATCH] = (rng.random(n) < np.clip(0.97 - hardness, 0.05, 1)).astype(float)
    truth[OVERALL] = np.mean([truth[f] for f in FIELDS], axis=0)
    record_confidence = np.nanmin(np.array([confidence[f] for f in FIELDS]), axis=0)
    return truth, confidence, record_confidence, created


def audited(truth, confidence, record_confidence, created, key, reviewed) -> Records:
    """The simulated scans as the store would give them: truth only where reviewed."""
    return Records(
        key=key,
        confidence=record_confidence,
        created=created,
        reviewed=reviewed,
        right={m: np.where(reviewed, truth[m], np.nan) for m in MEASURES},
        field_confidence=confidence,
    )


Order = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]


def least_confident(reviewed, key, confidence, created) -> int:
    conf = np.where(np.isnan(confidence), -np.inf, confidence)
    return int(np.argmin(np.where(reviewed, np.inf, conf)))


def newest(reviewed, key, confidence, created) -> int:
    return int(np.argmax(np.where(reviewed, -np.inf, created)))


def audit(reviewed, key, confidence, created) -> int:
    return int(np.argmin(np.where(reviewed, np.inf, key)))


MIXES: dict[str, list[Order]] = {
    "audit only": [audit] * 60,
    "least confident then audit": [least_confident] * 50 + [audit] * 60,
    "newest then audit": [newest] * 50 + [audit] * 60,
    "interleaved": [least_confident, audit, newest, audit, audit] * 24,
}


def simulate(rng: np.random.Generator, orders: list[Order]) -> tuple[dict, dict]:
    truth, confidence, record_confidence, created = scans(rng)
    key = rng.random(RECORDS)
    reviewed = np.zeros(RECORDS, dtype=bool)
    for pick in orders:
        reviewed[pick(reviewed, key, record_confidence, created)] = True
    records = audited(truth, confidence, record_confidence, created, key, reviewed)
    return estimates.measures(records), {m: float(truth[m].mean()) for m in MEASURES}


@pytest.mark.parametrize("mix", list(MIXES))
def test_the_interval_covers_the_truth_and_the_estimate_is_unbiased(mix: str) -> None:
    rng = np.random.default_rng(sum(map(ord, mix)))
    covered = {m: 0 for m in MEASURES}
    errors: dict[str, list[float]] = {m: [] for m in MEASURES}
    for _ in range(AUDITS):
        found, true = simulate(rng, MIXES[mix])
        for m in MEASURES:
            est = found[m]
            assert est is not None, f"{mix}: no estimate for {m}"
            covered[m] += est["low"] <= true[m] <= est["high"]
            errors[m].append(est["accuracy"] - true[m])
    for m in MEASURES:
        coverage = covered[m] / AUDITS
        bias = float(np.mean(errors[m]))
        assert coverage >= 0.90, f"{mix}, {m}: the interval covered {coverage:.1%}"
        assert abs(bias) < 0.01, f"{mix}, {m}: mean bias {bias:+.4f}"


def test_the_simulation_can_fail_reviewed_only_figures_and_least_confident_reviews_alone():
    """What the test guards against: the reviewed-only share of least-confident reviews, and
    an 'estimate' from those reviews alone, are far from the truth, so a wrong method fails."""
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(50):
        truth, confidence, record_confidence, created = scans(rng)
        key = rng.random(RECORDS)
        reviewed = np.zeros(RECORDS, dtype=bool)
        for _ in range(60):
            reviewed[least_confident(reviewed, key, record_confidence, created)] = True
        errors.append(truth[OVERALL][reviewed].mean() - truth[OVERALL].mean())
        records = audited(truth, confidence, record_confidence, created, key, reviewed)
        est, note = estimates.estimate(records, OVERALL)
        assert est is None and "more record(s) from the Audit sample" in note
    assert np.mean(errors) < -0.05  # the hardest records: far below the truth


def records_of(n: int, right: float, confidence: float, reviewed: np.ndarray, rng) -> Records:
    truth = (rng.random(n) < right).astype(float)
    return Records.build(
        key=rng.random(n),
        confidence=[confidence] * n,
        created=np.arange(n, dtype=float),
        reviewed=reviewed,
        right={m: np.where(reviewed, truth, np.nan) for m in (*FIELDS, MATCH)},
        field_confidence={f: [confidence] * n for f in FIELDS},
    )


def test_every_record_reviewed_is_exact_and_too_few_audit_reviews_say_how_many_more():
    rng = np.random.default_rng(3)
    everything = records_of(40, 0.8, 0.9, np.ones(40, dtype=bool), rng)
    est, note = estimates.estimate(everything, "artistName")
    assert note is None and est["method"] == "all-reviewed"
    assert est["low"] == est["accuracy"] == est["high"] == everything.right["artistName"].mean()
    few = records_of(200, 0.8, 0.9, np.zeros(200, dtype=bool), rng)
    est, note = estimates.estimate(few, "artistName")
    assert est is None and "Review at least 30 more record(s)" in note and "200 records" in note


def test_more_reviews_for_two_points_shrink_as_the_audit_grows():
    needed = [estimates.reviews_for_half_width(0.9, n, 2000 - n, 2000) for n in (30, 100, 400)]
    assert needed[0] > needed[1] > needed[2] > 0
    # Reviewing that many more does bring the half width to 2 points.
    n = 100
    extra = estimates.reviews_for_half_width(0.9, n, 2000 - n, 2000)
    rest = 2000 - n - extra
    low, high = estimates.wilson(0.9, (n + extra) * rest / (n + extra + rest))
    assert rest / 2000 * (high - low) / 2 <= 0.02
    assert estimates.reviews_for_half_width(0.9, 1900, 100, 2000) == 0


def test_a_threshold_needs_hundreds_of_right_audit_reviews_and_is_then_found():
    rng = np.random.default_rng(5)
    n = 8000
    conf = rng.uniform(0.5, 1.0, n)
    right = np.where(conf >= 0.95, 1.0, (rng.random(n) < 0.7).astype(float))
    reviewed = rng.random(n) < 0.9  # a big audit: 9 of 10 records
    key = np.where(reviewed, rng.uniform(0, 0.5, n), rng.uniform(0.5, 1, n))
    records = Records.build(
        key=key,
        confidence=conf,
        created=np.zeros(n),
        reviewed=reviewed,
        right={m: np.where(reviewed, right, np.nan) for m in (*FIELDS, MATCH)},
        field_confidence={f: conf for f in FIELDS},
    )
    sample = estimates.audit_sample(records)
    found = estimates.threshold(records, sample, "upc")
    assert found["confidence"] == 0.95
    assert found["noReviewNeeded"] == int(((conf >= 0.95) & ~reviewed).sum())
    needs = estimates.needs_review(records, dict.fromkeys(FIELDS, 0.95))
    assert needs.sum() == int(((conf < 0.95) & ~reviewed).sum())
    small = records.subset(np.arange(n) < 200)
    missing = estimates.threshold(small, estimates.audit_sample(small), "upc")
    assert missing["confidence"] is None and "No such threshold yet" in missing["note"]


def test_the_wrong_fields_left_range_covers_the_truth():
    rng = np.random.default_rng(11)
    covered = 0
    runs = 200
    for _ in range(runs):
        truth, confidence, record_confidence, created = scans(rng)
        key = rng.random(RECORDS)
        reviewed = key < np.sort(key)[80]  # an audit of 80
        records = audited(truth, confidence, record_confidence, created, key, reviewed)
        left = estimates.wrong_left(records, estimates.audit_sample(records), "labelName")
        wrong = float((1 - truth["labelName"][~reviewed]).sum())
        covered += left["low"] <= wrong <= left["high"]
    assert covered / runs >= 0.90


def test_drift_is_flagged_when_the_latest_week_is_wholly_worse():
    rng = np.random.default_rng(2)
    n = 600
    created = np.repeat([0.0, 7, 14], n // 3) * DAY + 5 * DAY  # three Mondays..Saturdays
    right = np.where(created < 14 * DAY, rng.random(n) < 0.97, rng.random(n) < 0.5).astype(float)
    reviewed = np.zeros(n, dtype=bool)
    key = rng.random(n)
    for week in (0, 1, 2):
        part = np.flatnonzero((created // (7 * DAY)).astype(int) == week)
        reviewed[part[np.argsort(key[part])[:80]]] = True
    records = Records.build(
        key=key,
        confidence=[0.9] * n,
        created=created,
        reviewed=reviewed,
        right={m: np.where(reviewed, right, np.nan) for m in (*FIELDS, MATCH)},
        field_confidence={f: [0.9] * n for f in FIELDS},
    )
    weeks, drift = estimates.weekly(records)
    assert [w["population"] for w in weeks] == [200, 200, 200]
    assert drift["overall"] and drift["fields"]["artistName"] and drift[MATCH]
    steady = records.subset(created < 14 * DAY)
    assert not estimates.weekly(steady)[1]["overall"]


def test_opening_the_store_or_the_server_does_not_import_scipy():
    """scipy costs ~0.7 s to import, and every job's kernel and CLI command opens the store:
    it is imported when a threshold is first computed, not before."""
    import subprocess
    import sys

    code = (
        "import sys, scanbatch.store, scanbatch.web, scanbatch.kernel; "
        "print('scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_interval_always_holds_its_estimate_even_at_0_and_1():
    for p in (0.0, 1.0, 0.5, 1e-12, 1 - 1e-12):
        for n in (1, 3, 30, 1e6, 1e12):
            low, high = estimates.wilson(p, n)
            assert 0.0 <= low <= p <= high <= 1.0, (p, n, low, high)
    for right in (0.0, 1.0):
        key = np.linspace(0, 1, 300, endpoint=False)
        reviewed = key < 0.5  # the first half of the audit order
        records = Records.build(
            key=key,
            confidence=[0.9] * 300,
            created=np.zeros(300),
            reviewed=reviewed,
            right={m: np.where(reviewed, right, np.nan) for m in (*FIELDS, MATCH)},
            field_confidence={f: [0.9] * 300 for f in FIELDS},
        )
        for measure in (*FIELDS, MATCH, OVERALL):
            est, _ = estimates.estimate(records, measure)
            assert est["low"] <= est["accuracy"] <= est["high"]
